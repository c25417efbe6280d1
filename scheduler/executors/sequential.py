"""SequentialExecutor: one attempt at a time, run from the caller's own process (through the
same supervise path, so logs, timeouts and outcomes behave exactly as in production). Used by
``headwater dags test`` and by tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scheduler.config import Settings
from scheduler.executors.base import Executor, ExecutorEvent
from scheduler.store.commands import Workload


class SequentialExecutor(Executor):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pending: list[Workload] = []
        self._events: list[ExecutorEvent] = []
        self._engine: Any = None
        self._dags: Any = None

    def start(self) -> None:
        from scheduler.store.db import make_engine
        from scheduler.worker import DagCache

        self._engine = make_engine(self.settings.sql_alchemy_conn)
        self._dags = DagCache(self._engine, self.settings)

    def free_slots(self) -> int:
        return 0 if self._pending else 1

    def running(self) -> set[int]:
        return {w.ti_id for w in self._pending}

    def queue_workload(self, workload: Workload) -> None:
        self._pending.append(workload)

    def wait(self, timeout: float, extra: Sequence[Any] = ()) -> list[Any]:
        from multiprocessing.connection import wait

        from scheduler.worker import supervise

        if self._pending:
            workload = self._pending.pop(0)
            supervise(workload, settings=self.settings, engine=self._engine, dags=self._dags)
            # The attempt has ended and is recorded when supervise returns.
            self._events.append(ExecutorEvent("recorded", workload.ti_id, workload.try_number))
            self._events.append(ExecutorEvent("done", workload.ti_id, workload.try_number))
            return []
        return list(wait(list(extra), timeout=max(0.0, timeout))) if extra else _sleep(timeout)

    def pending_events(self) -> list[ExecutorEvent]:
        return list(self._events)

    def drain_events(self) -> list[ExecutorEvent]:
        events, self._events = self._events, []
        return events

    def stop(self, graceful: bool = True) -> None:
        self._pending.clear()
        if self._engine is not None:
            self._engine.dispose()


def _sleep(timeout: float) -> list[Any]:
    import time

    time.sleep(max(0.0, timeout))
    return []

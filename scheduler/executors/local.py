"""LocalExecutor: a pool of long-lived worker processes on this machine.

Each worker process takes one workload at a time over its pipe and runs it through
:func:`scheduler.worker.supervise` (a child process per attempt). Workers keep the DAG versions
they have loaded, so the per-task cost is a fork, not an import. A worker whose scheduler died
finishes the attempt it holds and exits.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, Pipe, wait
from typing import Any

from scheduler.config import Settings
from scheduler.executors.base import Executor, ExecutorEvent
from scheduler.forkserver import fork_running
from scheduler.store.commands import Workload

log = logging.getLogger("headwater.executor")


def _worker_main(conn: Connection, settings: Settings, parent_pid: int) -> None:
    from scheduler.store.db import make_engine
    from scheduler.worker import AttemptForkServer, DagCache, supervise, warm_up

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the scheduler decides when we stop
    stopping = False

    def _on_term(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_term)
    engine = make_engine(settings.sql_alchemy_conn)
    warm_up(engine)
    dags = DagCache(engine, settings)
    # The attempts' processes come from a fork server, not from this busy process.
    forks = AttemptForkServer(settings, engine, dags, close_in_server=[conn])
    try:
        while not stopping:
            try:
                if not conn.poll(1.0):
                    if os.getppid() != parent_pid:
                        break  # orphaned: the scheduler is gone
                    continue
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            workload = Workload.from_dict(message)

            def recorded(state: Any, w: Workload = workload) -> None:
                # Wake the scheduler as soon as the outcome is stored; "done" (idle) follows
                # once the attempt's process has exited.
                with contextlib.suppress(OSError):
                    conn.send(("recorded", w.ti_id, w.try_number,
                               state.value if state is not None else None))

            try:
                supervise(workload, settings=settings, engine=engine, dags=dags,
                          on_recorded=recorded, forks=forks)
            except Exception:  # noqa: BLE001 - report it and stay available
                log.exception("worker failed to supervise %s", workload)
            try:
                conn.send(("done", workload.ti_id, workload.try_number))
            except (BrokenPipeError, OSError):
                break
    finally:
        forks.stop()


class LocalExecutor(Executor):
    def __init__(self, settings: Settings, parallelism: int | None = None) -> None:
        self.settings = settings
        self.parallelism = max(1, parallelism or settings.parallelism)
        self._pids: dict[Connection, int] = {}
        self._idle: list[Connection] = []
        self._busy: dict[Connection, Workload] = {}
        #: Busy workers whose attempt's outcome is stored (they are finishing up).
        self._recorded: set[Connection] = set()
        self._backlog: deque[Workload] = deque()
        self._events: list[ExecutorEvent] = []
        # Workloads held beyond the busy workers: a worker that finishes takes the next one at
        # once, without waiting for a scheduler step, and the scheduler queues in batches.
        self.capacity = 4 * self.parallelism

    def start(self) -> None:
        from scheduler.worker import preload_authoring_api

        preload_authoring_api()
        for _ in range(self.parallelism):
            self._spawn()

    def _spawn(self) -> None:
        parent_conn, child_conn = Pipe(duplex=True)
        parent_pid = os.getpid()
        gc.freeze()  # keep the child from copying our heap when it collects

        def worker() -> None:
            parent_conn.close()
            _worker_main(child_conn, self.settings, parent_pid)

        pid = fork_running(worker)
        child_conn.close()
        self._pids[parent_conn] = pid
        self._idle.append(parent_conn)

    def free_slots(self) -> int:
        outstanding = len(self._busy) + len(self._backlog)
        # Refill only once the backlog has run low, so queueing happens in batches.
        return self.capacity - outstanding if outstanding <= self.parallelism else 0

    def running(self) -> set[int]:
        return {w.ti_id for w in self._busy.values()} | {w.ti_id for w in self._backlog}

    def queue_workload(self, workload: Workload) -> None:
        self._backlog.append(workload)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._idle and self._backlog:
            conn = self._idle.pop()
            workload = self._backlog.popleft()
            self._busy[conn] = workload
            conn.send(workload.to_dict())

    def take_backlog(self) -> list[Workload]:
        """Workloads not handed to a worker yet (to give back when stopping)."""
        backlog, self._backlog = list(self._backlog), deque()
        return backlog

    def wait(self, timeout: float, extra: Sequence[Any] = ()) -> list[Any]:
        ready = wait([*self._busy, *extra], timeout=max(0.0, timeout))
        woken = []
        for obj in ready:
            if obj in self._busy:
                self._collect(obj)  # type: ignore[arg-type]
            else:
                woken.append(obj)
        self._dispatch()
        return woken

    def _collect(self, conn: Connection) -> None:
        workload = self._busy[conn]
        try:
            kind, ti_id, try_number, *state = conn.recv()
            self._events.append(ExecutorEvent(kind, ti_id, try_number,
                                              state[0] if state else None, workload))
            if kind == "recorded":
                self._recorded.add(conn)
            elif kind == "done":
                del self._busy[conn]
                self._recorded.discard(conn)
                self._idle.append(conn)
        except (EOFError, OSError):
            del self._busy[conn]
            self._recorded.discard(conn)
            log.error("worker process %s died holding task instance %s",
                      self._pids.get(conn), workload.ti_id)
            self._events.append(ExecutorEvent("lost", workload.ti_id, workload.try_number))
            pid = self._pids.pop(conn)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            conn.close()
            self._spawn()

    def pending_events(self) -> list[ExecutorEvent]:
        return list(self._events)

    def holds_other_of_run(self, dag_id: str, run_id: str, ti_id: int) -> bool:
        # A workload whose outcome is already stored does not count: its worker is only
        # finishing up, and the end of the run may be waiting for that outcome alone.
        unrecorded = (w for conn, w in self._busy.items() if conn not in self._recorded)
        return any(w.ti_id != ti_id and w.dag_id == dag_id and w.run_id == run_id
                   for w in (*unrecorded, *self._backlog))

    def drain_events(self) -> list[ExecutorEvent]:
        events, self._events = self._events, []
        return events

    def stop(self, graceful: bool = True) -> None:
        """Stop the workers. Graceful: let each finish the attempt it holds (they record their
        own outcome); otherwise kill them, and their attempts become zombies to retry."""
        for conn, pid in self._pids.items():
            with contextlib.suppress(OSError):
                if graceful:
                    conn.send(None)
                else:
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + (3600 if graceful else 5)
        for pid in self._pids.values():
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.01)
        for conn in self._pids:
            conn.close()
        self._pids.clear()
        self._idle.clear()
        self._busy.clear()
        self._recorded.clear()

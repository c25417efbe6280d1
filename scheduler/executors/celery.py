"""CeleryExecutor: task instances run by ``headwater worker`` processes on any machine.

The scheduler publishes each :class:`Workload` (``to_dict()``, JSON) as a Celery message named
:data:`TASK_NAME` to the task's ``queue``; a ``headwater worker`` consuming that queue runs it
through :func:`scheduler.worker.supervise`, exactly as the LocalExecutor's worker processes do (a
child process per attempt, its log file, heartbeats, ``execution_timeout``, the outcome written
to the store by the worker).

How the scheduler learns that an attempt ended, without a result backend: the store is the
truth. A worker that recorded an outcome sends ``NOTIFY headwater_recorded, '<ti>:<try>'`` on
PostgreSQL; the executor LISTENs on a connection of its own and wakes the loop at once. Every
:data:`RECONCILE_SECONDS` (and after a lost LISTEN connection) it also asks the store which of
the task instances it queued have left ``queued``/``running``, so a lost notification costs
latency, never a stuck run. On SQLite there is no NOTIFY and the store is polled more often.

Delivery is at-least-once and harmless to repeat: messages are acknowledged late and re-queued
when a worker dies; a workload whose claim is stale (requeued meanwhile, or already started by
another worker) is dropped by ``supervise`` without running anything. A publish that fails
(the broker is restarting) is kept and retried; a workload no worker has started within
``queued_timeout`` is forgotten, and the loop's housekeeping gives it a fresh claim and message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_readable
from typing import Any

from scheduler.config import Settings
from scheduler.executors.base import Executor, ExecutorEvent
from scheduler.store.commands import Workload

log = logging.getLogger("headwater.executor")

TASK_NAME = "headwater.run_workload"
NOTIFY_CHANNEL = "headwater_recorded"
#: How often the executor checks the store for ends it was not notified of.
RECONCILE_SECONDS = 1.0
#: The same without NOTIFY (a SQLite store): polling is the only signal.
POLL_SECONDS_WITHOUT_NOTIFY = 0.2
#: How many workloads one scheduler keeps outstanding in Celery's queues.
DEFAULT_CAPACITY = 512
#: A workload not started by any worker within this many seconds gets a new claim and message.
DEFAULT_QUEUED_TIMEOUT = 600.0


def make_celery_app(settings: Settings) -> Any:
    """The Celery app of ``settings`` (``[celery] broker_url``), with Headwater's task registered.

    Messages are JSON, acknowledged after the attempt (``acks_late``) and re-queued when the
    worker process dies; a worker reserves one message per pool process; there is no result
    backend (outcomes go to the store).
    """
    from celery import Celery

    app = Celery("headwater", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="default",
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_heartbeat=10,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # Redis: an unacknowledged message (its worker died) is delivered again after this.
        broker_transport_options={"visibility_timeout": 3600},
    )
    app.headwater_settings = settings  # type: ignore[attr-defined]
    app.task(name=TASK_NAME, bind=True)(_run_workload)
    return app


# -- the worker side --------------------------------------------------------------------------


@dataclass
class _Runtime:
    """What one Celery pool process keeps between attempts: its engine and loaded DAGs."""

    pid: int
    engine: Any
    dags: Any


_runtime: _Runtime | None = None


def _get_runtime(settings: Settings) -> _Runtime:
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        from scheduler.store.db import make_engine
        from scheduler.worker import DagCache, warm_up

        engine = make_engine(settings.sql_alchemy_conn)
        warm_up(engine)
        _runtime = _Runtime(os.getpid(), engine, DagCache(engine, settings))
    return _runtime


def notify_recorded(engine: Any, ti_id: int, try_number: int) -> None:
    """Tell listening schedulers that an attempt's outcome is in the store (PostgreSQL only;
    best effort: they reconcile with the store anyway)."""
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                         {"channel": NOTIFY_CHANNEL, "payload": f"{ti_id}:{try_number}"})
            conn.commit()
    except Exception:  # noqa: BLE001 - a lost wake-up costs latency only
        log.debug("could not notify schedulers of %s:%s", ti_id, try_number, exc_info=True)


def _run_workload(task: Any, payload: dict[str, Any]) -> None:
    """The Celery task: see one attempt through with :func:`scheduler.worker.supervise`.

    When the store cannot be reached it retries with backoff (for up to the store's connect
    retry time): retrying is safe because the claim makes the attempt start at most once.
    """
    from scheduler.store.db import CONNECT_RETRY_SECONDS, backoff_delays, is_disconnect
    from scheduler.worker import supervise

    settings: Settings = task.app.headwater_settings
    workload = Workload.from_dict(payload)
    runtime = _get_runtime(settings)

    def recorded(_state: Any) -> None:
        notify_recorded(runtime.engine, workload.ti_id, workload.try_number)

    deadline = time.monotonic() + CONNECT_RETRY_SECONDS
    delays = backoff_delays(first=0.5)
    while True:
        try:
            supervise(workload, settings=settings, engine=runtime.engine, dags=runtime.dags,
                      on_recorded=recorded)
            return
        except Exception as exc:
            if not is_disconnect(exc) or time.monotonic() > deadline:
                log.exception("could not run %s", workload)
                return
            delay = next(delays)
            log.warning("store unreachable while running %s (%s); retrying in %.1f s",
                        workload, type(exc).__name__, delay)
            time.sleep(delay)


# -- the scheduler side -------------------------------------------------------------------------


@dataclass
class _Sent:
    workload: Workload
    at: float


class CeleryExecutor(Executor):
    """Publishes workloads to Celery and reports their ends from the store (see module doc)."""

    def __init__(self, settings: Settings, *, capacity: int = DEFAULT_CAPACITY,
                 queued_timeout: float = DEFAULT_QUEUED_TIMEOUT) -> None:
        self.settings = settings
        self.capacity = capacity
        self.queued_timeout = queued_timeout
        self.app: Any = None
        self._engine: Any = None
        self._listener: Any = None
        self._outstanding: dict[int, _Sent] = {}
        self._unsent: deque[Workload] = deque()
        self._events: list[ExecutorEvent] = []
        self._next_reconcile = 0.0
        self._next_publish_retry = 0.0
        self._publish_delays: Iterator[float] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        from scheduler.store.db import make_engine

        self.app = make_celery_app(self.settings)
        self._engine = make_engine(self.settings.sql_alchemy_conn)
        self._listen()

    def stop(self, graceful: bool = True) -> None:
        """Workers are independent processes: nothing of theirs stops with the scheduler."""
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._listener.close()
            self._listener = None
        if self.app is not None:
            self.app.close()
        if self._engine is not None:
            self._engine.dispose()
        self._outstanding.clear()

    def _listen(self) -> None:
        if self._engine.dialect.name != "postgresql":
            return
        import psycopg

        from scheduler.store.db import PG_CONNECT_ARGS

        url = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            conn = psycopg.connect(url, autocommit=True, **PG_CONNECT_ARGS)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error as exc:
            log.warning("cannot LISTEN for recorded attempts (%s); polling the store", exc)
            return
        self._listener = conn

    # -- the executor interface ------------------------------------------------------------------

    def free_slots(self) -> int:
        return max(0, self.capacity - len(self._outstanding))

    def running(self) -> set[int]:
        return set(self._outstanding)

    def queue_workload(self, workload: Workload) -> None:
        self._outstanding[workload.ti_id] = _Sent(workload, time.monotonic())
        if self._unsent or not self._publish(workload):
            self._unsent.append(workload)

    def take_backlog(self) -> list[Workload]:
        backlog, self._unsent = list(self._unsent), deque()
        for w in backlog:
            self._outstanding.pop(w.ti_id, None)
        return backlog

    def wait(self, timeout: float, extra: Sequence[Any] = ()) -> list[Any]:
        deadline = time.monotonic() + max(0.0, timeout)
        interval = RECONCILE_SECONDS if self._listener is not None else \
            POLL_SECONDS_WITHOUT_NOTIFY
        while True:
            now = time.monotonic()
            if self._unsent and now >= self._next_publish_retry:
                self._flush_unsent()
            if now >= self._next_reconcile:
                self._reconcile()
                self._next_reconcile = now + interval
            if self._events:
                return []
            waitables = [*extra] + ([self._listener] if self._listener is not None else [])
            until = min(deadline, self._next_reconcile)
            if self._unsent:
                until = min(until, self._next_publish_retry)
            ready = wait_readable(waitables, timeout=max(0.0, until - time.monotonic())) \
                if waitables else _sleep(until - time.monotonic())
            woken = [obj for obj in ready if obj is not self._listener]
            if self._listener is not None and self._listener in ready:
                self._drain_notifications()
            if woken or self._events or time.monotonic() >= deadline:
                return woken

    def pending_events(self) -> list[ExecutorEvent]:
        return list(self._events)

    def holds_other_of_run(self, dag_id: str, run_id: str, ti_id: int) -> bool:
        return any(sent.workload.ti_id != ti_id and sent.workload.dag_id == dag_id
                   and sent.workload.run_id == run_id for sent in self._outstanding.values())

    def drain_events(self) -> list[ExecutorEvent]:
        events, self._events = self._events, []
        return events

    # -- publishing ----------------------------------------------------------------------------

    def _publish(self, workload: Workload) -> bool:
        try:
            self.app.send_task(
                TASK_NAME, args=[workload.to_dict()], queue=workload.queue,
                retry=True, retry_policy={"max_retries": 2, "interval_start": 0.1,
                                          "interval_step": 0.5, "interval_max": 1.0})
        except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; keep and retry
            log.warning("cannot publish %s to the broker (%s); will retry", workload.task_id,
                        exc)
            return False
        return True

    def _flush_unsent(self) -> None:
        from scheduler.store.db import backoff_delays

        while self._unsent:
            workload = self._unsent[0]
            if workload.ti_id not in self._outstanding:  # given up on meanwhile
                self._unsent.popleft()
                continue
            if not self._publish(workload):
                if self._publish_delays is None:
                    self._publish_delays = backoff_delays(first=0.5)
                self._next_publish_retry = time.monotonic() + next(self._publish_delays)
                return
            self._unsent.popleft()
        self._publish_delays = None

    # -- learning that attempts ended --------------------------------------------------------------

    def _drain_notifications(self) -> None:
        try:
            payloads = [n.payload for n in self._listener.notifies(timeout=0)]
        except Exception as exc:  # noqa: BLE001 - the LISTEN connection died: poll until back
            log.warning("lost the LISTEN connection to the store (%s); reconnecting", exc)
            with contextlib.suppress(Exception):
                self._listener.close()
            self._listener = None
            self._next_reconcile = 0.0
            return
        for payload in payloads:
            try:
                ti_id, try_number = (int(x) for x in payload.split(":"))
            except ValueError:
                continue
            sent = self._outstanding.get(ti_id)
            if sent is not None and sent.workload.try_number == try_number:
                del self._outstanding[ti_id]
            # Another scheduler's task ended: wake up too, its downstream may be ours to queue.
            self._events.append(ExecutorEvent("recorded", ti_id, try_number))

    def _reconcile(self) -> None:
        """Ask the store which outstanding attempts ended (or were taken back), and forget
        workloads that no worker started within ``queued_timeout``."""
        from sqlalchemy import select

        from scheduler.core.states import TaskState
        from scheduler.store.db import session_scope
        from scheduler.store.models import TaskInstance

        if self._listener is None and self._engine.dialect.name == "postgresql":
            self._listen()
        if not self._outstanding:
            return
        ids = list(self._outstanding)
        active = (TaskState.QUEUED.value, TaskState.RUNNING.value)
        try:
            rows: dict[int, tuple[int, str]] = {}
            with session_scope(self._engine, readonly=True) as session:
                for i in range(0, len(ids), 1000):
                    chunk = ids[i:i + 1000]
                    for ti_id, try_number, state in session.execute(
                            select(TaskInstance.id, TaskInstance.try_number, TaskInstance.state)
                            .where(TaskInstance.id.in_(chunk))):
                        rows[ti_id] = (try_number, state)
        except Exception as exc:  # noqa: BLE001 - the store is away; try again next time
            log.warning("cannot check queued task instances in the store: %s", exc)
            return
        now = time.monotonic()
        for ti_id in ids:
            sent = self._outstanding[ti_id]
            row = rows.get(ti_id)
            if row is None or row[0] != sent.workload.try_number or row[1] not in active:
                del self._outstanding[ti_id]
                self._events.append(ExecutorEvent("recorded", ti_id, sent.workload.try_number))
            elif row[1] == TaskState.QUEUED.value and now - sent.at > self.queued_timeout:
                log.warning("no worker started %s.%s (try %d) within %g s; queueing it again",
                            sent.workload.dag_id, sent.workload.task_id,
                            sent.workload.try_number, self.queued_timeout)
                # The loop's housekeeping requeues a queued task instance its executor no
                # longer holds; the stale message, if it ever arrives, is dropped by its claim.
                del self._outstanding[ti_id]


def _sleep(seconds: float) -> list[Any]:
    time.sleep(max(0.0, seconds))
    return []

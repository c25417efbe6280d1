"""The scheduling loop: the I/O shell around :mod:`scheduler.core.decisions`.

One :meth:`Scheduler.step` creates the runs schedules owe, starts queued runs within
``max_active_runs``, moves task instances along their trigger rules, finishes runs, queues ready
task instances within every limit, and deals with dead workers. Between steps the loop blocks in
:meth:`Executor.wait`, which returns as soon as an attempt ends, a trigger or a parse wakes it,
or the next timed event is due: there is no fixed tick on the hot path.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection, Pipe
from typing import Any, NamedTuple, Protocol

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from scheduler import sagas
from scheduler.config import Settings
from scheduler.core.decisions import (
    Candidate,
    TIView,
    Transition,
    Verdict,
    evaluate_trigger_rule,
    pick_tasks_to_queue,
    run_outcome,
    schedulable,
)
from scheduler.core.mapping import aggregate_state, mapped_length
from scheduler.core.serialized import SerializedDag, SerializedTask
from scheduler.core.states import FINISHED_TASK_STATES, RunState, TaskState
from scheduler.core.timetable import DataInterval
from scheduler.executors.base import Executor, ExecutorEvent
from scheduler.forkserver import fork_running
from scheduler.signals import deliver_due, next_timeout
from scheduler.store import commands
from scheduler.store import dags as dag_store
from scheduler.store.db import backoff_delays, is_disconnect, session_scope
from scheduler.store.models import DagModel, DagRun, DagVersion, Job, Pool, TaskInstance, XCom
from scheduler.wakeup import WakeupSocket

log = logging.getLogger("headwater.scheduler")
HOSTNAME = socket.gethostname()
#: The loop looks at the store at least this often, for changes nobody woke it for.
IDLE_WAKE_SECONDS = 1.0
_WAITING_FOR_TIME = (TaskState.UP_FOR_RETRY.value, TaskState.UP_FOR_RESCHEDULE.value)
_DEFERRED = TaskState.DEFERRED.value
_LOOK_AGAIN = timedelta(seconds=IDLE_WAKE_SECONDS)
class TIRow(Protocol):
    """What the loop's decisions read of a task instance (an ORM object or a plain row)."""

    @property
    def id(self) -> int: ...
    @property
    def run_pk(self) -> int: ...
    @property
    def dag_id(self) -> str: ...
    @property
    def task_id(self) -> str: ...
    @property
    def map_index(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def try_number(self) -> int: ...
    @property
    def next_retry_at(self) -> datetime | None: ...
    @property
    def pool(self) -> str: ...
    @property
    def pool_slots(self) -> int: ...
    @property
    def priority_weight(self) -> int: ...


class _TIRow(NamedTuple):
    """A TIRow read as a plain tuple: reading a field of a named tuple costs a tenth of
    reading one of SQLAlchemy's Row by name, and the snapshot reads every field of every task
    instance of the running runs on each step."""

    id: int
    run_pk: int
    dag_id: str
    task_id: str
    map_index: int
    state: str
    try_number: int
    next_retry_at: datetime | None
    pool: str
    pool_slots: int
    priority_weight: int


#: The columns of TIRow, selected as plain rows on the hot path (in _TIRow's order).
_DECISION_COLUMNS = tuple(getattr(TaskInstance, name) for name in _TIRow._fields)

# The statements of every step, built once: building a statement and computing its cache key
# cost a step of a 50-task run more than running it (in-process steps, docs/performance.md).
_RUNNING_RUNS = select(DagRun).where(DagRun.state == RunState.RUNNING.value)
#: Running runs a scheduler drives: all but those a live backfill drives itself.
_RUNNING_RUNS_OF_JOB = _RUNNING_RUNS.where(
    DagRun.claimed_by_job_id.is_(None) | (DagRun.claimed_by_job_id == bindparam("job_id")))
#: Running runs of a backfill: its own.
_RUNNING_RUNS_IN = _RUNNING_RUNS.where(DagRun.id.in_(bindparam("run_pks", expanding=True)))
_DECISION_ROWS = select(*_DECISION_COLUMNS).where(
    TaskInstance.run_pk.in_(bindparam("run_pks", expanding=True)))
#: Queued and running task instances per DAG and pool, with the pool slots they take.
_ACTIVE_PER_DAG_AND_POOL = (
    select(TaskInstance.dag_id, TaskInstance.pool, func.count(),
           func.coalesce(func.sum(TaskInstance.pool_slots), 0))
    .where(TaskInstance.state.in_((TaskState.QUEUED.value, TaskState.RUNNING.value)))
    .group_by(TaskInstance.dag_id, TaskInstance.pool))
_POOL_SLOTS = select(Pool.name, Pool.slots)
#: TaskState by value: a dict lookup, instead of the Enum call's search, per row and step.
_STATE = {state.value: state for state in TaskState}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Plan:
    """What one step decided from its snapshot, to apply under the write lock."""

    runs: dict[int, DagRun]
    # (task instance id, the state it was seen in, new state, reason)
    transitions: list[tuple[int, str, TaskState, str]] = field(default_factory=list)
    # run pk -> the end it was seen to reach (None: its dagrun_timeout passed)
    finishing: dict[int, RunState | None] = field(default_factory=dict)
    queue: list[int] = field(default_factory=list)
    retry_due: datetime | None = None
    # (placeholder task instance id, how many instances the mapped task gets)
    expansions: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class StepResult:
    created: int = 0
    queued: int = 0
    finished_runs: int = 0
    next_wake: float = IDLE_WAKE_SECONDS


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _processor_main(conn: Connection, settings: Settings, parent_pid: int) -> None:
    """The DAG processor: re-parse the DAGs folder every ``dag_dir_list_interval``."""
    from scheduler.parsing.processor import parse_dags_folder
    from scheduler.store.db import make_engine

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    engine = make_engine(settings.sql_alchemy_conn)
    while os.getppid() == parent_pid:
        try:
            report = parse_dags_folder(engine, settings)
            if report.changed:
                conn.send(len(report.parsed) + len(report.removed))
            for fileloc, error in report.errors.items():
                log.warning("import error in %s: %s", fileloc, error)
        except Exception:  # noqa: BLE001 - keep parsing; the next round may succeed
            log.exception("parsing the DAGs folder failed")
        if conn.poll(settings.dag_dir_list_interval):
            try:
                if conn.recv() is None:
                    break
            except EOFError:
                break


class Scheduler:
    """The loop. ``run_pks`` restricts it to some runs (``dags test``, backfill); such a
    scheduler creates no scheduled runs and parses nothing."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        executor: Executor,
        *,
        clock: Callable[[], datetime] = utcnow,
        run_pks: Collection[int] | None = None,
        parse: bool = True,
        job_kind: str = "scheduler",
        job_id: int | None = None,
        max_active_runs: int | None = None,
        newest_first: bool = False,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.executor = executor
        self.clock = clock
        self.run_pks = set(run_pks) if run_pks is not None else None
        self.parse = parse and run_pks is None
        self.job_kind = job_kind
        # An existing Job row of this process (a backfill claims its runs with it before the
        # loop starts); None: start() creates one.
        self.job_id: int | None = job_id
        # Overrides every DAG's max_active_runs, counted over this loop's runs only.
        self.max_active_runs = max_active_runs
        self.newest_first = newest_first
        self._versions: dict[int, SerializedDag] = {}
        self._stop = False
        self._processor: tuple[int, Connection] | None = None
        self._wakeup: WakeupSocket | None = None
        self._last_housekeeping = 0.0
        # The last step left scheduled task instances without an executor slot.
        self._starved = False
        # DAG callbacks of runs finished in this step, queued once the step has committed.
        self._callbacks: list[commands.Workload] = []
        # What the next step must look at. Most steps follow an attempt's end, which changes
        # task instances only; creating runs, starting queued ones, delivering signals and
        # advancing sagas are done only when something they depend on may have changed
        # (everything is unknown at first). Changes made elsewhere (CLI, web UI, a parse) wake
        # the loop (scheduler.wakeup); a lost wake-up, or another scheduler's change, is seen
        # within IDLE_WAKE_SECONDS, when the loop looks at everything again.
        self.last_step = StepResult()
        self._told = True  # a wake-up or a parse came since the last step
        self._looked_at: datetime | None = None  # the clock's time of the last such look
        self._run_ended = True  # a run left `running` since queued runs were last started
        self._runs_held = False  # queued runs were left waiting for max_active_runs
        self._next_due: datetime | None = None  # when a schedule next owes a run (not held)
        self._deferred = True  # the last snapshot held deferred task instances
        self._compensating = True  # the last saga step saw compensating runs

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        now = self.clock()
        if self.job_id is None:
            with session_scope(self.engine) as session:
                job = Job(kind=self.job_kind, hostname=HOSTNAME, pid=os.getpid(),
                          state="running", start_date=now, latest_heartbeat=now)
                session.add(job)
                session.flush()
                self.job_id = job.id
        self.executor.start()
        if self.run_pks is None:
            self._wakeup = WakeupSocket(self.settings.home)
        if self.parse:
            self._start_processor()
        self._housekeeping(now, force=True)

    def _start_processor(self) -> None:
        parent, child = Pipe(duplex=True)
        parent_pid = os.getpid()

        def processor() -> None:
            parent.close()
            _processor_main(child, self.settings, parent_pid)

        pid = fork_running(processor)
        child.close()
        self._processor = (pid, parent)

    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def stop(self, graceful: bool = True) -> None:
        """Stop: hand back the task instances queued but not started, let running attempts
        finish (graceful) or abandon them to the zombie check of the next scheduler."""
        backlog = self.executor.take_backlog()
        if backlog:
            with session_scope(self.engine) as session:
                for w in backlog:
                    ti = session.get(TaskInstance, w.ti_id)
                    if ti is not None and ti.state == TaskState.QUEUED and ti.claim == w.claim:
                        commands.requeue_lost(session, ti, now=self.clock(),
                                              reason="handed back: the scheduler stopped")
        if self._processor:
            pid, conn = self._processor
            try:
                conn.send(None)
            except OSError:
                pass
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self._processor = None
        self.executor.stop(graceful=graceful)
        if self._wakeup:
            self._wakeup.close()
        if self.job_id is not None:
            with session_scope(self.engine) as session:
                job = session.get(Job, self.job_id)
                if job:
                    job.state, job.end_date = "stopped", self.clock()

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Run steps until stopped (SIGTERM/SIGINT, or ``until()`` turns true)."""
        extra: list[Any] = []
        if self._wakeup:
            extra.append(self._wakeup)
        if self._processor:
            extra.append(self._processor[1])
        store_backoff = backoff_delays()
        while not self._stop:
            try:
                result = self.step()
            except DBAPIError as exc:
                if not is_disconnect(exc):
                    raise
                delay = next(store_backoff)
                log.warning("the store is unreachable (%s); next step in %.1f s",
                            str(exc.orig or exc).strip().splitlines()[0][:200], delay)
                time.sleep(delay)
                continue
            store_backoff = backoff_delays()
            self.last_step = result
            if until is not None and until():
                break
            deadline = time.monotonic() + result.next_wake
            while True:
                woken = self.executor.wait(max(0.0, deadline - time.monotonic()), extra)
                if woken or time.monotonic() >= deadline or any(
                        self._needs_step(e) for e in self.executor.pending_events()):
                    break
                self.executor.drain_events()
            for obj in woken:
                self._told = True
                if obj is self._wakeup:
                    self._wakeup.drain()
                elif self._processor and obj is self._processor[1]:
                    try:
                        obj.recv()
                    except EOFError:
                        log.error("the DAG processor died; restarting it")
                        self._processor = None
                        self._start_processor()

    def _needs_step(self, event: ExecutorEvent) -> bool:
        """Whether an executor event can change a decision. Not: a worker that only became
        free while no task instance waits for one, nor the success of a leaf task whose run
        still has other work in this executor (its run cannot have ended, nothing waits for
        it). In a wide fan-out that is most events, and a step reads every task instance of
        the running runs."""
        if event.kind == "done":
            return self._starved and self.executor.free_slots() > 0
        w = event.workload
        if event.kind != "recorded" or event.state != TaskState.SUCCESS.value or w is None:
            return True
        sdag = self._versions.get(w.version_id)
        task = sdag.task_dict.get(w.task_id) if sdag is not None else None
        if task is None or task.downstream or task.depends_on_past:
            return True
        return not self.executor.holds_other_of_run(w.dag_id, w.run_id, w.ti_id)

    # -- one step ------------------------------------------------------------------------------

    def step(self) -> StepResult:
        now = self.clock()
        result = StepResult()
        self._handle_executor_events(now)
        # (A clock that went back also counts as time to look.)
        everything = self._told or self._looked_at is None or not (
            self._looked_at <= now < self._looked_at + _LOOK_AGAIN)
        if everything:
            self._told, self._looked_at = False, now
        run_ended, self._run_ended = self._run_ended, False
        if self.run_pks is None:
            if everything or run_ended or (self._next_due is not None and self._next_due <= now):
                result.created, due = self._create_scheduled_runs(now)
                # A run still due now is held back by max_active_runs: the end of a run (or a
                # change told by a wake-up) is what lets it be created, not the time.
                self._next_due = due if due is not None and due > now else None
            if self._next_due is not None:
                result.next_wake = min(result.next_wake, (self._next_due - now).total_seconds())
        if everything or run_ended or result.created:
            self._runs_held = self._start_queued_runs(now)
        # A deferred task instance's signal may come from the CLI or the API at any time, and
        # its timeout must fire: while any waits, every step delivers.
        delivers = everything or self._deferred or self._compensating
        if delivers:
            deliver_due(self.engine, now, run_filter=self._run_filter())
        retry_due = self._schedule(now, result)
        if self._deferred and not delivers and deliver_due(
                self.engine, now, run_filter=self._run_filter()):
            # A task instance deferred since the last step and its signal was already kept:
            # step again at once to move its downstream tasks.
            result.next_wake = 0.0
        if everything or self._compensating:
            saga = sagas.advance_sagas(self.engine, self.version, now,
                                       run_filter=self._run_filter(), job_id=self.job_id,
                                       choose=self._choose)
            self._compensating = saga.compensating > saga.ended
            result.finished_runs += saga.ended
            for workload in saga.workloads:
                self.executor.queue_workload(workload)
        if result.finished_runs:
            self._run_ended = True
            if self._runs_held:
                result.next_wake = 0.0  # a queued run may take the place of the one that ended
        if retry_due is not None:
            result.next_wake = min(result.next_wake, max(0.0, (retry_due - now).total_seconds()))
        if self._deferred:  # wake when the first wait for a signal times out, not later
            with session_scope(self.engine, readonly=True) as session:
                timeout_at = next_timeout(session, run_filter=self._run_filter())
            if timeout_at is not None:
                result.next_wake = min(result.next_wake,
                                       max(0.0, (timeout_at - now).total_seconds()))
        self._housekeeping(now)
        return result

    def version(self, session: Session, version_id: int) -> SerializedDag:
        sdag = self._versions.get(version_id)
        if sdag is None:
            row = session.get(DagVersion, version_id)
            assert row is not None, f"run pinned to missing version {version_id}"
            sdag = SerializedDag.from_dict(row.serialized)
            self._versions[version_id] = sdag
        return sdag

    def _create_scheduled_runs(self, now: datetime) -> tuple[int, datetime | None]:
        created = 0
        # Look first without the write lock: most steps have nothing due.
        with session_scope(self.engine, readonly=True) as session:
            next_due = session.scalar(
                select(func.min(DagModel.next_run_after)).where(
                    DagModel.is_active, ~DagModel.is_paused)
            )
        if next_due is None or next_due > now:
            return 0, next_due
        with session_scope(self.engine) as session:
            due_dags = session.scalars(
                select(DagModel).where(
                    DagModel.is_active, ~DagModel.is_paused, DagModel.next_run_after <= now
                ).with_for_update(skip_locked=True)  # another scheduler has it: skip (PG)
            ).all()
            for dag in due_dags:
                active = session.scalar(
                    select(func.count()).where(
                        DagRun.dag_id == dag.dag_id,
                        DagRun.state.in_([RunState.QUEUED.value, RunState.RUNNING.value]),
                        DagRun.run_type == "scheduled",
                    )
                ) or 0
                if active >= dag.max_active_runs or dag.latest_version_id is None:
                    continue
                sdag = self.version(session, dag.latest_version_id)
                assert dag.next_logical_date and dag.next_data_interval_start
                assert dag.next_data_interval_end and dag.next_run_after
                run_id = f"scheduled__{dag.next_logical_date.isoformat()}"
                exists = session.scalar(
                    select(func.count()).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id)
                )
                if not exists:
                    commands.create_run(
                        session, dag=sdag, version_id=dag.latest_version_id, run_id=run_id,
                        run_type="scheduled", logical_date=dag.next_logical_date,
                        data_interval=DataInterval(dag.next_data_interval_start,
                                                   dag.next_data_interval_end),
                        run_after=dag.next_run_after, conf=None, now=now,
                        actor=commands.SCHEDULER)
                    created += 1
                session.flush()
                dag_store.refresh_next_run(session, dag, sdag, now=now)
            next_due = session.scalar(
                select(func.min(DagModel.next_run_after)).where(
                    DagModel.is_active, ~DagModel.is_paused)
            )
        return created, next_due

    def _run_filter(self) -> list[Any]:
        clauses: list[Any] = []
        if self.run_pks is not None:
            clauses.append(DagRun.id.in_(self.run_pks))
        else:
            # Runs a live backfill drives itself are not ours.
            clauses.append(
                (DagRun.claimed_by_job_id.is_(None)) | (DagRun.claimed_by_job_id == self.job_id))
        return clauses

    def _start_queued_runs(self, now: datetime) -> bool:
        """Start the queued runs that ``max_active_runs`` lets start; returns whether some
        (may) stay queued, held back by it."""
        with session_scope(self.engine, readonly=True) as session:
            if session.scalar(select(DagRun.id).where(
                    DagRun.state == RunState.QUEUED.value, *self._run_filter()).limit(1)) is None:
                return False
            slots = self._free_run_slots(session) if self.max_active_runs is not None else None
            if slots is not None and not slots:
                return True
        with session_scope(self.engine) as session:
            queued = session.scalars(
                select(DagRun).where(DagRun.state == RunState.QUEUED.value, *self._run_filter(),
                                     *([DagRun.dag_id.in_(slots)] if slots else []))
                .order_by(*((DagRun.logical_date.desc(), DagRun.id.desc()) if self.newest_first
                            else (DagRun.logical_date, DagRun.id)))
                .limit(sum(slots.values()) if slots else None)
                .with_for_update(skip_locked=True)
            ).all()
            if not queued:
                return True  # locked by another scheduler, or beyond the limit's slots
            own = self._run_filter() if self.max_active_runs is not None else []
            running = dict(
                session.execute(
                    select(DagRun.dag_id, func.count())
                    .where(DagRun.state == RunState.RUNNING.value,
                           DagRun.dag_id.in_({r.dag_id for r in queued}), *own)
                    .group_by(DagRun.dag_id)
                ).all()
            )
            held = False
            for run in queued:
                limit = (self.max_active_runs if self.max_active_runs is not None
                         else self.version(session, run.version_id).max_active_runs)
                if running.get(run.dag_id, 0) >= limit:
                    held = True
                    continue
                running[run.dag_id] = running.get(run.dag_id, 0) + 1
                commands.set_run_state(session, run, RunState.RUNNING, now=now,
                                       reason="started", actor=commands.SCHEDULER)
            # Under the override, the limit bounded how many were read: more may wait.
            return held or slots is not None

    def _free_run_slots(self, session: Session) -> dict[str, int]:
        """Under a ``max_active_runs`` override: how many more of this loop's runs may start,
        per DAG that has queued ones (cheap counts, so a loop at its limit loads no queue)."""
        assert self.max_active_runs is not None
        own = self._run_filter()
        waiting = session.scalars(select(DagRun.dag_id).where(
            DagRun.state == RunState.QUEUED.value, *own).distinct()).all()
        running = dict(session.execute(select(DagRun.dag_id, func.count()).where(
            DagRun.state == RunState.RUNNING.value, *own).group_by(DagRun.dag_id)).all())
        free = {d: self.max_active_runs - running.get(d, 0) for d in waiting}
        return {d: n for d, n in free.items() if n > 0}

    def _schedule(self, now: datetime, result: StepResult) -> datetime | None:
        """Advance every running run; queue what is ready. Returns when a retry is next due.

        Decisions are made from a read-only snapshot, so a step with nothing to change never
        takes the write lock (on SQLite, workers recording their outcomes hold it often). The
        changes are then applied in one write transaction that re-checks every row it changes
        against the state the decision was made on; a row that moved meanwhile is left for the
        next step.
        """
        with session_scope(self.engine, readonly=True) as session:
            plan = self._plan(session, now)
        if plan is None:
            return None
        if plan.transitions or plan.finishing or plan.queue or plan.expansions:
            self._callbacks.clear()
            with session_scope(self.engine) as session:
                workloads = self._apply(session, plan, now, result)
            for workload in [*workloads, *self._callbacks]:
                self.executor.queue_workload(workload)
        return plan.retry_due

    def _plan(self, session: Session, now: datetime) -> _Plan | None:
        if self.run_pks is not None:
            runs = session.scalars(_RUNNING_RUNS_IN, {"run_pks": list(self.run_pks)}).all()
        else:
            runs = session.scalars(_RUNNING_RUNS_OF_JOB, {"job_id": self.job_id}).all()
        if not runs:
            self._starved = self._deferred = False
            return None
        plan = _Plan(runs={r.id: r for r in runs})
        deferred = False
        tis_by_run: dict[int, list[_TIRow]] = defaultdict(list)
        # Plain tuples of the columns decisions read, not ORM objects: building thousands of
        # tracked objects per step was most of the step's time (docs/performance.md).
        make = _TIRow._make
        for row in session.execute(_DECISION_ROWS, {"run_pks": list(plan.runs)}):
            ti = make(row)
            tis_by_run[ti.run_pk].append(ti)
            if ti.state == _DEFERRED:
                deferred = True
        self._deferred = deferred
        scheduled: list[TIRow] = []
        for run in runs:
            sdag = self.version(session, run.version_id)
            tis = tis_by_run[run.id]
            by_key = {(ti.task_id, ti.map_index): ti for ti in tis}
            views = _views(tis)
            hold = self._past_not_done(session, run, sdag, views)
            for tr in schedulable(sdag, views, now, hold=hold):
                ti = by_key[(tr.task_id, tr.map_index)]
                task = sdag.task_dict[tr.task_id]
                if task.is_mapped and tr.to_state == TaskState.SCHEDULED and ti.map_index < 0:
                    count = self._mapped_length(session, run, task)
                    if count > 0:
                        plan.expansions.append((ti.id, count))
                        views[ti.task_id] = TIView(ti.task_id, TaskState.SCHEDULED)
                        continue
                    tr = Transition(tr.task_id, TaskState.SKIPPED, "mapped over an empty input")
                plan.transitions.append((ti.id, ti.state, tr.to_state, tr.reason))
                views[ti.task_id] = TIView(ti.task_id, tr.to_state, ti.try_number,
                                           ti.next_retry_at, ti.map_index)
                if tr.to_state == TaskState.SCHEDULED:
                    scheduled.append(ti)
            scheduled.extend(self._mapped_instances_due(sdag, tis, views, now, plan))
            if self._timed_out(run, sdag, now):
                plan.finishing[run.id] = None
                continue
            outcome = run_outcome(sdag, views)
            if outcome is not None:
                plan.finishing[run.id] = outcome
                continue
            for ti in tis:
                if ti.state == TaskState.SCHEDULED.value:
                    scheduled.append(ti)
                elif ti.state in _WAITING_FOR_TIME and ti.next_retry_at:
                    if plan.retry_due is None or ti.next_retry_at < plan.retry_due:
                        plan.retry_due = ti.next_retry_at
        if scheduled:
            plan.queue = self._choose(session, scheduled, plan.runs)
        self._starved = len(plan.queue) < len(scheduled)
        return plan

    def _mapped_length(self, session: Session, run: DagRun, task: SerializedTask) -> int:
        def xcom_value(task_id: str, key: str) -> Any:
            rows = session.scalars(select(XCom.value).where(
                XCom.run_pk == run.id, XCom.task_id == task_id, XCom.key == key)
                .order_by(XCom.map_index)).all()
            return rows[0] if len(rows) == 1 else (list(rows) if rows else None)

        try:
            return mapped_length(task.expand, xcom_value)
        except TypeError as exc:
            log.error("cannot map %s of run %s: %s", task.task_id, run.run_id, exc)
            return 0

    def _mapped_instances_due(self, sdag: SerializedDag, tis: Sequence[TIRow],
                              views: dict[str, TIView], now: datetime,
                              plan: _Plan) -> list[TIRow]:
        """Mapped task instances move on their own: a retry or reschedule that is due, or one
        reset by a clear whose upstream tasks allow it."""
        due: list[TIRow] = []
        for ti in tis:
            if ti.map_index < 0:
                continue
            to: TaskState | None = None
            reason = ""
            if ti.state in _WAITING_FOR_TIME and (ti.next_retry_at is None
                                                  or ti.next_retry_at <= now):
                to, reason = TaskState.SCHEDULED, "retry delay elapsed"
            elif ti.state == TaskState.NONE.value:
                task = sdag.task_dict.get(ti.task_id)
                if task is None:
                    continue
                verdict = evaluate_trigger_rule(
                    task.trigger_rule, [views[u].state for u in task.upstream if u in views])
                to = {Verdict.READY: TaskState.SCHEDULED, Verdict.SKIP: TaskState.SKIPPED,
                      Verdict.UPSTREAM_FAILED: TaskState.UPSTREAM_FAILED}.get(verdict)
                reason = f"trigger rule {task.trigger_rule}: {verdict.value}"
            if to is not None:
                plan.transitions.append((ti.id, ti.state, to, reason))
                if to == TaskState.SCHEDULED:
                    due.append(ti)
        return due

    def _past_not_done(self, session: Session, run: DagRun, sdag: SerializedDag,
                       views: dict[str, TIView]) -> set[str]:
        """Tasks with ``depends_on_past`` whose instance in the DAG's previous run (by logical
        date) has not ended in success or skipped: they wait (Airflow's rule)."""
        waiting = [t.task_id for t in sdag.tasks
                   if t.depends_on_past and views.get(t.task_id) is not None
                   and views[t.task_id].state == TaskState.NONE]
        if not waiting:
            return set()
        previous = session.scalar(
            select(DagRun.id).where(DagRun.dag_id == run.dag_id,
                                    DagRun.logical_date < run.logical_date)
            .order_by(DagRun.logical_date.desc()).limit(1))
        if previous is None:
            return set()
        done = set(session.scalars(select(TaskInstance.task_id).where(
            TaskInstance.run_pk == previous, TaskInstance.task_id.in_(waiting),
            TaskInstance.state.in_([TaskState.SUCCESS.value, TaskState.SKIPPED.value]))))
        present = set(session.scalars(select(TaskInstance.task_id).where(
            TaskInstance.run_pk == previous, TaskInstance.task_id.in_(waiting))))
        # A task that did not exist in the previous run has no past to wait for.
        return {t for t in waiting if t in present and t not in done}

    def _apply(self, session: Session, plan: _Plan, now: datetime,
               result: StepResult) -> list[commands.Workload]:
        ids = {t[0] for t in plan.transitions} | set(plan.queue)
        # Rows another scheduler is changing are skipped (PostgreSQL; SQLite has one writer):
        # they are left for the next step, like rows that moved since the snapshot.
        rows = commands.lock_task_instances(session, ids) if ids else {}
        to_schedule: list[tuple[commands.LockedTI, str]] = []
        for ti_id, seen, to, reason in plan.transitions:
            row = rows.get(ti_id)
            if row is None or row.state != seen:
                continue
            if to == TaskState.SCHEDULED:  # most transitions, in bulk
                to_schedule.append((row, reason))
            else:
                ti = session.get(TaskInstance, ti_id)
                assert ti is not None  # (locked)
                commands.set_task_state(session, ti, to, now=now, reason=reason,
                                        actor=commands.SCHEDULER)
            rows[ti_id] = row._replace(state=to.value)
        commands.schedule_locked(session, to_schedule, now=now, actor=commands.SCHEDULER)
        for placeholder_id, count in plan.expansions:
            placeholder = session.get(TaskInstance, placeholder_id,
                                      with_for_update={"skip_locked": True})
            if (placeholder is not None and placeholder.state == TaskState.NONE.value
                    and placeholder.map_index < 0):
                commands.expand_mapped(session, placeholder, count, now=now)
                result.next_wake = 0.0  # queue the new task instances in the next step
        for run_pk in plan.finishing:
            self._finish_run(session, run_pk, now, result)
        to_queue = [rows[i] for i in plan.queue
                    if i in rows and rows[i].state == TaskState.SCHEDULED.value]
        if not to_queue:
            return []
        timeouts: dict[int, float | None] = {}
        for row in to_queue:
            sdag = self.version(session, plan.runs[row.run_pk].version_id)
            task = sdag.task_dict.get(row.task_id)
            timeout = task.execution_timeout if task else None
            timeouts[row.id] = timeout.total_seconds() if timeout else None
        workloads = commands.queue_locked(
            session, to_queue, version_id_of={pk: r.version_id for pk, r in plan.runs.items()},
            timeout_of=timeouts, job_id=self.job_id, now=now)
        result.queued = len(workloads)
        return workloads

    def _finish_run(self, session: Session, run_pk: int, now: datetime,
                    result: StepResult) -> None:
        """Decide the run's end again on the current rows (a user may have cleared a task
        since the snapshot) and record it."""
        run = session.get(DagRun, run_pk, with_for_update={"skip_locked": True})
        if run is None or run.state != RunState.RUNNING.value:
            return
        sdag = self.version(session, run.version_id)

        def instances() -> list[TaskInstance]:
            return list(session.scalars(select(TaskInstance).where(
                TaskInstance.run_pk == run_pk)))

        if self._timed_out(run, sdag, now):
            self._fail_run_on_timeout(session, run, instances(), sdag, now)
            result.finished_runs += 1
            return
        # (Plain rows to decide; ORM objects only where task instances change.)
        outcome = run_outcome(sdag, _views([_TIRow._make(row) for row in session.execute(
            select(*_DECISION_COLUMNS).where(TaskInstance.run_pk == run_pk))]))
        if outcome is not None:
            self._callback_due(run, sdag, outcome)
            reason = "decided by its leaf tasks"
            # A failed run with succeeded steps to undo goes compensating instead (sagas.py).
            if outcome == RunState.FAILED and sdag.compensations and sagas.begin_compensation(
                    session, run, sdag, instances(), now=now, reason=reason):
                self._compensating = True  # this step's saga work starts its compensations
            else:
                commands.set_run_state(session, run, outcome, now=now, reason=reason,
                                       actor=commands.SCHEDULER)
            result.finished_runs += 1

    def _callback_due(self, run: DagRun, sdag: SerializedDag, outcome: RunState) -> None:
        """Queue the DAG's on_success/on_failure callback of a finished run: it is user code,
        so a worker runs it, after the run's state is committed."""
        which = {RunState.SUCCESS: "on_success", RunState.FAILED: "on_failure"}.get(outcome)
        if which and (sdag.raw.get("has_callbacks") or {}).get(which):
            self._callbacks.append(commands.Workload(
                ti_id=0, dag_id=run.dag_id, run_id=run.run_id, task_id="", map_index=-1,
                try_number=0, version_id=run.version_id, claim="", callback=which))

    def _timed_out(self, run: DagRun, sdag: SerializedDag, now: datetime) -> bool:
        return (sdag.dagrun_timeout is not None and run.start_date is not None
                and now - run.start_date > sdag.dagrun_timeout)

    def _fail_run_on_timeout(self, session: Session, run: DagRun, tis: list[TaskInstance],
                             sdag: SerializedDag, now: datetime) -> None:
        reason = f"dagrun_timeout of {sdag.dagrun_timeout} exceeded"
        for ti in tis:
            if TaskState(ti.state) not in FINISHED_TASK_STATES and ti.state != "running":
                commands.set_task_state(session, ti, TaskState.SKIPPED, now=now, reason=reason,
                                        actor=commands.SCHEDULER)
        commands.set_run_state(session, run, RunState.FAILED, now=now, reason=reason,
                               actor=commands.SCHEDULER)

    def _choose(self, session: Session, scheduled: Sequence[TIRow],
                run_by_pk: Mapping[int, DagRun]) -> list[int]:
        """The scheduled task instances to queue now, within every limit, best first."""
        free = self.executor.free_slots()
        if free <= 0:
            return []
        running_per_dag: dict[str, int] = defaultdict(int)
        used: dict[str, int] = defaultdict(int)
        for dag_id, pool, count, slots in session.execute(_ACTIVE_PER_DAG_AND_POOL):
            running_per_dag[dag_id] += count
            used[pool] += slots
        pools = dict(session.execute(_POOL_SLOTS).all())
        pool_free = {name: slots - used.get(name, 0) for name, slots in pools.items()}
        max_tasks: dict[str, int] = {}
        logical_dates: dict[int, datetime | None] = {}
        for pk in dict.fromkeys(ti.run_pk for ti in scheduled):  # per run, not per instance
            run = run_by_pk[pk]
            max_tasks[run.dag_id] = self.version(session, run.version_id).max_active_tasks
            logical_dates[pk] = run.logical_date
        candidates = [Candidate(key=ti.id, dag_id=ti.dag_id, pool=ti.pool,
                                pool_slots=ti.pool_slots, priority_weight=ti.priority_weight,
                                logical_date=logical_dates[ti.run_pk], order=order)
                      for order, ti in enumerate(scheduled)]
        return [int(c.key) for c in pick_tasks_to_queue(  # type: ignore[call-overload]
            candidates, free_slots=free, running_per_dag=running_per_dag,
            max_active_tasks=max_tasks, pool_free=pool_free)]

    # -- failures of other parts -----------------------------------------------------------------

    def _handle_executor_events(self, now: datetime) -> None:
        lost = [e for e in self.executor.drain_events() if e.kind == "lost"]
        if not lost:
            return
        with session_scope(self.engine) as session:
            for event in lost:
                ti = session.get(TaskInstance, event.ti_id, with_for_update={"skip_locked": True})
                if ti is None or ti.try_number != event.try_number:
                    continue
                self._recover(session, ti, now, "its worker process died")

    def _recover(self, session: Session, ti: TaskInstance, now: datetime, why: str) -> None:
        if ti.state == TaskState.QUEUED.value:
            commands.requeue_lost(session, ti, now=now, reason=f"requeued: {why}")
        elif ti.state == TaskState.RUNNING.value:
            run = session.get(DagRun, ti.run_pk)
            assert run is not None
            sdag = self.version(session, run.version_id)
            task = sdag.task_dict.get(ti.task_id) or next(
                (c for c in sdag.compensations if c.task_id == ti.task_id), None)
            if task is not None:
                commands.fail_zombie(session, ti, task, now=now, reason=f"zombie: {why}")

    def _housekeeping(self, now: datetime, force: bool = False) -> None:
        """Heartbeat this job; fail zombies; requeue what dead schedulers had queued."""
        mono = time.monotonic()
        if not force and mono - self._last_housekeeping < min(self.settings.heartbeat_interval, 5):
            return
        self._last_housekeeping = mono
        stale_before = now - timedelta(seconds=self.settings.task_heartbeat_timeout)
        with session_scope(self.engine) as session:
            job = session.get(Job, self.job_id)
            if job is not None:
                job.latest_heartbeat = now
            zombies = session.scalars(
                select(TaskInstance).join(DagRun, DagRun.id == TaskInstance.run_pk).where(
                    TaskInstance.state == TaskState.RUNNING.value,
                    TaskInstance.heartbeat_at < stale_before, *self._run_filter())
                .with_for_update(skip_locked=True, of=TaskInstance)
            ).all()
            for ti in zombies:
                self._recover(session, ti, now,
                              f"no heartbeat for {self.settings.task_heartbeat_timeout:g} s")
            # On this machine a dead worker process is seen at once, not after the timeout.
            mine = {t.id for t in zombies}
            for ti in session.scalars(
                select(TaskInstance).join(DagRun, DagRun.id == TaskInstance.run_pk).where(
                    TaskInstance.state == TaskState.RUNNING.value,
                    TaskInstance.hostname == HOSTNAME, *self._run_filter())
                .with_for_update(skip_locked=True, of=TaskInstance)
            ).all():
                if ti.id not in mine and ti.pid is not None and not _pid_alive(ti.pid):
                    self._recover(session, ti, now, f"its worker process {ti.pid} is gone")
            dead_jobs = self._dead_jobs(session, now)
            if self.run_pks is None:
                # Adopt the unfinished runs of backfills that died or stopped.
                session.flush()
                session.execute(
                    update(DagRun).where(
                        DagRun.claimed_by_job_id.in_(
                            select(Job.id).where(Job.state.in_(["dead", "stopped"]))),
                        DagRun.state.in_([RunState.QUEUED.value, RunState.RUNNING.value]))
                    .values(claimed_by_job_id=None).execution_options(synchronize_session=False))
            mine = self.executor.running()
            orphans = session.scalars(
                select(TaskInstance).join(DagRun, DagRun.id == TaskInstance.run_pk).where(
                    TaskInstance.state == TaskState.QUEUED.value, *self._run_filter())
                # Locked, so a worker's claim (a conditional UPDATE) and our requeue of the
                # same row cannot interleave: one of them sees the other's result.
                .with_for_update(skip_locked=True, of=TaskInstance)
            ).all()
            for ti in orphans:
                owner = ti.queued_by_job_id
                if (owner in dead_jobs) or (owner == self.job_id and ti.id not in mine) or (
                        owner is None):
                    self._recover(session, ti, now, "the scheduler that queued it is gone")

    def _dead_jobs(self, session: Session, now: datetime) -> set[int]:
        stale_before = now - timedelta(seconds=self.settings.scheduler_heartbeat_timeout)
        dead: set[int] = set()
        others = select(Job).where(Job.state == "running", Job.id != self.job_id)
        for job in session.scalars(others):
            if job.latest_heartbeat < stale_before or (
                    job.hostname == HOSTNAME and not _pid_alive(job.pid)):
                job.state, job.end_date = "dead", now
                dead.add(job.id)
        dead.update(session.scalars(select(Job.id).where(Job.state.in_(["dead", "stopped"]))))
        return dead


def _views(tis: Sequence[TIRow]) -> dict[str, TIView]:
    """What the decisions see of a run's task instances: one view per task, a mapped task's
    instances folded into one state (core.mapping.aggregate_state)."""
    views: dict[str, TIView] = {}
    mapped: dict[str, list[TIRow]] = defaultdict(list)
    for ti in tis:
        if ti.map_index < 0:
            views[ti.task_id] = TIView(ti.task_id, _STATE[ti.state], ti.try_number,
                                       ti.next_retry_at, ti.map_index)
        else:
            mapped[ti.task_id].append(ti)
    # An expanded task has no placeholder left (it became map index 0: commands.expand_mapped).
    for task_id, items in mapped.items():
        views[task_id] = TIView(task_id, aggregate_state([ti.state for ti in items]))
    return views


def trigger_run(
    session: Session,
    *,
    dag_id: str,
    now: datetime,
    conf: dict[str, Any] | None = None,
    run_id: str | None = None,
    logical_date: datetime | None = None,
    run_type: str = "manual",
    actor: str = "cli",
) -> DagRun:
    """Create a manual run of the DAG's latest version. Raises LookupError / ValueError with a
    message for the user when the DAG is unknown or the run id taken."""
    from scheduler.core.timetable import make_timetable
    from scheduler.errors import NotFound

    dag = session.get(DagModel, dag_id)
    if dag is None or dag.latest_version_id is None:
        raise NotFound(f"DAG {dag_id!r} is not in the store; check `headwater dags list` "
                       "(and its import errors)")
    sdag = SerializedDag.from_dict(session.get(DagVersion, dag.latest_version_id).serialized)  # type: ignore[union-attr]
    logical = logical_date or now
    interval = make_timetable(sdag.schedule, sdag.timezone).manual_interval(logical)
    run_id = run_id or f"{run_type}__{logical.isoformat()}"
    try:
        with session.begin_nested():
            run = commands.create_run(
                session, dag=sdag, version_id=dag.latest_version_id, run_id=run_id,
                run_type=run_type, logical_date=logical, data_interval=interval, run_after=now,
                conf=conf, now=now, actor=actor)
    except IntegrityError:
        raise ValueError(f"DAG {dag_id!r} already has a run with run_id {run_id!r}; pass "
                         "another --run-id") from None
    return run

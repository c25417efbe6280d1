"""The only functions that change the state of a run or a task instance.

Each takes the session explicitly (the caller owns the transaction) and appends an
:class:`~scheduler.store.models.Event` for every state it changes, in that same transaction, so
the event history and the current state can never disagree. Replaying a run's events from the
first yields its stored state; ``tests/store`` checks it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from scheduler.core.decisions import attempt_failed
from scheduler.core.serialized import SerializedDag, SerializedTask
from scheduler.core.states import (
    FINISHED_TASK_STATES,
    RunState,
    TaskState,
    check_run_transition,
    check_task_transition,
)
from scheduler.core.timetable import DataInterval
from scheduler.store.models import DagRun, Event, Signal, TaskAttempt, TaskInstance, XCom

SCHEDULER = "scheduler"
WORKER = "worker"


@dataclass(frozen=True)
class Workload:
    """What crosses from the scheduler to a worker: identifiers only, never user objects."""

    ti_id: int
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    version_id: int
    claim: str
    queue: str = "default"
    execution_timeout: float | None = None
    #: "on_success" / "on_failure": run the DAG's callback for the run (ti_id is 0)
    callback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Workload:
        return cls(**d)


def _task_event(
    ti: TaskInstance, frm: str | None, to: str, *, now: datetime, reason: str | None, actor: str
) -> Event:
    return Event(
        when=now,
        kind="task",
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        run_pk=ti.run_pk,
        ti_id=ti.id,
        task_id=ti.task_id,
        map_index=ti.map_index,
        try_number=ti.try_number,
        from_state=frm,
        to_state=to,
        reason=reason,
        actor=actor,
    )


def set_run_state(
    session: Session, run: DagRun, to: RunState, *, now: datetime, reason: str, actor: str
) -> None:
    """Move ``run`` to ``to`` (checked against the transition table) and record the event."""
    frm = RunState(run.state)
    if frm == to:
        return
    check_run_transition(frm, to)
    run.state = to.value
    if to == RunState.RUNNING and run.start_date is None:
        run.start_date = now
    if to in (RunState.SUCCESS, RunState.FAILED, RunState.COMPENSATED):
        run.end_date = now
    elif to in (RunState.QUEUED, RunState.RUNNING):
        run.end_date = None
    if to == RunState.QUEUED:
        run.queued_at = now
    session.add(
        Event(
            when=now,
            kind="run",
            dag_id=run.dag_id,
            run_id=run.run_id,
            run_pk=run.id,
            from_state=frm.value,
            to_state=to.value,
            reason=reason,
            actor=actor,
        )
    )


def set_task_state(
    session: Session,
    ti: TaskInstance,
    to: TaskState,
    *,
    now: datetime,
    reason: str,
    actor: str,
) -> None:
    """Move ``ti`` to ``to`` (checked against the transition table) and record the event.

    Sets the bookkeeping that goes with the state: ``end_date``/``duration`` on a finished
    state, a fresh slate on ``none`` (a clear).
    """
    frm = TaskState(ti.state)
    if frm == to:
        return
    check_task_transition(frm, to)
    ti.state = to.value
    if to in FINISHED_TASK_STATES or to in (TaskState.UP_FOR_RETRY, TaskState.UP_FOR_RESCHEDULE):
        ti.end_date = now
        if ti.start_date is not None and to in (
                TaskState.SUCCESS, TaskState.FAILED, TaskState.UP_FOR_RETRY):
            ti.duration = (now - ti.start_date).total_seconds()
        ti.claim = None
    elif to == TaskState.NONE:
        ti.start_date = ti.end_date = ti.duration = ti.next_retry_at = None
        ti.claim = None
    session.add(_task_event(ti, frm.value, to.value, now=now, reason=reason, actor=actor))


def create_run(
    session: Session,
    *,
    dag: SerializedDag,
    version_id: int,
    run_id: str,
    run_type: str,
    logical_date: datetime,
    data_interval: DataInterval | None,
    run_after: datetime,
    conf: Mapping[str, Any] | None,
    now: datetime,
    actor: str,
) -> DagRun:
    """Create a queued run pinned to ``version_id``, with one task instance per task."""
    run = DagRun(
        dag_id=dag.dag_id,
        run_id=run_id,
        run_type=run_type,
        state=RunState.QUEUED.value,
        logical_date=logical_date,
        data_interval_start=data_interval.start if data_interval else None,
        data_interval_end=data_interval.end if data_interval else None,
        run_after=run_after,
        conf=dict(conf or {}),
        version_id=version_id,
        queued_at=now,
        created_at=now,
    )
    session.add(run)
    session.flush()
    session.add(
        Event(
            when=now,
            kind="run",
            dag_id=run.dag_id,
            run_id=run.run_id,
            run_pk=run.id,
            from_state=None,
            to_state=RunState.QUEUED.value,
            reason=f"{run_type} run created",
            actor=actor,
        )
    )
    session.add_all(_new_task_instance(run, task) for task in dag.tasks)
    return run


def _new_task_instance(run: DagRun, task: SerializedTask) -> TaskInstance:
    return TaskInstance(
        run_pk=run.id,
        dag_id=run.dag_id,
        run_id=run.run_id,
        task_id=task.task_id,
        map_index=-1,
        state=TaskState.NONE.value,
        try_number=0,
        max_tries=task.retries,
        operator=task.operator,
        pool=task.pool,
        pool_slots=task.pool_slots,
        priority_weight=task.priority_weight,
        queue=task.queue,
    )


def _workload(ti: Any, try_number: int, claim: str, version_id_of: Mapping[int, int],
              timeout_of: Mapping[int, float | None]) -> Workload:
    """The workload of a task instance (ORM object or locked row) queued for ``try_number``."""
    return Workload(ti_id=ti.id, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                    map_index=ti.map_index, try_number=try_number,
                    version_id=version_id_of[ti.run_pk], claim=claim, queue=ti.queue,
                    execution_timeout=timeout_of.get(ti.id))


def queue_task_instances(
    session: Session,
    tis: Sequence[TaskInstance],
    *,
    version_id_of: Mapping[int, int],
    timeout_of: Mapping[int, float | None],
    job_id: int | None,
    now: datetime,
) -> list[Workload]:
    """Move scheduled task instances (ORM objects) to ``queued``, starting their next try, and
    return the workloads to hand to the executor. Each gets a fresh claim token. The rows are
    written by :func:`queue_locked`; the objects are expired, and re-read when next used."""
    session.flush()  # (their pending changes first: the ids, a state set just before)
    rows = [LockedTI(ti.id, ti.run_pk, ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.state,
                     ti.try_number, ti.queue) for ti in tis]
    return queue_locked(session, rows, version_id_of=version_id_of, timeout_of=timeout_of,
                        job_id=job_id, now=now)


class LockedTI(NamedTuple):
    """A task instance the scheduler's write transaction is about to change, as a plain row."""

    id: int
    run_pk: int
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str
    try_number: int
    queue: str


def lock_task_instances(session: Session, ids: Iterable[int]) -> dict[int, LockedTI]:
    """The task instances ``ids``, locked for this transaction, by id. Rows another scheduler
    is changing are left out (PostgreSQL; SQLite has a single writer)."""
    conn = _core(session)
    return {row.id: LockedTI._make(row)
            for row in conn.execute(_LOCK_TIS, {"ids": list(ids)})}


# A step of a wide run moves hundreds of task instances at once (200 to ``scheduled`` in the
# first step of a 200-task fan-out): the two functions below do it in two executemany
# statements each, not one ORM object and flush per row. Same rules as set_task_state.

def schedule_locked(session: Session, moves: Sequence[tuple[LockedTI, str]], *, now: datetime,
                    actor: str) -> None:
    """Move locked task instances to ``scheduled``, each with its reason."""
    if not moves:
        return
    for ti, _ in moves:
        check_task_transition(TaskState(ti.state), TaskState.SCHEDULED)
    conn = _core(session)
    conn.execute(_UPDATE_TI, [{"b_id": ti.id, "state": TaskState.SCHEDULED.value}
                              for ti, _ in moves])
    conn.execute(_INSERT_EVENT, [
        _event_values(ti, ti.state, TaskState.SCHEDULED.value, now=now, reason=reason,
                      actor=actor, try_number=ti.try_number) for ti, reason in moves])
    for ti, _ in moves:
        _forget(session, ti.id)


def queue_locked(
    session: Session,
    tis: Sequence[LockedTI],
    *,
    version_id_of: Mapping[int, int],
    timeout_of: Mapping[int, float | None],
    job_id: int | None,
    now: datetime,
) -> list[Workload]:
    """:func:`queue_task_instances` for locked rows: each moves to ``queued`` with its next
    try and a fresh claim token; returns their workloads."""
    values: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    workloads: list[Workload] = []
    for ti in tis:
        check_task_transition(TaskState(ti.state), TaskState.QUEUED)
        claim = uuid.uuid4().hex
        values.append({"b_id": ti.id, "state": TaskState.QUEUED.value,
                       "try_number": ti.try_number + 1, "claim": claim, "queued_at": now,
                       "queued_by_job_id": job_id})
        # (The event carries the try the instance had when it was queued, as the ORM path.)
        events.append(_event_values(ti, ti.state, TaskState.QUEUED.value, now=now,
                                    reason="queued", actor=SCHEDULER, try_number=ti.try_number))
        workloads.append(_workload(ti, ti.try_number + 1, claim, version_id_of, timeout_of))
    if values:
        conn = _core(session)
        conn.execute(_UPDATE_TI, values)
        conn.execute(_INSERT_EVENT, events)
        for ti in tis:
            _forget(session, ti.id)
    return workloads


def expand_mapped(session: Session, placeholder: TaskInstance, count: int, *, now: datetime
                  ) -> list[TaskInstance]:
    """Turn a mapped task's placeholder (map index -1) into ``count`` scheduled task
    instances, map indexes 0..count-1 (the placeholder becomes index 0)."""
    reason = f"mapped into {count} task instance{'s' if count != 1 else ''}"
    placeholder.map_index = 0
    made = [placeholder]
    for index in range(1, count):
        ti = TaskInstance(
            run_pk=placeholder.run_pk, dag_id=placeholder.dag_id, run_id=placeholder.run_id,
            task_id=placeholder.task_id, map_index=index, state=TaskState.NONE.value,
            try_number=0, max_tries=placeholder.max_tries, operator=placeholder.operator,
            pool=placeholder.pool, pool_slots=placeholder.pool_slots,
            priority_weight=placeholder.priority_weight, queue=placeholder.queue)
        session.add(ti)
        made.append(ti)
    session.flush()
    for ti in made:
        set_task_state(session, ti, TaskState.SCHEDULED, now=now, reason=reason,
                       actor=SCHEDULER)
    return made


def requeue_lost(session: Session, ti: TaskInstance, *, now: datetime, reason: str) -> None:
    """Give back a ``queued`` task instance whose workload never started (its scheduler or
    executor died): back to ``scheduled``, the try it was about to start undone."""
    set_task_state(session, ti, TaskState.SCHEDULED, now=now, reason=reason, actor=SCHEDULER)
    ti.try_number = max(ti.try_number - 1, 0)
    ti.claim = None
    ti.queued_by_job_id = None


@dataclass(frozen=True)
class StartedAttempt:
    """The task instance as its attempt started: what the worker needs to run it."""

    id: int
    run_pk: int
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    max_tries: int
    start_date: datetime


# The attempt path below (start_attempt, finish_attempt) runs once or twice per task, so it
# executes statements built once, with bound parameters, on the session's connection (SQLAlchemy
# Core): no statement construction, no identity map, a fraction of the ORM's cost per attempt.
# It keeps the rules of the ORM path: transitions checked against the table in core/states.py,
# one event per state change, in the caller's transaction.
_TI = cast(Table, TaskInstance.__table__)
_EVENT = cast(Table, Event.__table__)
_ATTEMPT = cast(Table, TaskAttempt.__table__)
_XCOM = cast(Table, XCom.__table__)
_STARTED_COLUMNS = (_TI.c.id, _TI.c.run_pk, _TI.c.dag_id, _TI.c.run_id, _TI.c.task_id,
                    _TI.c.map_index, _TI.c.try_number, _TI.c.max_tries)
# (Parameter names start with "b_" where a column of the same name is set.)
_CLAIM = (
    update(_TI)
    .where(_TI.c.id == bindparam("b_id"), _TI.c.state == TaskState.QUEUED.value,
           _TI.c.claim == bindparam("b_claim"))
    .values(state=TaskState.RUNNING.value, start_date=bindparam("b_now"), end_date=None,
            duration=None, heartbeat_at=bindparam("b_now"), hostname=bindparam("b_hostname"),
            pid=bindparam("b_pid"))
    .returning(*_STARTED_COLUMNS)
)
_INSERT_EVENT = insert(_EVENT)
_INSERT_XCOM = insert(_XCOM)
_DELETE_XCOMS = delete(_XCOM).where(_XCOM.c.ti_id == bindparam("b_id"))
_LOCK_RUNNING = (select(*_STARTED_COLUMNS, _TI.c.state, _TI.c.start_date)
                 .where(_TI.c.id == bindparam("b_id")).with_for_update())
_UPDATE_TI = update(_TI).where(_TI.c.id == bindparam("b_id"))  # SET: the columns given
#: lock_task_instances: the rows a step moves, locked (PostgreSQL; SQLite has one writer).
_LOCK_TIS = (select(*(_TI.c[name] for name in LockedTI._fields))
             .where(_TI.c.id.in_(bindparam("ids", expanding=True)))
             .with_for_update(skip_locked=True))
_END_ATTEMPT = update(_ATTEMPT).where(_ATTEMPT.c.ti_id == bindparam("b_id"),
                                      _ATTEMPT.c.try_number == bindparam("b_try"))
_upserts: dict[str, Any] = {}


def _upsert_attempt(conn: Connection) -> Any:
    """INSERT of an attempt row that updates the row the attempt already has, if any (a
    rescheduled sensor pokes again within the same try). One statement per dialect."""
    stmt = _upserts.get(conn.dialect.name)
    if stmt is None:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
        ins = dialect.insert(_ATTEMPT)
        stmt = _upserts[conn.dialect.name] = ins.on_conflict_do_update(
            index_elements=[_ATTEMPT.c.ti_id, _ATTEMPT.c.try_number],
            set_={c: ins.excluded[c] for c in ("state", "end_date", "hostname", "pid")})
    return stmt


def _core(session: Session) -> Connection:
    """The session's connection, with the session's pending ORM changes written first (a
    caller may have queued the task instance in this same session)."""
    session.flush()
    return session.connection()


def _forget(session: Session, ti_id: int) -> None:
    """A TaskInstance of this session that Core statements just changed must be re-read."""
    ti = session.identity_map.get(session.identity_key(TaskInstance, ti_id))
    if ti is not None:
        session.expire(ti)


def _event_values(ti: Any, frm: str | None, to: str, *, now: datetime, reason: str | None,
                  actor: str, try_number: int) -> dict[str, Any]:
    return {"when": now, "kind": "task", "dag_id": ti.dag_id, "run_id": ti.run_id,
            "run_pk": ti.run_pk, "ti_id": ti.id, "task_id": ti.task_id,
            "map_index": ti.map_index, "try_number": try_number, "from_state": frm,
            "to_state": to, "reason": reason, "actor": actor}


def warm_attempt_statements(session: Session, now: datetime) -> None:
    """Execute each statement of the attempt path once against no row, for a worker to
    compile them before its first attempt. The caller rolls the transaction back; on SQLite
    it defers foreign keys first (elsewhere the inserts are left out)."""
    conn = _core(session)
    conn.execute(_CLAIM, {"b_id": -1, "b_claim": "", "b_now": now, "b_hostname": "",
                          "b_pid": 0}).all()
    conn.execute(_LOCK_RUNNING, {"b_id": -1}).all()
    conn.execute(_DELETE_XCOMS, {"b_id": -1})
    conn.execute(_UPDATE_TI, {"b_id": -1, "state": "none", "end_date": now, "claim": None})
    conn.execute(_END_ATTEMPT, {"b_id": -1, "b_try": 0, "state": "none", "end_date": now,
                                "error": None})
    if conn.dialect.name != "sqlite":  # inserts need deferrable foreign keys
        return
    conn.execute(_INSERT_EVENT, _event_values(
        StartedAttempt(-1, -1, "", "", "", -1, 0, 0, now), "none", "none", now=now,
        reason="", actor="", try_number=0))
    conn.execute(_upsert_attempt(conn), {
        "ti_id": -1, "try_number": 0, "state": "none", "start_date": now, "end_date": None,
        "hostname": "", "pid": 0, "log_path": ""})
    conn.execute(_INSERT_XCOM, {"ti_id": -1, "run_pk": -1, "dag_id": "", "run_id": "",
                                "task_id": "", "map_index": -1, "key": "", "value": 0,
                                "created_at": now})


def start_attempt(
    session: Session,
    *,
    ti_id: int,
    claim: str,
    hostname: str,
    pid: int,
    log_path: str,
    now: datetime,
) -> StartedAttempt | None:
    """Claim the queued task instance for the worker holding ``claim`` and mark it running.

    Returns None (and changes nothing) when the claim is stale: the task instance was requeued,
    cleared or already started by someone else. The conditional UPDATE makes the claim atomic on
    every backend.
    """
    conn = _core(session)
    row = conn.execute(_CLAIM, {"b_id": ti_id, "b_claim": claim, "b_now": now,
                                "b_hostname": hostname, "b_pid": pid}).one_or_none()
    if row is None:
        return None
    ti = StartedAttempt(**row._mapping, start_date=now)
    conn.execute(_INSERT_EVENT, _event_values(
        ti, TaskState.QUEUED.value, TaskState.RUNNING.value, now=now,
        reason=f"attempt {ti.try_number} started on {hostname}", actor=WORKER,
        try_number=ti.try_number))
    conn.execute(_DELETE_XCOMS, {"b_id": ti_id})
    conn.execute(_upsert_attempt(conn), {
        "ti_id": ti_id, "try_number": ti.try_number, "state": TaskState.RUNNING.value,
        "start_date": now, "end_date": None, "hostname": hostname, "pid": pid,
        "log_path": log_path})
    _forget(session, ti_id)
    return ti


def finish_attempt(
    session: Session,
    *,
    ti_id: int,
    try_number: int,
    outcome: TaskState,
    task: SerializedTask,
    xcoms: Mapping[str, Any],
    error: str | None,
    now: datetime,
    actor: str = WORKER,
    jitter: float = 0.0,
    reschedule_at: datetime | None = None,
    no_retry: bool = False,
) -> TaskState | None:
    """Record how an attempt ended, with its XComs, in one transaction.

    ``outcome`` is SUCCESS, SKIPPED, FAILED or UP_FOR_RESCHEDULE; a failure becomes
    ``up_for_retry`` or ``failed`` by the task's retry policy; a reschedule (a sensor not
    satisfied yet) waits until ``reschedule_at`` without using up the try. A branching task's
    ``skipmixin_followed`` XCom skips its direct downstream tasks that were not chosen, in the
    same transaction. Returns the task instance's new state, or None when
    the attempt no longer owns it (it was cleared, or declared a zombie meanwhile).
    """
    conn = _core(session)
    # Locked, so a zombie verdict made at the same moment cannot be overwritten (PostgreSQL;
    # SQLite's write lock, taken when the transaction began, already serialises writers).
    ti = conn.execute(_LOCK_RUNNING, {"b_id": ti_id}).one_or_none()
    if ti is None or ti.state != TaskState.RUNNING.value or ti.try_number != try_number:
        return None
    values: dict[str, Any] = {"end_date": now, "claim": None}
    if outcome == TaskState.FAILED and no_retry:
        to, reason = TaskState.FAILED, f"failed without retry: {error}"
    elif outcome == TaskState.FAILED:
        end = attempt_failed(task, _try_in_cycle(ti, task), now, error=error or "", jitter=jitter)
        to, reason = end.state, end.reason
        values["next_retry_at"] = end.next_retry_at
    elif outcome == TaskState.UP_FOR_RESCHEDULE:
        to, reason = outcome, f"condition not met; poking again at {reschedule_at}"
        values["next_retry_at"] = reschedule_at or now
        values["try_number"] = try_number - 1  # the next poke is the same try
    else:
        to = outcome
        reason = "attempt succeeded" if outcome == TaskState.SUCCESS else (error or "skipped")
    check_task_transition(TaskState.RUNNING, to)
    if ti.start_date is not None and to in (
            TaskState.SUCCESS, TaskState.FAILED, TaskState.UP_FOR_RETRY):
        values["duration"] = (now - ti.start_date).total_seconds()
    conn.execute(_UPDATE_TI, {"b_id": ti_id, "state": to.value, **values})
    conn.execute(_INSERT_EVENT, _event_values(
        ti, TaskState.RUNNING.value, to.value, now=now, reason=reason, actor=actor,
        try_number=try_number))
    conn.execute(_END_ATTEMPT, {"b_id": ti_id, "b_try": try_number, "state": outcome.value,
                                "end_date": now, "error": error})
    if to in (TaskState.SUCCESS, TaskState.SKIPPED) and xcoms:
        conn.execute(_INSERT_XCOM, [
            {"ti_id": ti_id, "run_pk": ti.run_pk, "dag_id": ti.dag_id, "run_id": ti.run_id,
             "task_id": ti.task_id, "map_index": ti.map_index, "key": key, "value": value,
             "created_at": now}
            for key, value in xcoms.items()])
    _forget(session, ti_id)
    followed = xcoms.get("skipmixin_followed") if to == TaskState.SUCCESS else None
    if isinstance(followed, list):
        _skip_not_followed(session, ti, task, set(followed), now=now, actor=actor)
    return to


def _skip_not_followed(session: Session, ti: Any, task: SerializedTask,
                       followed: set[str], *, now: datetime, actor: str) -> None:
    """Skip the direct downstream tasks a branch did not choose (trigger rules carry the skip
    further down)."""
    skip = [t for t in task.downstream if t not in followed]
    if not skip:
        return
    for other in session.scalars(select(TaskInstance).where(
            TaskInstance.run_pk == ti.run_pk, TaskInstance.task_id.in_(skip),
            TaskInstance.state == TaskState.NONE.value)):
        set_task_state(session, other, TaskState.SKIPPED, now=now,
                       reason=f"branch {ti.task_id} did not follow it", actor=actor)


def _try_in_cycle(ti: Any, task: SerializedTask) -> int:
    """The try number counted from the last clear, which is what the retry policy reads."""
    return ti.try_number - max(ti.max_tries - task.retries, 0)


def heartbeat(session: Session, ti_id: int, try_number: int, now: datetime) -> bool:
    """Record that the attempt is alive. False when it no longer owns the task instance."""
    return (
        cast(CursorResult[Any], session.execute(
            update(TaskInstance)
            .where(
                TaskInstance.id == ti_id,
                TaskInstance.try_number == try_number,
                TaskInstance.state == TaskState.RUNNING.value,
            )
            .values(heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )).rowcount
        == 1
    )


def fail_zombie(
    session: Session, ti: TaskInstance, task: SerializedTask, *, now: datetime, reason: str
) -> TaskState:
    """A running task instance whose worker stopped heartbeating: end its attempt as failed
    (the lost attempt counts as a try) and retry it if it has retries left."""
    end = attempt_failed(task, _try_in_cycle(ti, task), now, error=reason)
    ti.next_retry_at = end.next_retry_at
    set_task_state(session, ti, end.state, now=now, reason=reason, actor=SCHEDULER)
    session.execute(
        update(TaskAttempt)
        .where(TaskAttempt.ti_id == ti.id, TaskAttempt.try_number == ti.try_number)
        .values(state=TaskState.FAILED.value, end_date=now, error=reason)
    )
    return end.state


def clear_task_instances(
    session: Session,
    run: DagRun,
    tis: Iterable[TaskInstance],
    dag: SerializedDag,
    *,
    now: datetime,
    actor: str,
    reason: str = "cleared",
) -> int:
    """Reset task instances so the scheduler runs them again (as a new try), and put the run
    back to ``queued`` if it had finished. Returns how many were cleared."""
    count = 0
    for ti in tis:
        if ti.state == TaskState.NONE.value:
            continue
        set_task_state(session, ti, TaskState.NONE, now=now, reason=reason, actor=actor)
        task = dag.task_dict.get(ti.task_id)
        # A cleared task instance gets its full retries again, counted from its next try.
        ti.max_tries = ti.try_number + (task.retries if task else 0)
        count += 1
    # A compensating run stays so: the saga re-runs a cleared compensation (sagas.py).
    if count and run.state not in (RunState.QUEUED.value, RunState.RUNNING.value,
                                   RunState.COMPENSATING.value):
        set_run_state(session, run, RunState.QUEUED, now=now, reason=reason, actor=actor)
    return count


def ti_by_id(session: Session, ti_id: int) -> TaskInstance | None:
    return session.scalars(select(TaskInstance).where(TaskInstance.id == ti_id)).first()


# -- durable execution: deferral to a signal, sagas ---------------------------------------------

#: How a deferral's event reason ends; ``scheduler.signals`` reads it back to decide a timeout.
ON_TIMEOUT_SKIP = "on timeout: skip"
ON_TIMEOUT_FAIL = "on timeout: fail"


def defer_attempt(
    session: Session,
    *,
    ti_id: int,
    try_number: int,
    signal_name: str,
    timeout_at: datetime | None,
    soft_fail: bool,
    now: datetime,
    actor: str = WORKER,
) -> TaskState | None:
    """Park a running attempt in ``deferred`` until the signal ``signal_name`` reaches its run
    (or ``timeout_at`` passes). The attempt stays open; no slot or process is held. Returns
    ``DEFERRED``, or None when the attempt no longer owns the task instance."""
    ti = session.get(TaskInstance, ti_id, populate_existing=True)
    if ti is None or ti.state != TaskState.RUNNING.value or ti.try_number != try_number:
        return None
    until = f" until {timeout_at.isoformat()}" if timeout_at else ""
    reason = (f"waiting for signal {signal_name!r}{until}; "
              f"{ON_TIMEOUT_SKIP if soft_fail else ON_TIMEOUT_FAIL}")
    set_task_state(session, ti, TaskState.DEFERRED, now=now, reason=reason, actor=actor)
    ti.defer_signal = signal_name
    ti.defer_timeout_at = timeout_at
    ti.defer_soft_fail = soft_fail
    ti.claim = None
    ti.heartbeat_at = None
    session.execute(
        update(TaskAttempt)
        .where(TaskAttempt.ti_id == ti_id, TaskAttempt.try_number == try_number)
        .values(state=TaskState.DEFERRED.value))
    return TaskState.DEFERRED


def resume_with_signal(
    session: Session, ti: TaskInstance, signal: Signal, *, now: datetime, actor: str
) -> None:
    """Deliver ``signal`` to the deferred ``ti``: the signal is consumed, its payload becomes
    the task's ``return_value`` XCom and the task instance ends ``success``."""
    signal.consumed_by_ti_id = ti.id
    signal.consumed_at = now
    session.execute(delete(XCom).where(XCom.ti_id == ti.id, XCom.key == "return_value"))
    if signal.payload is not None:  # like a task returning None: no XCom
        session.add(XCom(ti_id=ti.id, run_pk=ti.run_pk, dag_id=ti.dag_id, run_id=ti.run_id,
                         task_id=ti.task_id, map_index=ti.map_index, key="return_value",
                         value=signal.payload, created_at=now))
    set_task_state(session, ti, TaskState.SUCCESS, now=now,
                   reason=f"signal {signal.name!r} received from {signal.sent_by}", actor=actor)
    ti.defer_timeout_at = None
    session.execute(
        update(TaskAttempt)
        .where(TaskAttempt.ti_id == ti.id, TaskAttempt.try_number == ti.try_number)
        .values(state=TaskState.SUCCESS.value, end_date=now))


def end_deferral_on_timeout(
    session: Session, ti: TaskInstance, *, soft_fail: bool, now: datetime
) -> TaskState:
    """A deferred task instance whose signal did not come in time: ``skipped`` when
    ``soft_fail``, else ``failed`` (no retry: waiting again would not make the signal come)."""
    to = TaskState.SKIPPED if soft_fail else TaskState.FAILED
    why = f"signal {ti.defer_signal!r} did not arrive by {ti.defer_timeout_at}"
    set_task_state(session, ti, to, now=now, reason=why, actor=SCHEDULER)
    ti.defer_timeout_at = None
    session.execute(
        update(TaskAttempt)
        .where(TaskAttempt.ti_id == ti.id, TaskAttempt.try_number == ti.try_number)
        .values(state=to.value, end_date=now, error=why))
    return to


def add_compensation_instances(
    session: Session, run: DagRun, tasks: Iterable[SerializedTask]
) -> list[TaskInstance]:
    """Create the task instances of compensation ``tasks`` in ``run`` (state ``none``), skipping
    those that exist already. Returns the created ones."""
    existing = set(session.scalars(select(TaskInstance.task_id).where(
        TaskInstance.run_pk == run.id)))
    created = [_new_task_instance(run, t) for t in tasks if t.task_id not in existing]
    session.add_all(created)
    session.flush()
    return created

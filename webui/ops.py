"""What an operator does from the web UI or the REST API, in one place for both.

Each operation opens one write transaction, changes state only through the store's own
functions (``scheduler.loop.trigger_run``, ``scheduler.store.commands``,
``scheduler.store.dags.set_paused``, the signals and sagas modules), appends an
:class:`~scheduler.store.models.AuditLog` row in that same transaction, and after the commit
wakes the schedulers (``scheduler.wakeup.notify``). Errors a user can fix raise
:class:`OpError` (with an HTTP status) or :class:`scheduler.errors.NotFound`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from scheduler.config import Settings
from scheduler.core.serialized import SerializedDag
from scheduler.core.states import FINISHED_RUN_STATES, IllegalTransition, RunState, TaskState
from scheduler.errors import HeadwaterError, ParamValidationError
from scheduler.store import commands, queries
from scheduler.store.db import session_scope
from scheduler.store.models import (
    AuditLog,
    Connection,
    DagRun,
    DagVersion,
    Pool,
    TaskInstance,
    Variable,
)
from scheduler.wakeup import notify

#: Task states an operator may mark a task instance (or a run) with.
MARKABLE_TASK_STATES = (TaskState.SUCCESS.value, TaskState.FAILED.value,
                        TaskState.SKIPPED.value)
MARKABLE_RUN_STATES = (RunState.SUCCESS.value, RunState.FAILED.value)


class OpError(HeadwaterError):
    """An operation refused; ``status`` is the HTTP status that says why (400, 409)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def utcnow() -> datetime:
    return datetime.now(UTC)


def audit(session: Session, *, actor: str, action: str, now: datetime, dag_id: str | None = None,
          run_id: str | None = None, task_id: str | None = None,
          detail: Mapping[str, Any] | None = None) -> None:
    """Append one audit-log row (in the caller's transaction)."""
    session.add(AuditLog(when=now, actor=actor, action=action, dag_id=dag_id, run_id=run_id,
                         task_id=task_id, detail=dict(detail) if detail else None))


def _version_of(session: Session, version_id: int) -> SerializedDag:
    version = session.get(DagVersion, version_id)
    if version is None:
        raise OpError("the DAG version of this run is missing from the store", 409)
    return SerializedDag.from_dict(version.serialized)


def latest_params(session: Session, dag_id: str) -> dict[str, Any]:
    """The serialized params of the DAG's latest version ({} when it has none)."""
    dag = queries.get_dag(session, dag_id)
    if dag.latest_version_id is None:
        return {}
    version = session.get(DagVersion, dag.latest_version_id)
    return dict((version.serialized.get("params") or {}) if version else {})


def set_paused(engine: Any, settings: Settings, dag_id: str, paused: bool, *,
               actor: str) -> None:
    from scheduler.store.dags import set_paused as store_set_paused

    now = utcnow()
    with session_scope(engine) as session:
        queries.get_dag(session, dag_id)
        store_set_paused(session, dag_id, paused)
        audit(session, actor=actor, action="pause" if paused else "unpause", now=now,
              dag_id=dag_id)
    notify(settings.home)


def trigger(engine: Any, settings: Settings, dag_id: str, *, conf: Mapping[str, Any] | None,
            run_id: str | None, logical_date: datetime | None, actor: str) -> DagRun:
    """Create a manual run; ``conf`` is validated against the DAG's params first (and the
    run gets the resolved params as its conf, as ``headwater dags trigger`` does)."""
    from scheduler.core.dag import resolve_params
    from scheduler.loop import trigger_run

    now = utcnow()
    with session_scope(engine) as session:
        params = latest_params(session, dag_id)
        try:
            resolved = resolve_params(params, dict(conf or {}))
        except ParamValidationError as exc:
            raise OpError(str(exc), 400)
        try:
            run = trigger_run(session, dag_id=dag_id, now=now, conf=resolved, run_id=run_id,
                              logical_date=logical_date, actor=actor)
        except ValueError as exc:
            raise OpError(str(exc), 409)
        session.flush()
        audit(session, actor=actor, action="trigger", now=now, dag_id=dag_id,
              run_id=run.run_id, detail={"conf": resolved})
    notify(settings.home)
    return run


def backfill(engine: Any, settings: Settings, dag_id: str, start: datetime, end: datetime, *,
             max_active_runs: int | None, reverse: bool, rerun_failed: bool,
             actor: str) -> Any:
    """Create the backfill runs of ``[start, end]`` without waiting for them (the
    ``headwater dags backfill --no-wait`` path): the scheduler service runs them."""
    from scheduler.backfill import BackfillError, run_backfill

    try:
        result = run_backfill(settings, engine, dag_id, start, end,
                              max_active_runs=max_active_runs, rerun_failed=rerun_failed,
                              reverse=reverse, wait=False)
    except BackfillError as exc:
        raise OpError(str(exc), 409)
    now = utcnow()
    with session_scope(engine) as session:
        audit(session, actor=actor, action="backfill", now=now, dag_id=dag_id,
              detail={"start": start.isoformat(), "end": end.isoformat(),
                      "max_active_runs": max_active_runs, "reverse": reverse,
                      "rerun_failed": rerun_failed, "created": result.created,
                      "reused": result.reused, "rerun": result.rerun})
    notify(settings.home)
    return result


def related_tasks(sdag: SerializedDag, task_ids: Iterable[str], *, upstream: bool,
                  downstream: bool) -> set[str]:
    """``task_ids`` plus, as asked, everything upstream and/or downstream of them."""
    chosen = set(task_ids)
    for direction, wanted in (("upstream", upstream), ("downstream", downstream)):
        if not wanted:
            continue
        todo = list(task_ids)
        while todo:
            task = sdag.task_dict.get(todo.pop())
            for other in getattr(task, direction, ()) if task else ():
                if other not in chosen:
                    chosen.add(other)
                    todo.append(other)
    return chosen


def clear(engine: Any, settings: Settings, dag_id: str, run_id: str, *,
          task_ids: list[str] | None, map_index: int | None = None, upstream: bool = False,
          downstream: bool = False, only_failed: bool = False, dry_run: bool = False,
          actor: str) -> list[TaskInstance]:
    """Clear task instances of one run so the scheduler runs them again.

    ``task_ids`` None means every task of the run. Returns the task instances chosen (cleared,
    unless ``dry_run``); those with no state yet are left out, having nothing to clear.
    ``only_failed`` keeps failed and upstream_failed ones only.
    """
    now = utcnow()
    with session_scope(engine) as session:
        run = queries.get_run(session, dag_id, run_id)
        sdag = _version_of(session, run.version_id)
        tis = queries.task_instances(session, run)
        if task_ids is not None:
            unknown = sorted(set(task_ids) - {ti.task_id for ti in tis})
            if unknown:
                raise OpError(f"run {run_id!r} has no task {', '.join(map(repr, unknown))}", 400)
            wanted = related_tasks(sdag, task_ids, upstream=upstream, downstream=downstream)
            tis = [ti for ti in tis if ti.task_id in wanted]
            if map_index is not None and len(task_ids) == 1 and not (upstream or downstream):
                tis = [ti for ti in tis if ti.map_index == map_index]
        if only_failed:
            tis = [ti for ti in tis if ti.state in (TaskState.FAILED.value,
                                                     TaskState.UPSTREAM_FAILED.value)]
        tis = [ti for ti in tis if ti.state != TaskState.NONE.value]  # nothing to clear there
        if dry_run:
            session.expunge_all()
            return tis
        commands.clear_task_instances(session, run, tis, sdag, now=now, actor=actor,
                                      reason=f"cleared by {actor}")
        audit(session, actor=actor, action="clear", now=now, dag_id=dag_id, run_id=run_id,
              detail={"task_ids": sorted({ti.task_id for ti in tis}), "upstream": upstream,
                      "downstream": downstream, "only_failed": only_failed})
    notify(settings.home)
    return tis


def mark_task(engine: Any, settings: Settings, dag_id: str, run_id: str, task_id: str, *,
              map_index: int, state: str, actor: str) -> TaskInstance:
    """Set one task instance's state (success, failed or skipped). A finished run goes back to
    ``queued`` so that the scheduler decides its outcome again from its tasks."""
    if state not in MARKABLE_TASK_STATES:
        raise OpError(f"a task can be marked {', '.join(MARKABLE_TASK_STATES)}; not {state!r}")
    now = utcnow()
    with session_scope(engine) as session:
        run = queries.get_run(session, dag_id, run_id)
        ti = queries.get_task_instance(session, run, task_id, map_index)
        try:
            commands.set_task_state(session, ti, TaskState(state), now=now,
                                    reason=f"marked {state} by {actor}", actor=actor)
            if RunState(run.state) in FINISHED_RUN_STATES:
                commands.set_run_state(session, run, RunState.QUEUED, now=now,
                                       reason=f"task {task_id} marked {state}; re-deciding",
                                       actor=actor)
        except IllegalTransition as exc:
            raise OpError(f"cannot mark it {state}: {exc}", 409)
        audit(session, actor=actor, action=f"mark_task_{state}", now=now, dag_id=dag_id,
              run_id=run_id, task_id=task_id, detail={"map_index": map_index})
    notify(settings.home)
    return ti


def mark_run(engine: Any, settings: Settings, dag_id: str, run_id: str, *, state: str,
             actor: str) -> DagRun:
    """Set a run's state to success or failed."""
    if state not in MARKABLE_RUN_STATES:
        raise OpError(f"a run can be marked {', '.join(MARKABLE_RUN_STATES)}; not {state!r}")
    now = utcnow()
    with session_scope(engine) as session:
        run = queries.get_run(session, dag_id, run_id)
        try:
            commands.set_run_state(session, run, RunState(state), now=now,
                                   reason=f"marked {state} by {actor}", actor=actor)
        except IllegalTransition as exc:
            raise OpError(f"cannot mark run {run_id!r} {state}: {exc}", 409)
        audit(session, actor=actor, action=f"mark_run_{state}", now=now, dag_id=dag_id,
              run_id=run_id)
    notify(settings.home)
    return run


def send_signal(engine: Any, settings: Settings, dag_id: str, run_id: str, name: str, *,
                payload: Any, actor: str) -> Any:
    """Send a named signal to a run (``scheduler.signals.send_signal``)."""
    from scheduler import signals

    now = utcnow()
    with session_scope(engine) as session:
        queries.get_run(session, dag_id, run_id)
        try:
            sig = signals.send_signal(session, dag_id=dag_id, run_id=run_id, name=name,
                                      payload=payload, actor=actor, now=now)
        except (ValueError, signals.RunFinished) as exc:
            raise OpError(str(exc), 409)
        session.flush()
        audit(session, actor=actor, action="signal", now=now, dag_id=dag_id, run_id=run_id,
              detail={"name": name, "payload": payload})
    notify(settings.home)
    return sig


def compensate(engine: Any, settings: Settings, dag_id: str, run_id: str, *,
               actor: str) -> DagRun:
    """Ask for the saga compensation of a run (``scheduler.sagas.request_compensation``)."""
    from scheduler import sagas

    now = utcnow()
    with session_scope(engine) as session:
        run = queries.get_run(session, dag_id, run_id)
        try:
            sagas.request_compensation(session, run, actor=actor, now=now)
        except (IllegalTransition, ValueError, sagas.NothingToCompensate) as exc:
            raise OpError(str(exc), 409)
        audit(session, actor=actor, action="compensate", now=now, dag_id=dag_id, run_id=run_id)
    notify(settings.home)
    return run


# Variables, pools, connections ---------------------------------------------------------------

def put_variable(engine: Any, key: str, value: str, description: str | None, *,
                 actor: str) -> None:
    now = utcnow()
    with session_scope(engine) as session:
        row = session.get(Variable, key)
        if row is None:
            session.add(Variable(key=key, val=value, description=description))
        else:
            row.val, row.description = value, description
        audit(session, actor=actor, action="variable_set", now=now, detail={"key": key})


def delete_variable(engine: Any, key: str, *, actor: str) -> None:
    now = utcnow()
    with session_scope(engine) as session:
        row = session.get(Variable, key)
        if row is None:
            from scheduler.errors import NotFound
            raise NotFound(f"no variable {key!r}")
        session.delete(row)
        audit(session, actor=actor, action="variable_delete", now=now, detail={"key": key})


def put_pool(engine: Any, name: str, slots: int, description: str | None, *,
             actor: str) -> None:
    now = utcnow()
    with session_scope(engine) as session:
        row = session.get(Pool, name)
        if row is None:
            session.add(Pool(name=name, slots=slots, description=description))
        else:
            row.slots, row.description = slots, description
        audit(session, actor=actor, action="pool_set", now=now,
              detail={"name": name, "slots": slots})


def delete_pool(engine: Any, name: str, *, actor: str) -> None:
    from scheduler.errors import NotFound

    now = utcnow()
    with session_scope(engine) as session:
        row = session.get(Pool, name)
        if row is None:
            raise NotFound(f"no pool {name!r}")
        if name == "default_pool":
            raise OpError("the default pool cannot be deleted; change its slots instead", 409)
        session.delete(row)
        audit(session, actor=actor, action="pool_delete", now=now, detail={"name": name})


def put_connection(engine: Any, conn_id: str, fields: Mapping[str, Any], *, actor: str) -> None:
    """Create or replace a connection. A ``password`` of None keeps the stored one."""
    now = utcnow()
    with session_scope(engine) as session:
        row = session.get(Connection, conn_id)
        if row is None:
            row = Connection(conn_id=conn_id, conn_type=fields.get("conn_type") or "generic")
            session.add(row)
        for name in ("conn_type", "host", "schema", "login", "port", "extra"):
            if name in fields:
                setattr(row, name, fields[name])
        if fields.get("password") is not None:
            row.password = fields["password"]
        audit(session, actor=actor, action="connection_set", now=now,
              detail={"conn_id": conn_id})


def delete_connection(engine: Any, conn_id: str, *, actor: str) -> None:
    from scheduler.errors import NotFound

    now = utcnow()
    with session_scope(engine) as session:
        row = session.get(Connection, conn_id)
        if row is None:
            raise NotFound(f"no connection {conn_id!r}")
        session.delete(row)
        audit(session, actor=actor, action="connection_delete", now=now,
              detail={"conn_id": conn_id})


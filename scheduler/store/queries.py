"""Reads of the store shared by the CLI, the web UI and the API."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.errors import NotFound
from scheduler.store.models import (
    AuditLog,
    Connection,
    DagModel,
    DagRun,
    DagVersion,
    Event,
    ImportErrorRecord,
    Pool,
    TaskAttempt,
    TaskInstance,
    Variable,
    XCom,
)


def get_dag(session: Session, dag_id: str) -> DagModel:
    dag = session.get(DagModel, dag_id)
    if dag is None:
        raise NotFound(f"no DAG {dag_id!r} in the store; `headwater dags list` shows the DAGs "
                       "and the import errors of files that failed")
    return dag


def list_dags(session: Session, *, include_inactive: bool = False) -> list[DagModel]:
    stmt = select(DagModel).order_by(DagModel.dag_id)
    if not include_inactive:
        stmt = stmt.where(DagModel.is_active)
    return list(session.scalars(stmt))


def import_errors(session: Session) -> list[ImportErrorRecord]:
    return list(session.scalars(select(ImportErrorRecord).order_by(ImportErrorRecord.fileloc)))


def recent_run_states(session: Session, dag_ids: list[str], per_dag: int = 10
                      ) -> dict[str, list[DagRun]]:
    """The last ``per_dag`` runs of each DAG, newest first, in one query."""
    if not dag_ids:
        return {}
    ranked = (
        select(DagRun.id, func.row_number().over(
            partition_by=DagRun.dag_id,
            order_by=(DagRun.logical_date.desc(), DagRun.id.desc())).label("rn"))
        .where(DagRun.dag_id.in_(dag_ids)).subquery()
    )
    runs = session.scalars(
        select(DagRun).join(ranked, ranked.c.id == DagRun.id).where(ranked.c.rn <= per_dag)
        .order_by(DagRun.dag_id, DagRun.logical_date.desc(), DagRun.id.desc())
    )
    out: dict[str, list[DagRun]] = defaultdict(list)
    for run in runs:
        out[run.dag_id].append(run)
    return out


def list_runs(session: Session, dag_id: str, *, limit: int | None = None, offset: int = 0,
              state: str | None = None) -> list[DagRun]:
    stmt = select(DagRun).where(DagRun.dag_id == dag_id)
    if state:
        stmt = stmt.where(DagRun.state == state)
    stmt = stmt.order_by(DagRun.logical_date.desc(), DagRun.id.desc()).offset(offset)
    if limit:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def version_labels(session: Session, version_ids: set[int]) -> dict[int, str]:
    if not version_ids:
        return {}
    return dict(session.execute(
        select(DagVersion.id, DagVersion.version).where(DagVersion.id.in_(version_ids))).all())


def get_run(session: Session, dag_id: str, run_id: str) -> DagRun:
    run = session.scalars(
        select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).first()
    if run is None:
        raise NotFound(f"DAG {dag_id!r} has no run {run_id!r}; "
                       f"`headwater dags list-runs {dag_id}` lists its runs")
    return run


def task_instances(session: Session, run: DagRun) -> list[TaskInstance]:
    return list(session.scalars(
        select(TaskInstance).where(TaskInstance.run_pk == run.id)
        .order_by(TaskInstance.id, TaskInstance.map_index)))


def get_task_instance(session: Session, run: DagRun, task_id: str, map_index: int = -1
                      ) -> TaskInstance:
    ti = session.scalars(select(TaskInstance).where(
        TaskInstance.run_pk == run.id, TaskInstance.task_id == task_id,
        TaskInstance.map_index == map_index)).first()
    if ti is None:
        raise NotFound(f"run {run.run_id!r} of DAG {run.dag_id!r} has no task {task_id!r}"
                       + (f" at map index {map_index}" if map_index >= 0 else ""))
    return ti


def attempts(session: Session, ti: TaskInstance) -> list[TaskAttempt]:
    return list(session.scalars(
        select(TaskAttempt).where(TaskAttempt.ti_id == ti.id).order_by(TaskAttempt.try_number)))


def get_xcom(session: Session, ti: TaskInstance, key: str = "return_value") -> Any:
    row = session.scalars(select(XCom).where(XCom.ti_id == ti.id, XCom.key == key)).first()
    if row is None:
        raise NotFound(f"task {ti.task_id!r} of run {ti.run_id!r} has no XCom {key!r}")
    return row.value


def run_events(session: Session, run: DagRun) -> list[Event]:
    return list(session.scalars(
        select(Event).where(Event.run_pk == run.id).order_by(Event.id)))


# Reads for the web UI and the REST API -------------------------------------------------------

#: Orderings a runs list accepts: name -> the columns it sorts by.
RUN_ORDERINGS: dict[str, tuple[Any, ...]] = {
    "-logical_date": (DagRun.logical_date.desc(), DagRun.id.desc()),
    "logical_date": (DagRun.logical_date.asc(), DagRun.id.asc()),
    "-start_date": (DagRun.start_date.desc(), DagRun.id.desc()),
    "start_date": (DagRun.start_date.asc(), DagRun.id.asc()),
    "-end_date": (DagRun.end_date.desc(), DagRun.id.desc()),
    "end_date": (DagRun.end_date.asc(), DagRun.id.asc()),
    "run_id": (DagRun.run_id.asc(),),
    "-run_id": (DagRun.run_id.desc(),),
}


def runs_page(session: Session, dag_id: str, *, limit: int, offset: int = 0,
              states: list[str] | None = None, run_types: list[str] | None = None,
              since: datetime | None = None, until: datetime | None = None,
              order_by: str = "-logical_date") -> tuple[list[DagRun], int]:
    """One page of a DAG's runs and the number of runs matching the filters (two queries).
    ``since``/``until`` bound the logical date, both inclusive. ``order_by`` is a key of
    :data:`RUN_ORDERINGS`."""
    clauses: list[Any] = [DagRun.dag_id == dag_id]
    if states:
        clauses.append(DagRun.state.in_(states))
    if run_types:
        clauses.append(DagRun.run_type.in_(run_types))
    if since is not None:
        clauses.append(DagRun.logical_date >= since)
    if until is not None:
        clauses.append(DagRun.logical_date <= until)
    total = session.scalar(select(func.count()).select_from(DagRun).where(*clauses)) or 0
    runs = list(session.scalars(select(DagRun).where(*clauses)
                                .order_by(*RUN_ORDERINGS[order_by]).limit(limit).offset(offset)))
    return runs, total


def events_page(session: Session, *, dag_id: str | None = None, run_pk: int | None = None,
                ti_id: int | None = None, limit: int = 100, offset: int = 0,
                newest_first: bool = True) -> tuple[list[Event], int]:
    """Events matching the filters, one page of them and their count (two queries)."""
    clauses: list[Any] = []
    if dag_id is not None:
        clauses.append(Event.dag_id == dag_id)
    if run_pk is not None:
        clauses.append(Event.run_pk == run_pk)
    if ti_id is not None:
        clauses.append(Event.ti_id == ti_id)
    total = session.scalar(select(func.count()).select_from(Event).where(*clauses)) or 0
    order = Event.id.desc() if newest_first else Event.id.asc()
    rows = list(session.scalars(select(Event).where(*clauses).order_by(order)
                                .limit(limit).offset(offset)))
    return rows, total


def audit_page(session: Session, *, limit: int = 100, offset: int = 0,
               dag_id: str | None = None) -> tuple[list[AuditLog], int]:
    """Audit-log rows, newest first, one page of them and their count."""
    clauses: list[Any] = [AuditLog.dag_id == dag_id] if dag_id is not None else []
    total = session.scalar(select(func.count()).select_from(AuditLog).where(*clauses)) or 0
    rows = list(session.scalars(select(AuditLog).where(*clauses)
                                .order_by(AuditLog.id.desc()).limit(limit).offset(offset)))
    return rows, total


def dag_versions(session: Session, dag_id: str) -> list[tuple[int, str, datetime, int]]:
    """The versions of a DAG, newest first: (id, version, created_at, number of runs pinned to
    it), in one query, without loading sources."""
    counts = (select(DagRun.version_id, func.count().label("n")).where(DagRun.dag_id == dag_id)
              .group_by(DagRun.version_id).subquery())
    rows = session.execute(
        select(DagVersion.id, DagVersion.version, DagVersion.created_at,
               func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.version_id == DagVersion.id)
        .where(DagVersion.dag_id == dag_id).order_by(DagVersion.id.desc())).all()
    return [(r[0], r[1], r[2], int(r[3])) for r in rows]


def list_variables(session: Session) -> list[Variable]:
    return list(session.scalars(select(Variable).order_by(Variable.key)))


def list_pools(session: Session) -> list[Pool]:
    return list(session.scalars(select(Pool).order_by(Pool.name)))


def pool_usage(session: Session) -> dict[str, dict[str, int]]:
    """Slots in use per pool: pool -> {"running": n, "queued": n} (one query)."""
    rows = session.execute(
        select(TaskInstance.pool, TaskInstance.state, func.sum(TaskInstance.pool_slots))
        .where(TaskInstance.state.in_(["running", "queued"]))
        .group_by(TaskInstance.pool, TaskInstance.state)).all()
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"running": 0, "queued": 0})
    for pool, state, slots in rows:
        out[pool][state] = int(slots or 0)
    return dict(out)


def list_connections(session: Session) -> list[Connection]:
    return list(session.scalars(select(Connection).order_by(Connection.conn_id)))


def deferred_task_instances(session: Session) -> list[TaskInstance]:
    """Task instances parked waiting for a signal (``deferred``), oldest run first."""
    return list(session.scalars(
        select(TaskInstance).where(TaskInstance.state == "deferred",
                                   TaskInstance.defer_signal.is_not(None))
        .order_by(TaskInstance.run_pk, TaskInstance.task_id, TaskInstance.map_index)))

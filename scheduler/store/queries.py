"""Reads of the store shared by the CLI, the web UI and the API."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.errors import NotFound
from scheduler.store.models import (
    DagModel,
    DagRun,
    DagVersion,
    Event,
    ImportErrorRecord,
    TaskAttempt,
    TaskInstance,
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

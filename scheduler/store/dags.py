"""Store functions for DAGs: their versions, their files, import errors, pause, next run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.core.serialized import SerializedDag
from scheduler.core.timetable import DataInterval, make_timetable
from scheduler.store.models import DagFile, DagModel, DagRun, DagVersion, ImportErrorRecord


def version_hash(serialized: Mapping[str, Any], source: str) -> str:
    """The short content hash that names a DAG version (structure and file source)."""
    h = hashlib.sha256(json.dumps(serialized, sort_keys=True, default=str).encode())
    h.update(b"\0")
    h.update(source.encode())
    return h.hexdigest()[:12]


def record_dag(
    session: Session,
    serialized: Mapping[str, Any],
    source: str,
    *,
    now: datetime,
    paused_by_default: bool,
) -> DagVersion:
    """Store one parsed DAG: create its row on first sight, its version if new, and make that
    version the latest. Returns the version row."""
    sdag = SerializedDag.from_dict(serialized)
    version = version_hash(serialized, source)
    row = session.scalars(
        select(DagVersion).where(DagVersion.dag_id == sdag.dag_id, DagVersion.version == version)
    ).first()
    if row is None:
        row = DagVersion(
            dag_id=sdag.dag_id,
            version=version,
            serialized=dict(serialized),
            source=source,
            fileloc=sdag.fileloc,
            created_at=now,
        )
        try:
            # Two schedulers may store the same new version at once (PostgreSQL): the
            # second one takes the row the first made.
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            row = session.scalars(select(DagVersion).where(
                DagVersion.dag_id == sdag.dag_id, DagVersion.version == version)).one()
    dag = session.get(DagModel, sdag.dag_id)
    if dag is None:
        paused = sdag.is_paused_upon_creation
        dag = DagModel(
            dag_id=sdag.dag_id,
            is_paused=paused_by_default if paused is None else paused,
            created_at=now,
        )
        session.add(dag)
    schedule_changed = dag.latest_version_id != row.id
    dag.fileloc = sdag.fileloc
    dag.is_active = True
    dag.latest_version_id = row.id
    dag.schedule = sdag.schedule_summary
    dag.timezone = sdag.timezone
    dag.description = sdag.description
    dag.tags = list(sdag.tags)
    dag.max_active_runs = sdag.max_active_runs
    dag.max_active_tasks = sdag.max_active_tasks
    dag.last_parsed_at = now
    if schedule_changed:
        session.flush()
        refresh_next_run(session, dag, sdag, now=now)
    return row


def refresh_next_run(
    session: Session, dag: DagModel, sdag: SerializedDag, *, now: datetime
) -> None:
    """Recompute the run the schedule owes next, from the last scheduled run in the store."""
    timetable = make_timetable(sdag.schedule, sdag.timezone)
    last = session.execute(
        select(DagRun.data_interval_start, DagRun.data_interval_end)
        .where(DagRun.dag_id == dag.dag_id, DagRun.run_type == "scheduled")
        .order_by(DagRun.logical_date.desc())
        .limit(1)
    ).first()
    last_interval = DataInterval(last[0], last[1]) if last and last[0] and last[1] else None
    info = timetable.next_run(
        last_interval,
        start_date=sdag.start_date,
        end_date=sdag.end_date,
        catchup=sdag.catchup,
        now=now,
    )
    if info is None:
        dag.next_logical_date = dag.next_data_interval_start = None
        dag.next_data_interval_end = dag.next_run_after = None
    else:
        dag.next_logical_date = info.logical_date
        dag.next_data_interval_start = info.data_interval.start
        dag.next_data_interval_end = info.data_interval.end
        dag.next_run_after = info.run_after


def record_file(
    session: Session,
    *,
    fileloc: str,
    content_hash: str,
    mtime: float,
    size: int,
    dag_ids: Sequence[str],
    now: datetime,
    duration: float,
) -> None:
    row = session.get(DagFile, fileloc)
    if row is None:
        row = DagFile(fileloc=fileloc)
        session.add(row)
    previous = set(row.dag_ids or [])
    row.content_hash, row.mtime, row.size = content_hash, mtime, size
    row.dag_ids, row.last_parsed_at, row.parse_duration = list(dag_ids), now, duration
    gone = previous - set(dag_ids)
    if gone:
        deactivate_dags(session, gone)


def deactivate_dags(session: Session, dag_ids: Sequence[str] | set[str]) -> None:
    """DAGs whose file no longer declares them: kept with their history, but inactive."""
    session.execute(
        update(DagModel)
        .where(DagModel.dag_id.in_(list(dag_ids)))
        .values(is_active=False, next_run_after=None, next_logical_date=None)
    )


def forget_files(session: Session, filelocs: Sequence[str]) -> None:
    """Files that disappeared: their DAGs become inactive, their import errors go."""
    for fileloc in filelocs:
        row = session.get(DagFile, fileloc)
        if row is not None:
            deactivate_dags(session, row.dag_ids or [])
            session.delete(row)
    session.execute(delete(ImportErrorRecord).where(ImportErrorRecord.fileloc.in_(filelocs)))


def set_import_error(
    session: Session,
    *,
    fileloc: str,
    message: str,
    lineno: int | None,
    traceback: str,
    now: datetime,
) -> None:
    row = session.scalars(
        select(ImportErrorRecord).where(ImportErrorRecord.fileloc == fileloc)).first()
    if row is None:
        row = ImportErrorRecord(fileloc=fileloc)
        session.add(row)
    row.message, row.lineno, row.traceback, row.timestamp = message, lineno, traceback, now


def clear_import_error(session: Session, fileloc: str) -> None:
    session.execute(delete(ImportErrorRecord).where(ImportErrorRecord.fileloc == fileloc))


def set_paused(session: Session, dag_id: str, paused: bool) -> DagModel | None:
    dag = session.get(DagModel, dag_id)
    if dag is not None:
        dag.is_paused = paused
    return dag


def known_files(session: Session) -> dict[str, DagFile]:
    return {row.fileloc: row for row in session.scalars(select(DagFile))}


def dag_owner_files(session: Session) -> dict[str, str]:
    """dag_id -> the file that currently declares it (active DAGs only)."""
    return dict(
        session.execute(select(DagModel.dag_id, DagModel.fileloc).where(DagModel.is_active)).all()
    )


def count_versions(session: Session, dag_id: str) -> int:
    return session.scalar(select(func.count()).where(DagVersion.dag_id == dag_id)) or 0

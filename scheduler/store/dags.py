"""Store functions for DAGs: their versions, their files, import errors, pause, next run."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.orm import Session

from scheduler.core.serialized import SerializedDag
from scheduler.core.timetable import DataInterval, RunInfo, Timetable, make_timetable
from scheduler.store.models import DagFile, DagModel, DagRun, DagVersion, ImportErrorRecord


def version_hash(serialized: Mapping[str, Any], source: str) -> str:
    """The short content hash that names a DAG version (structure and file source)."""
    h = hashlib.sha256(json.dumps(serialized, sort_keys=True, default=str).encode())
    h.update(b"\0")
    h.update(source.encode())
    return h.hexdigest()[:12]


# Rows per ``IN (...)`` list: well under the bound-parameter limits of SQLite and PostgreSQL.
_IN_CHUNK = 500


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i:i + _IN_CHUNK]


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
    [version_id] = record_dags(
        session, [(serialized, source)], now=now, paused_by_default=paused_by_default)
    row = session.get(DagVersion, version_id)
    assert row is not None
    return row


def record_dags(
    session: Session,
    dags: Sequence[tuple[Mapping[str, Any], str]],
    *,
    now: datetime,
    paused_by_default: bool,
) -> list[int]:
    """Store parsed DAGs, each a ``(serialized, source)`` pair, as :func:`record_dag` does for
    one: a DAG row on first sight, a version if new, that version as the latest, and the next
    run recomputed where the latest version changed. The statements are per batch, not per DAG
    (a cold parse stores hundreds). Returns the version ids, in ``dags`` order."""
    if not dags:
        return []
    parsed = [(SerializedDag.from_dict(s), s, source, version_hash(s, source))
              for s, source in dags]
    version_ids = _store_versions(session, parsed, now=now)
    dag_ids = list(dict.fromkeys(sdag.dag_id for sdag, *_ in parsed))
    models: dict[str, DagModel] = {}
    for chunk in _chunks(dag_ids):
        models.update((d.dag_id, d) for d in session.scalars(
            select(DagModel).where(DagModel.dag_id.in_(chunk))))
    changed: list[tuple[DagModel, SerializedDag]] = []
    for sdag, _, _, version in parsed:
        dag = models.get(sdag.dag_id)
        if dag is None:
            paused = sdag.is_paused_upon_creation
            dag = models[sdag.dag_id] = DagModel(
                dag_id=sdag.dag_id,
                is_paused=paused_by_default if paused is None else paused,
                created_at=now,
            )
            session.add(dag)
        version_id = version_ids[(sdag.dag_id, version)]
        if dag.latest_version_id != version_id:
            changed.append((dag, sdag))
        dag.fileloc = sdag.fileloc
        dag.is_active = True
        dag.latest_version_id = version_id
        dag.schedule = sdag.schedule_summary
        dag.timezone = sdag.timezone
        dag.description = sdag.description
        dag.tags = list(sdag.tags)
        dag.max_active_runs = sdag.max_active_runs
        dag.max_active_tasks = sdag.max_active_tasks
        dag.last_parsed_at = now
    if changed:
        last = _last_scheduled_intervals(session, [dag.dag_id for dag, _ in changed])
        next_run = _NextRuns(now)
        for dag, sdag in changed:
            _set_next_run(dag, next_run(sdag, last.get(dag.dag_id)))
    return [version_ids[(sdag.dag_id, version)] for sdag, _, _, version in parsed]


def _store_versions(
    session: Session,
    parsed: Sequence[tuple[SerializedDag, Mapping[str, Any], str, str]],
    *,
    now: datetime,
) -> dict[tuple[str, str], int]:
    """Insert the versions not stored yet; the id of every ``(dag_id, version)`` in ``parsed``."""
    wanted = {(sdag.dag_id, version) for sdag, _, _, version in parsed}
    ids = _version_ids(session, wanted)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for sdag, serialized, source, version in parsed:
        if (sdag.dag_id, version) not in ids:
            rows[(sdag.dag_id, version)] = {
                "dag_id": sdag.dag_id, "version": version, "serialized": dict(serialized),
                "source": source, "fileloc": sdag.fileloc, "created_at": now,
            }
    if rows:
        session.execute(_insert_skipping_existing_versions(session), list(rows.values()))
        ids.update(_version_ids(session, set(rows)))
    return ids


def _version_ids(session: Session, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    ids: dict[tuple[str, str], int] = {}
    for chunk in _chunks(sorted({dag_id for dag_id, _ in wanted})):
        for dag_id, version, version_id in session.execute(
            select(DagVersion.dag_id, DagVersion.version, DagVersion.id)
            .where(DagVersion.dag_id.in_(chunk))
        ):
            if (dag_id, version) in wanted:
                ids[(dag_id, version)] = version_id
    return ids


def _insert_skipping_existing_versions(session: Session) -> Any:
    """``INSERT`` into dag_version that skips a version already there: two schedulers may store
    the same new version at once (PostgreSQL), and the second one takes the row the first
    made."""
    dialect = session.get_bind().dialect.name
    table = cast(Table, DagVersion.__table__)
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=["dag_id", "version"])
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=["dag_id", "version"])
    return insert(table)


def _last_scheduled_intervals(
    session: Session, dag_ids: Sequence[str]
) -> dict[str, DataInterval]:
    """The data interval of each DAG's latest scheduled run (by logical date), if it has one."""
    latest = (
        select(DagRun.dag_id, func.max(DagRun.logical_date).label("logical_date"))
        .where(DagRun.run_type == "scheduled")
        .group_by(DagRun.dag_id)
    )
    out: dict[str, DataInterval] = {}
    for chunk in _chunks(list(dict.fromkeys(dag_ids))):
        newest = latest.where(DagRun.dag_id.in_(chunk)).subquery()
        for dag_id, start, end in session.execute(
            select(DagRun.dag_id, DagRun.data_interval_start, DagRun.data_interval_end)
            .join(newest, (DagRun.dag_id == newest.c.dag_id)
                  & (DagRun.logical_date == newest.c.logical_date))
            .where(DagRun.run_type == "scheduled")
        ):
            if start and end:
                out[dag_id] = DataInterval(start, end)
    return out


class _NextRuns:
    """The run a schedule owes next, at one ``now``, remembered by its inputs: the files of a
    folder often share a schedule, a start date and no history yet, and each computation walks
    croniter several times."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._timetables: dict[str, Timetable] = {}
        self._infos: dict[str, RunInfo | None] = {}

    def __call__(self, sdag: SerializedDag, last: DataInterval | None) -> RunInfo | None:
        schedule = json.dumps(sdag.schedule, sort_keys=True, default=str)
        key = repr((schedule, sdag.timezone, sdag.start_date, sdag.end_date, sdag.catchup, last))
        if key not in self._infos:
            tt_key = repr((schedule, sdag.timezone))
            timetable = self._timetables.get(tt_key)
            if timetable is None:
                timetable = self._timetables[tt_key] = make_timetable(
                    sdag.schedule, sdag.timezone)
            self._infos[key] = timetable.next_run(
                last, start_date=sdag.start_date, end_date=sdag.end_date,
                catchup=sdag.catchup, now=self.now)
        return self._infos[key]


def _set_next_run(dag: DagModel, info: RunInfo | None) -> None:
    if info is None:
        dag.next_logical_date = dag.next_data_interval_start = None
        dag.next_data_interval_end = dag.next_run_after = None
    else:
        dag.next_logical_date = info.logical_date
        dag.next_data_interval_start = info.data_interval.start
        dag.next_data_interval_end = info.data_interval.end
        dag.next_run_after = info.run_after


def refresh_next_run(
    session: Session, dag: DagModel, sdag: SerializedDag, *, now: datetime
) -> None:
    """Recompute the run the schedule owes next, from the last scheduled run in the store."""
    last = _last_scheduled_intervals(session, [dag.dag_id]).get(dag.dag_id)
    _set_next_run(dag, _NextRuns(now)(sdag, last))


@dataclass(frozen=True)
class ParsedFile:
    """What the parser saw of one file, to skip it next time if it has not changed."""

    fileloc: str
    content_hash: str
    mtime: float
    size: int
    dag_ids: Sequence[str]
    duration: float


def file_dag_ids(session: Session, filelocs: Sequence[str]) -> dict[str, list[str]]:
    """The DAG ids each of these files declared when last parsed (files never parsed: absent)."""
    out: dict[str, list[str]] = {}
    for chunk in _chunks(list(filelocs)):
        out.update((f, list(ids or [])) for f, ids in session.execute(
            select(DagFile.fileloc, DagFile.dag_ids).where(DagFile.fileloc.in_(chunk))))
    return out


def record_files(session: Session, files: Sequence[ParsedFile], *, now: datetime) -> None:
    """Write what the parser saw of these files. DAGs a file stopped declaring are the caller's
    to deactivate (:func:`deactivate_dags`): only it knows whether another file took them."""
    rows: dict[str, DagFile] = {}
    for chunk in _chunks([f.fileloc for f in files]):
        rows.update((r.fileloc, r) for r in session.scalars(
            select(DagFile).where(DagFile.fileloc.in_(chunk))))
    for f in files:
        row = rows.get(f.fileloc)
        if row is None:
            row = rows[f.fileloc] = DagFile(fileloc=f.fileloc)
            session.add(row)
        row.content_hash, row.mtime, row.size = f.content_hash, f.mtime, f.size
        row.dag_ids, row.last_parsed_at, row.parse_duration = list(f.dag_ids), now, f.duration


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


def files_with_error(session: Session, containing: str) -> list[str]:
    """Files whose import error message contains ``containing``."""
    return list(session.scalars(select(ImportErrorRecord.fileloc).where(
        ImportErrorRecord.message.contains(containing, autoescape=True))))


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


def clear_import_errors(session: Session, filelocs: Sequence[str]) -> None:
    """Files that imported cleanly: their import errors go."""
    for chunk in _chunks(list(filelocs)):
        session.execute(delete(ImportErrorRecord).where(ImportErrorRecord.fileloc.in_(chunk)))


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

"""Parse the DAGs folder into the store: new versions for changed files, import errors for
broken ones, inactive DAGs for files that disappeared. Unchanged files cost a ``stat``."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from scheduler.config import Settings
from scheduler.parsing.discover import list_dag_files
from scheduler.parsing.importer import import_files
from scheduler.store import dags as dag_store
from scheduler.store.db import session_scope


@dataclass
class ParseReport:
    files: int = 0
    parsed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    dag_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.parsed or self.removed)


def _utcnow() -> datetime:
    return datetime.now(UTC)


#: The import error of a file that declares a DAG id another file holds.
DUPLICATE_DAG_ID = "is already declared in"


def parse_dags_folder(
    engine: Engine,
    settings: Settings,
    *,
    force: bool = False,
    clock: Callable[[], datetime] = _utcnow,
) -> ParseReport:
    """Bring the store in line with the DAGs folder. ``force`` re-imports unchanged files too."""
    started = time.monotonic()
    report = ParseReport()
    files = [str(p) for p in list_dag_files(Path(settings.dags_folder))]
    report.files = len(files)
    with session_scope(engine) as session:
        known = dag_store.known_files(session)
        to_parse: list[tuple[str, str, float, int]] = []
        for fileloc in files:
            try:
                st = os.stat(fileloc)
            except OSError:
                continue
            row = known.get(fileloc)
            unchanged = row is not None and (row.mtime, row.size) == (st.st_mtime, st.st_size)
            if not force and unchanged:
                continue
            digest = hashlib.sha256(Path(fileloc).read_bytes()).hexdigest()
            if not force and row is not None and row.content_hash == digest:
                row.mtime = st.st_mtime  # touched, not changed
                continue
            to_parse.append((fileloc, digest, st.st_mtime, st.st_size))
        report.removed = sorted(set(known) - set(files))
        if report.removed:
            dag_store.forget_files(session, report.removed)
        if to_parse or report.removed:
            # A file refused for a DAG id another file held may own it now (that file was
            # deleted or dropped the DAG): look at it again, after the others.
            queued = {f for f, *_ in to_parse}
            for fileloc in dag_store.files_with_error(session, DUPLICATE_DAG_ID):
                if fileloc in queued or fileloc not in known:
                    continue
                try:
                    st = os.stat(fileloc)
                except OSError:
                    continue
                digest = hashlib.sha256(Path(fileloc).read_bytes()).hexdigest()
                to_parse.append((fileloc, digest, st.st_mtime, st.st_size))

    if to_parse:
        results = import_files(
            [f for f, *_ in to_parse],
            timeout=settings.parse_timeout,
            extra_paths=[str(settings.plugins_folder), str(settings.dags_folder)],
            concurrency=max(2, os.cpu_count() or 2),
            plugins_folder=str(settings.plugins_folder),
        )
        now = clock()
        with session_scope(engine) as session:
            owners = dag_store.dag_owner_files(session)
            declared_before = dag_store.file_dag_ids(session, [f for f, *_ in to_parse])
            # Decide file by file, in order, then write in a few statements per batch.
            to_record: list[tuple[dict[str, Any], str]] = []
            parsed_files: list[dag_store.ParsedFile] = []
            clean: list[str] = []
            # DAGs a file stopped declaring, less those a later file in this pass declared:
            # what storing the files one at a time would have left inactive.
            dropped: set[str] = set()
            for (fileloc, digest, mtime, size), result in zip(to_parse, results, strict=True):
                report.parsed.append(fileloc)
                dag_ids: list[str] = []
                error = result.error
                if error is None:
                    for serialized in result.dags:
                        owner = owners.get(serialized["dag_id"])
                        if owner and owner != fileloc and owner in files:
                            error_message = (
                                f"DAG id {serialized['dag_id']!r} {DUPLICATE_DAG_ID} {owner}. "
                                "Fix: give one of the DAGs another dag_id"
                            )
                            dag_store.set_import_error(
                                session, fileloc=fileloc, message=error_message, lineno=None,
                                traceback="", now=now)
                            report.errors[fileloc] = error_message
                            continue
                        to_record.append((serialized, result.source))
                        owners[serialized["dag_id"]] = fileloc
                        dag_ids.append(serialized["dag_id"])
                    if fileloc not in report.errors:
                        clean.append(fileloc)
                else:
                    dag_store.set_import_error(
                        session, fileloc=fileloc, message=error.message, lineno=error.lineno,
                        traceback=error.traceback, now=now)
                    report.errors[fileloc] = (
                        f"{fileloc}:{error.lineno}: {error.message}" if error.lineno
                        else f"{fileloc}: {error.message}")
                    # Keep the DAGs the file declared before it broke: their runs go on with
                    # the last good version until the file is fixed.
                    dag_ids = declared_before.get(fileloc, [])
                dropped.difference_update(dag_ids)
                no_longer = set(declared_before.get(fileloc, [])) - set(dag_ids)
                dropped.update(no_longer)
                for dag_id in no_longer:  # free for a later file of this pass to declare
                    if owners.get(dag_id) == fileloc:
                        del owners[dag_id]
                parsed_files.append(dag_store.ParsedFile(
                    fileloc=fileloc, content_hash=digest, mtime=mtime, size=size,
                    dag_ids=dag_ids, duration=result.duration))
                report.dag_ids.extend(dag_ids)
            dag_store.record_dags(session, to_record, now=now,
                                  paused_by_default=settings.dags_are_paused_at_creation)
            dag_store.clear_import_errors(session, clean)
            dag_store.record_files(session, parsed_files, now=now)
            if dropped:
                dag_store.deactivate_dags(session, dropped)
    report.seconds = time.monotonic() - started
    return report

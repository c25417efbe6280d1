"""One task outside the scheduler: ``headwater tasks test`` (run it here, record nothing) and
``headwater tasks render`` / the UI's rendered view (its template fields, rendered).

Both build the task as a worker would — from the stored version of its DAG, with the context
of a run — but in this process and without writing to the store.
"""

from __future__ import annotations

import copy
import logging
import sys
import traceback
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from scheduler.config import Settings
from scheduler.context import RuntimeTaskInstance, build_context
from scheduler.core.serialized import SerializedDag
from scheduler.core.timetable import make_timetable
from scheduler.errors import NotFound, TaskSkipped
from scheduler.parsing.importer import exec_dag_source
from scheduler.plugins import load_plugins
from scheduler.store import queries
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, DagVersion, TaskInstance


@dataclass
class PreparedTask:
    """A copy of the task with its context, ready to render or execute."""

    dag: Any
    task: Any
    context: dict[str, Any]
    ti: RuntimeTaskInstance


def prepare_task(settings: Settings, engine: Engine, dag_id: str, task_id: str,
                 logical_date: datetime, conf: dict[str, Any] | None = None, *,
                 use_existing_run: bool = False, run_id_prefix: str = "tasktest"
                 ) -> PreparedTask:
    """Build the task and its context. With ``use_existing_run``, a run of that logical date
    (if any) gives its version, conf and data interval; otherwise the DAG's latest version and
    a run that exists only here. Raises NotFound for an unknown DAG or task."""
    with session_scope(engine, readonly=True) as session:
        dag_row = queries.get_dag(session, dag_id)
        run: DagRun | None = None
        if use_existing_run:
            run = session.scalars(select(DagRun).where(
                DagRun.dag_id == dag_id, DagRun.logical_date == logical_date)
                .order_by(DagRun.id)).first()
        version = session.get(DagVersion, run.version_id if run else dag_row.latest_version_id)
        assert version is not None
        fileloc, source, serialized = version.fileloc, version.source, version.serialized
    load_plugins(settings.plugins_folder)
    dag = exec_dag_source(fileloc, source, extra_paths=[str(settings.plugins_folder),
                                                        str(settings.dags_folder)])[dag_id]
    if task_id not in dag.task_dict:
        raise NotFound(f"DAG {dag_id!r} has no task {task_id!r}; tasks: "
                       f"{', '.join(sorted(dag.task_dict))}")
    if run is None:
        sdag = SerializedDag.from_dict(serialized)
        interval = make_timetable(sdag.schedule, sdag.timezone).manual_interval(logical_date)
        run = DagRun(dag_id=dag_id, run_id=f"{run_id_prefix}__{logical_date.isoformat()}",
                     run_type="test", state="running", logical_date=logical_date,
                     data_interval_start=interval.start, data_interval_end=interval.end,
                     conf=dict(conf or {}), id=0)
    ti_row = TaskInstance(id=0, run_pk=run.id, dag_id=dag_id, run_id=run.run_id,
                          task_id=task_id, map_index=-1, try_number=1, max_tries=0)

    def sessions() -> AbstractContextManager[Session]:
        return session_scope(engine, readonly=True)

    ti = RuntimeTaskInstance(ti_id=0, run_pk=run.id, dag_id=dag_id, run_id=run.run_id,
                             task_id=task_id, map_index=-1, try_number=1, max_tries=0,
                             sessions=sessions)
    task = copy.copy(dag.task_dict[task_id])
    params = {k: getattr(v, "value", v) for k, v in (getattr(dag, "params", None) or {}).items()}
    params.update(getattr(task, "params", None) or {})
    params.update(run.conf or {})
    context = build_context(dag=dag, task=task, run=run, ti_row=ti_row, ti=ti,
                            sessions=sessions, params=params)
    return PreparedTask(dag, task, context, ti)


def render_task_fields(settings: Settings, engine: Engine, dag_id: str, task_id: str,
                       logical_date: datetime) -> dict[str, Any]:
    """``{field: rendered value}`` for each of the task's ``template_fields``, for the run of
    that logical date if there is one (its pinned version and conf), else for a made-up run."""
    from scheduler.templating import make_jinja_env

    prepared = prepare_task(settings, engine, dag_id, task_id, logical_date,
                            use_existing_run=True, run_id_prefix="render")
    prepared.task.render_template_fields(prepared.context, make_jinja_env(prepared.dag))
    return {name: getattr(prepared.task, name) for name in prepared.task.template_fields}


def run_task_here(settings: Settings, engine: Engine, dag_id: str, task_id: str,
                  logical_date: datetime, params: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Execute the task; returns (succeeded, XComs it pushed)."""
    from scheduler.templating import make_jinja_env

    prepared = prepare_task(settings, engine, dag_id, task_id, logical_date, params)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(name)s - %(message)s")
    task, ti = prepared.task, prepared.ti
    try:
        task.render_template_fields(prepared.context, make_jinja_env(prepared.dag))
        result = task.execute(prepared.context)
    except TaskSkipped as exc:
        logging.getLogger("headwater.task").info("task skipped: %s", exc)
        return True, dict(ti.pushed)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return False, dict(ti.pushed)
    pushed = dict(ti.pushed)
    if result is not None and getattr(task, "do_xcom_push", True):
        pushed["return_value"] = result
    return True, pushed

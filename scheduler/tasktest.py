"""``headwater tasks test``: run one task in this process, with the latest version of its DAG,
outside any run. Nothing is written to the store."""

from __future__ import annotations

import copy
import logging
import sys
import traceback
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

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


def run_task_here(settings: Settings, engine: Engine, dag_id: str, task_id: str,
                  logical_date: datetime, params: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Execute the task; returns (succeeded, XComs it pushed)."""
    with session_scope(engine, readonly=True) as session:
        dag_row = queries.get_dag(session, dag_id)
        version = session.get(DagVersion, dag_row.latest_version_id)
        assert version is not None
        fileloc, source, serialized = version.fileloc, version.source, version.serialized
    load_plugins(settings.plugins_folder)
    dag = exec_dag_source(fileloc, source, extra_paths=[str(settings.plugins_folder),
                                                        str(settings.dags_folder)])[dag_id]
    if task_id not in dag.task_dict:
        raise NotFound(f"DAG {dag_id!r} has no task {task_id!r}; tasks: "
                       f"{', '.join(sorted(dag.task_dict))}")
    sdag = SerializedDag.from_dict(serialized)
    interval = make_timetable(sdag.schedule, sdag.timezone).manual_interval(logical_date)
    run = DagRun(dag_id=dag_id, run_id=f"tasktest__{logical_date.isoformat()}",
                 run_type="test", state="running", logical_date=logical_date,
                 data_interval_start=interval.start, data_interval_end=interval.end,
                 conf=params, id=0)
    ti_row = TaskInstance(id=0, run_pk=0, dag_id=dag_id, run_id=run.run_id, task_id=task_id,
                          map_index=-1, try_number=1, max_tries=0)

    def sessions() -> AbstractContextManager[Session]:
        return session_scope(engine, readonly=True)

    ti = RuntimeTaskInstance(ti_id=0, run_pk=0, dag_id=dag_id, run_id=run.run_id,
                             task_id=task_id, map_index=-1, try_number=1, max_tries=0,
                             sessions=sessions)
    task = copy.copy(dag.task_dict[task_id])
    dag_params = getattr(dag, "params", None) or {}
    all_params = {k: getattr(v, "value", v) for k, v in dag_params.items()}
    all_params.update(params)
    context = build_context(dag=dag, task=task, run=run, ti_row=ti_row, ti=ti,
                            sessions=sessions, params=all_params)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(name)s - %(message)s")
    from scheduler.templating import make_jinja_env

    try:
        task.render_template_fields(context, make_jinja_env(dag))
        result = task.execute(context)
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

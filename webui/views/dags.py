"""Pages about DAGs: the list, one DAG's grid and runs, one run, one task instance.

Each view reads everything it shows inside one read-only session with a fixed number of
statements (no query per run or per task), closes it, then renders. Unknown DAGs, runs and
tasks raise :class:`scheduler.errors.NotFound`, which the app renders as a 404 page.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request

from scheduler.core.serialized import SerializedDag
from scheduler.store import queries
from scheduler.store.db import session_scope
from webui import reads, web_context
from webui.formatting import UNFINISHED_RUN_STATES
from webui.grid import build_grid
from webui.logs import read_log_tail

bp = Blueprint("dags", __name__)

#: How many recent runs the DAG list shows per DAG, and the DAG page's grid shows.
LIST_RUNS = 10
GRID_RUNS = 25


@bp.get("/")
def index() -> str:
    """Active DAGs with their last runs, and the import errors of files that failed."""
    ctx = web_context()
    with session_scope(ctx.engine, readonly=True) as session:
        dags = queries.list_dags(session)
        recent = queries.recent_run_states(session, [d.dag_id for d in dags], per_dag=LIST_RUNS)
        errors = queries.import_errors(session)
    unfinished = any(r.state in UNFINISHED_RUN_STATES for runs in recent.values() for r in runs)
    return render_template(
        "dags/list.html", dags=dags, recent=recent, import_errors=errors,
        dags_folder=ctx.settings.dags_folder, auto_refresh=unfinished)


@bp.get("/dags/<path:dag_id>")
def dag(dag_id: str) -> str:
    """One DAG: its header, the grid of its last runs × tasks, and a table of those runs."""
    ctx = web_context()
    with session_scope(ctx.engine, readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        version = reads.latest_version(session, dag)
        runs = queries.list_runs(session, dag_id, limit=GRID_RUNS)  # newest first
        wanted = {r.version_id for r in runs} | ({version.id} if version else set())
        labels = queries.version_labels(session, wanted)
        tis_by_run = reads.task_instances_of_runs(session, [r.id for r in runs])
    sdag = SerializedDag.from_dict(version.serialized) if version is not None else None
    columns = list(reversed(runs))  # oldest left, newest right
    grid = build_grid(sdag.task_ids if sdag else [], columns, tis_by_run)
    return render_template(
        "dags/dag.html", dag=dag, sdag=sdag, version=version, labels=labels, runs=runs,
        columns=columns, grid=grid,
        auto_refresh=any(r.state in UNFINISHED_RUN_STATES for r in runs))


@bp.get("/dags/<path:dag_id>/runs/<path:run_id>")
def run(dag_id: str, run_id: str) -> str:
    """One run: its details, its task instances and its event history (oldest first)."""
    ctx = web_context()
    with session_scope(ctx.engine, readonly=True) as session:
        run = queries.get_run(session, dag_id, run_id)
        tis = queries.task_instances(session, run)
        events = queries.run_events(session, run)
        labels = queries.version_labels(session, {run.version_id})
    return render_template(
        "dags/run.html", run=run, tis=tis, events=events, version=labels.get(run.version_id),
        auto_refresh=run.state in UNFINISHED_RUN_STATES)


@bp.get("/dags/<path:dag_id>/runs/<path:run_id>/tasks/<task_id>")
def task_instance(dag_id: str, run_id: str, task_id: str) -> str:
    """One task instance (``?map_index=N`` for a mapped one): its attempts with their logs,
    and its XComs."""
    ctx = web_context()
    map_index = request.args.get("map_index", -1, type=int)
    with session_scope(ctx.engine, readonly=True) as session:
        run = queries.get_run(session, dag_id, run_id)
        ti = queries.get_task_instance(session, run, task_id, map_index)
        attempts = queries.attempts(session, ti)
        xcoms = reads.xcoms_of(session, ti)
    logs = {a.try_number: read_log_tail(a.log_path, ctx.settings.base_log_folder)
            for a in attempts}
    return render_template(
        "dags/task_instance.html", run=run, ti=ti, attempts=attempts, logs=logs, xcoms=xcoms,
        auto_refresh=run.state in UNFINISHED_RUN_STATES)

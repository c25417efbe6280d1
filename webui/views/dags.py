"""Pages about DAGs: the list, one DAG's grid, graph, run history, versions, code and events,
one run (with its Gantt chart), one task instance.

Each view reads everything it shows inside one read-only session with a fixed number of
statements (no query per run or per task), closes it, then renders. Unknown DAGs, runs and
tasks raise :class:`scheduler.errors.NotFound`, which the app renders as a 404 page.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from flask import Blueprint, abort, current_app, render_template, request, url_for
from sqlalchemy import select

from scheduler.core.serialized import SerializedDag
from scheduler.errors import NotFound
from scheduler.store import queries
from scheduler.store.db import session_scope
from scheduler.store.models import DagVersion
from webui import reads, web_context
from webui.formatting import UNFINISHED_RUN_STATES
from webui.graph import Bar, gantt_svg, graph_svg
from webui.grid import build_grid, display_rows
from webui.logs import read_log_tail

bp = Blueprint("dags", __name__)

#: How many recent runs the DAG list shows per DAG, and the DAG page's grid shows.
LIST_RUNS = 10
GRID_RUNS = 25
#: Rows per page of the run history and the event history.
PAGE_SIZE = 50
RUN_STATES = ("queued", "running", "success", "failed", "compensating", "compensated")
RUN_TYPES = ("manual", "scheduled", "backfill")


@bp.get("/")
def index() -> str:
    """Active DAGs with their last runs, and the import errors of files that failed."""
    ctx = web_context()
    with session_scope(ctx.engine, readonly=True) as session:
        all_dags = queries.list_dags(session)
        search = request.args.get("q", "").strip()
        tag = request.args.get("tag", "").strip()
        dags = [d for d in all_dags
                if (not search or search.lower() in d.dag_id.lower()
                    or search.lower() in (d.description or "").lower())
                and (not tag or tag in (d.tags or []))]
        recent = queries.recent_run_states(session, [d.dag_id for d in dags], per_dag=LIST_RUNS)
        errors = queries.import_errors(session)
    unfinished = any(r.state in UNFINISHED_RUN_STATES for runs in recent.values() for r in runs)
    all_tags = sorted({t for d in all_dags for t in (d.tags or [])})
    return render_template(
        "dags/list.html", dags=dags, recent=recent, import_errors=errors,
        dags_folder=ctx.settings.dags_folder, auto_refresh=unfinished, search=search, tag=tag,
        all_tags=all_tags, total_dags=len(all_dags))


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
    groups = (version.serialized or {}).get("task_groups") if version is not None else None
    return render_template(
        "dags/dag.html", dag=dag, sdag=sdag, version=version, labels=labels, runs=runs,
        columns=columns, grid=grid, grid_rows=display_rows(grid, groups),
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
    now = datetime.now(UTC)
    bars = [Bar(label=ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""),
                state=ti.state, start=ti.start_date, end=ti.end_date,
                href=url_for("dags.task_instance", dag_id=ti.dag_id, run_id=ti.run_id,
                             task_id=ti.task_id)
                + (f"?map_index={ti.map_index}" if ti.map_index >= 0 else ""))
            for ti in tis]
    waiting = [ti for ti in tis if ti.state == "deferred" and ti.defer_signal]
    return render_template(
        "dags/run.html", run=run, tis=tis, events=events, version=labels.get(run.version_id),
        gantt=gantt_svg(bars, now), waiting=waiting,
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
        events, _ = queries.events_page(session, ti_id=ti.id, limit=200, newest_first=False)
    logs = {a.try_number: read_log_tail(a.log_path, ctx.settings.base_log_folder)
            for a in attempts}
    # Rendering executes the DAG file (and, like the CLI, re-parses the DAGs folder): on demand.
    want_rendered = request.args.get("rendered") == "1"
    rendered, render_error = (_rendered_fields(dag_id, task_id, run.logical_date)
                              if want_rendered else ({}, None))
    return render_template(
        "dags/task_instance.html", run=run, ti=ti, attempts=attempts, logs=logs, xcoms=xcoms,
        events=events, rendered=rendered, render_error=render_error,
        want_rendered=want_rendered,
        auto_refresh=run.state in UNFINISHED_RUN_STATES)


def _rendered_fields(dag_id: str, task_id: str, logical_date: datetime | None
                     ) -> tuple[dict[str, object], str | None]:
    """The task's template fields rendered for the run's logical date, as
    ``headwater tasks render`` shows them (same function), or the reason they cannot be."""
    from scheduler.tasktest import render_task_fields

    ctx = web_context()
    when = logical_date if logical_date is not None else datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return render_task_fields(ctx.settings, ctx.engine, dag_id, task_id, when), None
    except Exception as exc:  # noqa: BLE001 - the DAG file's own code runs here
        current_app.logger.warning("cannot render %s.%s: %s", dag_id, task_id, exc)
        return {}, f"{type(exc).__name__}: {exc}"


def _version_row(session: object, dag_id: str, version: str | None,
                 version_id: int | None = None) -> DagVersion:
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    dag = queries.get_dag(session, dag_id)
    stmt = select(DagVersion).where(DagVersion.dag_id == dag_id)
    if version_id is not None:
        stmt = stmt.where(DagVersion.id == version_id)
    elif version:
        stmt = stmt.where(DagVersion.version == version)
    else:
        stmt = stmt.where(DagVersion.id == dag.latest_version_id)
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFound(f"DAG {dag_id!r} has no version {version or ''!r}; its versions page "
                       "lists them")
    return row


@bp.get("/dags/<path:dag_id>/graph")
def graph(dag_id: str) -> str:
    """The DAG drawn as layered boxes and arrows, coloured by the states of one run
    (``?run_id=``, default the latest) and drawn from the version that run is pinned to."""
    ctx = web_context()
    run_id = request.args.get("run_id")
    with session_scope(ctx.engine, readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        runs = queries.list_runs(session, dag_id, limit=GRID_RUNS)
        run = (queries.get_run(session, dag_id, run_id) if run_id
               else (runs[0] if runs else None))
        version = _version_row(session, dag_id, None,
                               run.version_id if run is not None else None)
        tis = queries.task_instances(session, run) if run is not None else []
    sdag = SerializedDag.from_dict(version.serialized)
    states: dict[str, str] = {}
    for ti in tis:  # a mapped task shows its worst instance, as in the grid
        if ti.task_id not in states or ti.state in ("failed", "upstream_failed", "running"):
            states[ti.task_id] = ti.state

    def href(task_id: str) -> str | None:
        if run is None:
            return None
        return url_for("dags.task_instance", dag_id=dag_id, run_id=run.run_id, task_id=task_id)

    svg = graph_svg(sdag, states, href)
    return render_template("dags/graph.html", dag=dag, run=run, runs=runs, version=version,
                           svg=svg, task_count=len(sdag.tasks),
                           auto_refresh=run is not None and run.state in UNFINISHED_RUN_STATES)


def _date_arg(name: str, *, end_of_day: bool = False) -> datetime | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        abort(400, description=f"{name} must be a date like 2024-01-31 (or an ISO datetime).")
    if len(raw) == 10 and end_of_day:
        parsed = datetime.combine(parsed.date(), time.max)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@bp.get("/dags/<path:dag_id>/runs")
def runs(dag_id: str) -> str:
    """Run history: filters by state, type and logical-date range; 50 runs a page."""
    ctx = web_context()
    state = request.args.get("state", "")
    run_type = request.args.get("run_type", "")
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    since, until = _date_arg("since"), _date_arg("until", end_of_day=True)
    with session_scope(ctx.engine, readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        rows, total = queries.runs_page(
            session, dag_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
            states=[state] if state in RUN_STATES else None,
            run_types=[run_type] if run_type in RUN_TYPES else None, since=since, until=until)
        labels = queries.version_labels(session, {r.version_id for r in rows})
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    filters = {k: v for k, v in (("state", state), ("run_type", run_type),
                                 ("since", request.args.get("since", "")),
                                 ("until", request.args.get("until", ""))) if v}
    return render_template("dags/runs.html", dag=dag, runs=rows, total=total, page=page,
                           pages=pages, labels=labels, filters=filters, run_states=RUN_STATES,
                           run_types=RUN_TYPES)


@bp.get("/dags/<path:dag_id>/versions")
def versions(dag_id: str) -> str:
    """Every version of the DAG the parser stored, newest first, with its runs."""
    ctx = web_context()
    with session_scope(ctx.engine, readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        rows = queries.dag_versions(session, dag_id)
    return render_template("dags/versions.html", dag=dag, versions=rows)


@bp.get("/dags/<path:dag_id>/code")
def code(dag_id: str) -> str:
    """The source of one version of the DAG's file (``?version=``, default the latest): what a
    run pinned to that version executes."""
    ctx = web_context()
    with session_scope(ctx.engine, readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        row = _version_row(session, dag_id, request.args.get("version"))
    return render_template("dags/code.html", dag=dag, version=row,
                           lines=row.source.splitlines())


@bp.get("/dags/<path:dag_id>/events")
def events(dag_id: str) -> str:
    """Every state change of the DAG's runs and task instances, newest first."""
    ctx = web_context()
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    with session_scope(ctx.engine, readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        rows, total = queries.events_page(session, dag_id=dag_id, limit=PAGE_SIZE,
                                          offset=(page - 1) * PAGE_SIZE)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    return render_template("dags/events.html", dag=dag, events=rows, total=total, page=page,
                           pages=pages)

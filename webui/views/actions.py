"""The forms that change things: trigger (built from the DAG's params), pause, clear, mark,
signals and compensation.

Every form posts the session's CSRF token (checked in :mod:`webui.auth` before the view runs),
needs the operator role, goes through :mod:`webui.ops` (store functions, audit log, scheduler
wake-up), and answers with a redirect to the page it came from and a flashed message
(post/redirect/get). A refused change re-shows the page's message instead; nothing is half done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from scheduler.store import queries
from scheduler.store.db import session_scope
from webui import ops, web_context
from webui.api.schema import parse_datetime
from webui.auth import actor, requires
from webui.users import Role

bp = Blueprint("actions", __name__)


@dataclass(frozen=True)
class ParamField:
    """One input of the trigger form, made from a serialized param."""

    name: str
    kind: str  # select | checkbox | integer | number | text | json
    value: str
    description: str | None
    options: tuple[Any, ...] = ()
    checked: bool = False
    minimum: float | None = None
    maximum: float | None = None


def param_fields(params: dict[str, Any]) -> list[ParamField]:
    """The trigger form's inputs for the DAG's params, each showing its default."""
    fields = []
    for name, spec in params.items():
        spec = spec if isinstance(spec, dict) and "default" in spec else {"default": spec}
        default = spec.get("default")
        kinds = spec.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        main = [k for k in kinds if k != "null"]
        desc = spec.get("description")
        if spec.get("enum"):
            fields.append(ParamField(name, "select", json.dumps(default), desc,
                                     options=tuple(spec["enum"])))
        elif main == ["boolean"] or (not main and isinstance(default, bool)):
            fields.append(ParamField(name, "checkbox", "", desc, checked=bool(default)))
        elif main in (["integer"], ["number"]):
            fields.append(ParamField(name, main[0], "" if default is None else str(default), desc,
                                     minimum=spec.get("minimum"), maximum=spec.get("maximum")))
        elif main == ["string"] or (not main and isinstance(default, str)):
            fields.append(ParamField(name, "text", default or "", desc))
        else:
            fields.append(ParamField(name, "json", json.dumps(default, indent=2), desc))
    return fields


def conf_from_form(fields: list[ParamField], form: Any) -> tuple[dict[str, Any], list[str]]:
    """The run's conf from the submitted form, and the errors of fields that do not parse
    (types and ranges are then checked by ``resolve_params`` against the DAG's params)."""
    conf: dict[str, Any] = {}
    errors: list[str] = []
    for f in fields:
        raw = form.get(f"param.{f.name}", "")
        try:
            if f.kind == "checkbox":
                conf[f.name] = f"param.{f.name}" in form
            elif f.kind == "select":
                conf[f.name] = json.loads(raw)
            elif f.kind == "integer":
                conf[f.name] = int(raw) if raw.strip() else None
            elif f.kind == "number":
                conf[f.name] = float(raw) if raw.strip() else None
            elif f.kind == "text":
                conf[f.name] = raw
            else:
                conf[f.name] = json.loads(raw) if raw.strip() else None
        except ValueError:
            errors.append(f"{f.name}: {raw[:80]!r} is not a valid {f.kind} value")
    extra = form.get("conf", "").strip()
    if extra:
        try:
            more = json.loads(extra)
        except ValueError as exc:
            errors.append(f"conf: not valid JSON ({exc})")
        else:
            if isinstance(more, dict):
                conf.update(more)
            else:
                errors.append('conf: must be a JSON object, e.g. {"n": 3}')
    return conf, errors


@bp.route("/dags/<path:dag_id>/trigger", methods=["GET", "POST"])
@requires(Role.OPERATOR)
def trigger(dag_id: str) -> str | Response | tuple[str, int]:
    """The trigger form (one input per param, a JSON box for any other conf) and its post."""
    ctx = web_context()
    with session_scope(ctx.engine, readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        params = ops.latest_params(session, dag_id)
    fields = param_fields(params)
    if request.method == "GET":
        return render_template("actions/trigger.html", dag=dag, fields=fields, errors=[],
                               form={})
    conf, errors = conf_from_form(fields, request.form)
    run_id = request.form.get("run_id", "").strip() or None
    logical_raw = request.form.get("logical_date", "").strip()
    logical = None
    if logical_raw:
        logical = parse_datetime(logical_raw if "T" in logical_raw else logical_raw + "T00:00Z")
        if logical is None:
            logical = parse_datetime(logical_raw + ":00Z") if "T" in logical_raw else None
        if logical is None:
            errors.append("logical date: use a date like 2024-01-31 or 2024-01-31T06:00Z")
    if not errors:
        try:
            run = ops.trigger(ctx.engine, ctx.settings, dag_id, conf=conf, run_id=run_id,
                              logical_date=logical, actor=actor())
        except ops.OpError as exc:
            errors.append(str(exc))
        else:
            flash(f"Triggered run {run.run_id}.")
            return redirect(url_for("dags.run", dag_id=dag_id, run_id=run.run_id))
    return render_template("actions/trigger.html", dag=dag, fields=fields, errors=errors,
                           form=request.form), 400


def _form_date(raw: str, *, end_of_day: bool = False) -> Any:
    raw = raw.strip()
    if not raw:
        return None
    if "T" not in raw:
        raw += "T23:59:59Z" if end_of_day else "T00:00:00Z"
    return parse_datetime(raw) or parse_datetime(raw + "Z") or parse_datetime(raw + ":00Z")


@bp.post("/dags/<path:dag_id>/backfill")
@requires(Role.OPERATOR)
def backfill(dag_id: str) -> Response:
    """Create the runs of a date range for the scheduler to run (not waiting for them)."""
    ctx = web_context()
    back = _back(url_for("dags.dag", dag_id=dag_id))
    start = _form_date(request.form.get("start_date", ""))
    end = _form_date(request.form.get("end_date", ""), end_of_day=True)
    raw_max = request.form.get("max_active_runs", "").strip()
    max_active: int | None = None
    if raw_max:
        max_active = int(raw_max) if raw_max.isdigit() and 0 < int(raw_max) <= 1000 else -1
    if start is None or end is None:
        flash("Backfill needs a start and an end date like 2024-01-31.", "error")
        return back
    if end < start:
        flash("The end date of a backfill comes after its start date.", "error")
        return back
    if max_active == -1:
        flash("Max active runs is a whole number from 1 to 1000.", "error")
        return back
    try:
        result = ops.backfill(ctx.engine, ctx.settings, dag_id, start, end,
                              max_active_runs=max_active,
                              reverse=bool(request.form.get("reverse")),
                              rerun_failed=bool(request.form.get("rerun_failed")),
                              actor=actor())
    except ops.OpError as exc:
        flash(str(exc), "error")
        return back
    flash(f"Backfill created {result.created} run{'s' if result.created != 1 else ''}"
          f" ({result.reused} already there, {result.rerun} rerun); the scheduler runs them.")
    return back


def _back(default: str) -> Response:
    return redirect(default)


@bp.post("/dags/<path:dag_id>/pause")
@requires(Role.OPERATOR)
def pause(dag_id: str) -> Response:
    ctx = web_context()
    paused = request.form.get("paused") == "1"
    ops.set_paused(ctx.engine, ctx.settings, dag_id, paused, actor=actor())
    flash(f"DAG {dag_id} is {'paused' if paused else 'active'}.")
    target = request.form.get("back") == "list"
    return _back(url_for("dags.index") if target else url_for("dags.dag", dag_id=dag_id))


def _flag(name: str) -> bool:
    return request.form.get(name) in ("1", "on", "true")


@bp.post("/dags/<path:dag_id>/runs/<path:run_id>/clear")
@requires(Role.OPERATOR)
def clear_run(dag_id: str, run_id: str) -> Response:
    """Clear a whole run (``only_failed`` for its failed tasks only)."""
    ctx = web_context()
    try:
        tis = ops.clear(ctx.engine, ctx.settings, dag_id, run_id, task_ids=None,
                        only_failed=_flag("only_failed"), actor=actor())
        flash(f"Cleared {len(tis)} task instance{'s' if len(tis) != 1 else ''}.")
    except ops.OpError as exc:
        flash(str(exc), "error")
    return _back(url_for("dags.run", dag_id=dag_id, run_id=run_id))


@bp.post("/dags/<path:dag_id>/runs/<path:run_id>/mark")
@requires(Role.OPERATOR)
def mark_run(dag_id: str, run_id: str) -> Response:
    ctx = web_context()
    state = request.form.get("state", "")
    try:
        ops.mark_run(ctx.engine, ctx.settings, dag_id, run_id, state=state, actor=actor())
        flash(f"Run marked {state}.")
    except ops.OpError as exc:
        flash(str(exc), "error")
    return _back(url_for("dags.run", dag_id=dag_id, run_id=run_id))


@bp.post("/dags/<path:dag_id>/runs/<path:run_id>/tasks/<task_id>/clear")
@requires(Role.OPERATOR)
def clear_task(dag_id: str, run_id: str, task_id: str) -> Response:
    """Clear one task, with its upstream and/or downstream tasks if ticked."""
    ctx = web_context()
    map_index = request.form.get("map_index", -1, type=int)
    try:
        tis = ops.clear(ctx.engine, ctx.settings, dag_id, run_id, task_ids=[task_id],
                        map_index=map_index, upstream=_flag("upstream"),
                        downstream=_flag("downstream"), only_failed=_flag("only_failed"),
                        actor=actor())
        flash(f"Cleared {len(tis)} task instance{'s' if len(tis) != 1 else ''}: "
              + ", ".join(sorted({t.task_id for t in tis})))
    except ops.OpError as exc:
        flash(str(exc), "error")
    return _back(_ti_url(dag_id, run_id, task_id, map_index))


def _ti_url(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    url = url_for("dags.task_instance", dag_id=dag_id, run_id=run_id, task_id=task_id)
    return url + (f"?map_index={map_index}" if map_index >= 0 else "")


@bp.post("/dags/<path:dag_id>/runs/<path:run_id>/tasks/<task_id>/mark")
@requires(Role.OPERATOR)
def mark_task(dag_id: str, run_id: str, task_id: str) -> Response:
    ctx = web_context()
    map_index = request.form.get("map_index", -1, type=int)
    state = request.form.get("state", "")
    try:
        ops.mark_task(ctx.engine, ctx.settings, dag_id, run_id, task_id, map_index=map_index,
                      state=state, actor=actor())
        flash(f"Task {task_id} marked {state}.")
    except ops.OpError as exc:
        flash(str(exc), "error")
    return _back(_ti_url(dag_id, run_id, task_id, map_index))


@bp.post("/dags/<path:dag_id>/runs/<path:run_id>/signal")
@requires(Role.OPERATOR)
def signal(dag_id: str, run_id: str) -> Response:
    """Send a signal to the run: approve/reject buttons send ``{"approved": true|false}``
    merged with the optional JSON payload; the generic form sends the payload as is."""
    ctx = web_context()
    name = request.form.get("name", "").strip()
    raw = request.form.get("payload", "").strip()
    back = request.form.get("back") or url_for("dags.run", dag_id=dag_id, run_id=run_id)
    if not back.startswith("/") or back.startswith("//"):
        back = url_for("dags.run", dag_id=dag_id, run_id=run_id)
    try:
        payload: Any = json.loads(raw) if raw else None
    except ValueError as exc:
        flash(f"The payload is not valid JSON ({exc}); nothing was sent.", "error")
        return _back(back)
    decision = request.form.get("decision")
    if decision in ("approve", "reject"):
        base = payload if isinstance(payload, dict) else (
            {} if payload is None else {"payload": payload})
        payload = {**base, "approved": decision == "approve"}
    if not name:
        flash("A signal needs a name.", "error")
        return _back(back)
    try:
        ops.send_signal(ctx.engine, ctx.settings, dag_id, run_id, name, payload=payload,
                        actor=actor())
        flash(f"Signal {name} sent.")
    except ImportError:
        flash("Signals are not available in this Headwater build.", "error")
    except ops.OpError as exc:
        flash(str(exc), "error")
    return _back(back)


@bp.post("/dags/<path:dag_id>/runs/<path:run_id>/compensate")
@requires(Role.OPERATOR)
def compensate(dag_id: str, run_id: str) -> Response:
    ctx = web_context()
    try:
        ops.compensate(ctx.engine, ctx.settings, dag_id, run_id, actor=actor())
        flash("Compensation requested: the compensations of the run's successful tasks run "
              "in reverse order.")
    except ImportError:
        flash("Compensation is not available in this Headwater build.", "error")
    except ops.OpError as exc:
        flash(str(exc), "error")
    return _back(url_for("dags.run", dag_id=dag_id, run_id=run_id))

"""Pages for the shared resources: pending signals, pools, variables, connections (secrets
masked), the audit log and the users."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from scheduler.errors import NotFound
from scheduler.store import queries
from scheduler.store.db import session_scope
from webui import ops, web_context
from webui.api.models import connection_json
from webui.auth import actor, requires
from webui.users import Role, list_users

bp = Blueprint("admin", __name__)

AUDIT_PAGE = 100


@bp.get("/signals")
def signals() -> str:
    """Task instances waiting for a signal, each with approve / reject buttons."""
    with session_scope(web_context().engine, readonly=True) as session:
        waiting = queries.deferred_task_instances(session)
    return render_template("admin/signals.html", waiting=waiting, auto_refresh=bool(waiting))


@bp.get("/pools")
def pools() -> str:
    with session_scope(web_context().engine, readonly=True) as session:
        rows = queries.list_pools(session)
        usage = queries.pool_usage(session)
    return render_template("admin/pools.html", pools=rows, usage=usage)


@bp.post("/pools")
@requires(Role.OPERATOR)
def pools_post() -> Response:
    engine = web_context().engine
    name = request.form.get("name", "").strip()
    try:
        if request.form.get("delete"):
            ops.delete_pool(engine, name, actor=actor())
            flash(f"Pool {name} deleted.")
        else:
            slots = int(request.form.get("slots", ""))
            if not name or len(name) > 250 or not 0 <= slots <= 100_000:
                raise ValueError
            ops.put_pool(engine, name, slots, request.form.get("description") or None,
                         actor=actor())
            flash(f"Pool {name} has {slots} slots.")
    except ValueError:
        flash("A pool needs a name (up to 250 characters) and 0 to 100000 slots.", "error")
    except (ops.OpError, NotFound) as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.pools"))


@bp.get("/variables")
def variables() -> str:
    with session_scope(web_context().engine, readonly=True) as session:
        rows = queries.list_variables(session)
    return render_template("admin/variables.html", variables=rows)


@bp.post("/variables")
@requires(Role.OPERATOR)
def variables_post() -> Response:
    engine = web_context().engine
    key = request.form.get("key", "").strip()
    try:
        if not key or len(key) > 250:
            flash("A variable needs a key of 1 to 250 characters.", "error")
        elif request.form.get("delete"):
            ops.delete_variable(engine, key, actor=actor())
            flash(f"Variable {key} deleted.")
        else:
            ops.put_variable(engine, key, request.form.get("value", ""),
                             request.form.get("description") or None, actor=actor())
            flash(f"Variable {key} saved.")
    except NotFound as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.variables"))


@bp.get("/connections")
def connections() -> str:
    """Connections with their passwords and secret-looking extras masked, for every role."""
    with session_scope(web_context().engine, readonly=True) as session:
        rows = [connection_json(c) for c in queries.list_connections(session)]
    return render_template("admin/connections.html", connections=rows)


@bp.post("/connections")
@requires(Role.ADMIN)
def connections_post() -> Response:
    engine = web_context().engine
    conn_id = request.form.get("conn_id", "").strip()
    try:
        if not conn_id or len(conn_id) > 250:
            flash("A connection needs an id of 1 to 250 characters.", "error")
        elif request.form.get("delete"):
            ops.delete_connection(engine, conn_id, actor=actor())
            flash(f"Connection {conn_id} deleted.")
        else:
            port_raw = request.form.get("port", "").strip()
            port = int(port_raw) if port_raw else None
            fields = {"conn_type": request.form.get("conn_type") or "generic",
                      "host": request.form.get("host") or None,
                      "login": request.form.get("login") or None,
                      "schema": request.form.get("schema") or None,
                      "port": port, "password": request.form.get("password") or None}
            ops.put_connection(engine, conn_id, fields, actor=actor())
            flash(f"Connection {conn_id} saved.")
    except ValueError:
        flash("The port must be a number.", "error")
    except NotFound as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.connections"))


@bp.get("/audit")
@requires(Role.ADMIN)
def audit() -> str:
    """Who changed what, newest first."""
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    dag_id = request.args.get("dag_id") or None
    with session_scope(web_context().engine, readonly=True) as session:
        rows, total = queries.audit_page(session, limit=AUDIT_PAGE,
                                         offset=(page - 1) * AUDIT_PAGE, dag_id=dag_id)
    pages = max((total + AUDIT_PAGE - 1) // AUDIT_PAGE, 1)
    return render_template("admin/audit.html", rows=rows, total=total, page=page, pages=pages,
                           dag_id=dag_id)


@bp.get("/users")
@requires(Role.ADMIN)
def users() -> str:
    with session_scope(web_context().engine, readonly=True) as session:
        rows = list_users(session)
    return render_template("admin/users.html", users=rows)

"""Signing in and out of the web UI."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from scheduler.store.db import session_scope
from webui import ops, web_context
from webui.auth import current_user, login_session, logout_session, public, requires, safe_next
from webui.users import Role, authenticate

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> str | Response | tuple[str, int]:
    """The sign-in form; on success, a fresh session and a redirect to ``next`` (same site
    only) or the DAG list."""
    target = safe_next(request.values.get("next")) or url_for("dags.index")
    if request.method == "GET":
        if current_user() is not None:
            return redirect(target)
        return render_template("auth/login.html", next=target, error=None)
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    now = datetime.now(UTC)
    with session_scope(web_context().engine) as session:
        user = authenticate(session, username, password) if username and password else None
        ops.audit(session, actor=f"web:{username[:200] or '?'}",
                  action="login" if user else "login_failed", now=now)
        if user is not None:
            login_session(user)
    if user is None:
        return render_template("auth/login.html", next=target,
                               error="Wrong username or password."), 401
    return redirect(target)


@bp.post("/logout")
@requires(Role.VIEWER)
def logout() -> Response:
    """End the session (a POST with the CSRF token, so no other site can sign you out)."""
    logout_session()
    flash("You are signed out.")
    return redirect(url_for("auth.login"))

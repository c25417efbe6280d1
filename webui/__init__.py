"""Headwater's web UI: a Flask app that reads the store and shows DAGs, runs and task instances.

:func:`create_app` is the only entry point. It takes the settings (built by the caller, never
read at import time), opens the store and registers one blueprint per area. Views read through
``scheduler.store.queries`` (and the few extra reads in :mod:`webui.reads`) inside read-only
sessions; their writes go through :mod:`webui.ops` (the store's own functions, an audit-log row,
a scheduler wake-up). :mod:`webui.auth` guards every request (login, roles, CSRF, API tokens);
:mod:`webui.api` is the REST API under ``/api/v1``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, Response, current_app, render_template, request
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

from scheduler.config import Settings, load_settings
from scheduler.errors import NotFound
from scheduler.store.db import ensure_schema, make_engine

__all__ = ["WebContext", "create_app", "web_context"]

EXTENSION_KEY = "headwater"

log = logging.getLogger(__name__)

# Our pages load only our own static files; nothing inline, nothing from elsewhere.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class WebContext:
    """What every view needs: the settings and the store's engine (``app.extensions``)."""

    settings: Settings
    engine: Engine


def web_context() -> WebContext:
    """The :class:`WebContext` of the app handling the current request."""
    ctx: WebContext = current_app.extensions[EXTENSION_KEY]
    return ctx


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> Flask:
    """Build the web UI for ``settings`` (default: :func:`scheduler.config.load_settings`).

    ``engine`` lets a caller share an engine it already has (tests count its statements);
    otherwise one is made from ``settings.sql_alchemy_conn``. Either way the schema is created
    if the store is empty. Raises :class:`scheduler.errors.StoreError` when the store's schema
    is older than this Headwater (``headwater db migrate`` fixes it).

    Without ``settings.secret_key`` a random key is used: fine for one process, but several
    gunicorn workers must share one (:func:`webui.serve.serve` takes care of that).
    """
    from webui import api, auth, formatting
    from webui.views import actions, admin, dags, health
    from webui.views import auth as auth_views

    settings = settings if settings is not None else load_settings()
    if engine is None:
        engine = make_engine(settings.sql_alchemy_conn)
    ensure_schema(engine)

    app = Flask(__name__)
    app.jinja_options = {**app.jinja_options, "trim_blocks": True, "lstrip_blocks": True}
    app.config.update(
        SECRET_KEY=settings.secret_key or secrets.token_hex(32),
        SESSION_COOKIE_NAME="headwater_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=False,  # set per request: Secure whenever served over HTTPS
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
    )
    app.extensions[EXTENSION_KEY] = WebContext(settings=settings, engine=engine)
    formatting.register(app)
    auth.install(app)
    auth.public(health.health)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth_views.bp)
    app.register_blueprint(dags.bp)
    app.register_blueprint(actions.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    _register_error_pages(app)
    app.after_request(_security_headers)
    return app


def _register_error_pages(app: Flask) -> None:
    """Friendly error pages: what went wrong in words, never a stack trace."""

    from webui.auth import problem

    def not_found_in_store(exc: NotFound) -> Response | tuple[str, int]:
        if request.path.startswith("/api/"):
            return problem(404, "Not found", str(exc))
        return render_template("errors/error.html", code=404, title="Not found",
                               message=str(exc)), 404

    def http_error(exc: HTTPException) -> Response | tuple[str, int]:
        code = exc.code or 500
        if exc.response is not None:
            return exc.response  # type: ignore[return-value]
        if request.path.startswith("/api/"):
            return problem(code, exc.name or "Error",
                           (exc.description or "") if code < 500
                           else "the server could not answer")
        if code >= 500:
            # The exception itself is logged by Flask; the page only says what to do.
            return render_template(
                "errors/error.html", code=code, title="Something went wrong",
                message="The server could not show this page. The web server's log has the "
                        "details; reload to try again."), code
        title = "Not found" if code == 404 else (exc.name or "Error")
        message = ("There is no page at this address. Start again from the DAG list."
                   if code == 404 else exc.description or "")
        return render_template("errors/error.html", code=code, title=title,
                               message=message), code

    app.register_error_handler(NotFound, not_found_in_store)
    app.register_error_handler(HTTPException, http_error)


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response

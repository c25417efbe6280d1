"""``GET /health``: is the web server up, and can it read the store?"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from scheduler.store.db import session_scope
from webui import web_context

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> tuple[Response, int]:
    """200 ``{"status": "ok", "store": "ok"}`` when a read of the store works, else 503 with
    ``"store": "unavailable"`` (the error goes to the server's log, not to the caller)."""
    try:
        with session_scope(web_context().engine, readonly=True) as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        current_app.logger.exception("health check: the store cannot be read")
        return jsonify(status="error", store="unavailable"), 503
    return jsonify(status="ok", store="ok"), 200

"""Who is asking, and may they: login sessions, API tokens, roles and CSRF for every request.

Every endpoint is closed unless it says otherwise. A view declares the least role it needs with
:func:`requires` (``@requires(Role.OPERATOR)``) or opens itself with :func:`public`; a view that
declares nothing needs ``viewer`` for safe methods (GET, HEAD, OPTIONS) and ``admin`` for
anything else, so a forgotten declaration fails closed. The check runs in one
``before_request`` hook, before the view:

- a browser carries a signed session cookie (HttpOnly, SameSite=Lax, Secure whenever the page
  is served over HTTPS) holding the user's id; the user is read from the store on each request,
  so deleting or demoting a user takes effect at once;
- a script sends ``Authorization: Bearer <token>`` (see :func:`webui.users.create_token`);
- every state-changing request carried by a session cookie must present the session's CSRF
  token, as the ``csrf_token`` form field or the ``X-CSRF-Token`` header. Bearer requests carry
  no cookie, so they cannot be forged cross-site and need no CSRF token.

Pages answer an anonymous visitor with a redirect to the login page; ``/api/`` answers 401 and
a missing role 403, as JSON problems.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, abort, g, jsonify, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from scheduler.store.db import session_scope
from scheduler.store.models import User
from webui.users import Role, user_for_token

F = TypeVar("F", bound=Callable[..., Any])

_ROLE_ATTR = "_headwater_role"
_PUBLIC = "public"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class CurrentUser:
    """The user a request acts for, detached from the store. ``via`` is session or token."""

    id: int
    username: str
    role: Role
    via: str

    def can(self, role: Role) -> bool:
        return self.role >= role


def requires(role: Role) -> Callable[[F], F]:
    """Declare the least role a view needs."""

    def mark(view: F) -> F:
        setattr(view, _ROLE_ATTR, role)
        return view

    return mark


def public(view: F) -> F:
    """Declare a view open to everybody (login page, health check, static files)."""
    setattr(view, _ROLE_ATTR, _PUBLIC)
    return view


def current_user() -> CurrentUser | None:
    """The user of the current request (None when anonymous)."""
    return g.get("hw_user")


def actor() -> str:
    """How events and the audit log name the current user: ``web:alice`` or ``api:alice``."""
    user = current_user()
    if user is None:
        return "web:anonymous"
    return f"{'api' if user.via == 'token' else 'web'}:{user.username}"


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return str(token)


def login_session(user: User) -> None:
    """Start a fresh session for ``user`` (a new CSRF token too: no session fixation)."""
    session.clear()
    session["uid"] = user.id
    session.permanent = True
    csrf_token()


def logout_session() -> None:
    session.clear()


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the Secure flag whenever the request came over
    HTTPS (directly, or per a trusted proxy's ``X-Forwarded-Proto`` once ProxyFix is set up),
    and whenever ``SESSION_COOKIE_SECURE`` is set."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """An RFC 9457 problem document (``application/problem+json``)."""
    response = jsonify({"type": "about:blank", "title": title, "status": status,
                        "detail": detail, **extra})
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def _load_user() -> CurrentUser | None:
    from webui import web_context

    header = request.headers.get("Authorization", "")
    engine = web_context().engine
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        with session_scope(engine) as db:
            user = user_for_token(db, token.strip(), now=datetime.now(UTC))
            return None if user is None else CurrentUser(user.id, user.username,
                                                         Role.parse(user.role), "token")
    uid = session.get("uid")
    if not isinstance(uid, int):
        return None
    with session_scope(engine, readonly=True) as db:
        user = db.get(User, uid)
        if user is None or not user.active:
            return None
        return CurrentUser(user.id, user.username, Role.parse(user.role), "session")


def _required_role(app: Flask) -> Role | str:
    view = app.view_functions.get(request.endpoint or "")
    if view is None:  # no route: let Flask answer 404/405
        return _PUBLIC
    declared = getattr(view, _ROLE_ATTR, None)
    if declared is not None:
        return declared  # type: ignore[no-any-return]
    return Role.VIEWER if request.method in _SAFE_METHODS else Role.ADMIN


def _check_csrf() -> None:
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    expected = session.get(CSRF_FIELD)
    if not expected or not sent or not hmac.compare_digest(str(sent), str(expected)):
        if _wants_json():
            abort(problem(403, "CSRF token missing or wrong",
                          f"send the session's CSRF token in the {CSRF_HEADER} header"))
        abort(400, description="The form was stale or did not come from this site (its CSRF "
                               "token is missing or wrong). Reload the page and try again.")


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths may be redirected to after login (no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _guard() -> Any:
    from flask import current_app

    if request.endpoint == "static":
        return None
    needed = _required_role(current_app)  # type: ignore[arg-type]
    user = _load_user()
    g.hw_user = user
    unsafe = request.method not in _SAFE_METHODS
    if needed != _PUBLIC and user is None:
        if _wants_json():
            return problem(401, "Not authenticated",
                           "log in, or send `Authorization: Bearer <token>`; "
                           "`headwater users token USERNAME` makes a token")
        if unsafe:
            abort(401, description="Your session has ended. Sign in again.")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    # Cookie-borne writes need the session's CSRF token; bearer-token calls carry no cookie.
    if unsafe and (user.via == "session" if user is not None else not _wants_json()):
        _check_csrf()
    if needed == _PUBLIC:
        return None
    assert isinstance(needed, Role) and user is not None
    if not user.can(needed):
        if _wants_json():
            return problem(403, "Forbidden",
                           f"this needs the {needed.label} role; you are {user.role.label}")
        abort(403, description=f"This needs the {needed.label} role; you are signed in as "
                               f"{user.username} ({user.role.label}).")
    return None


def _template_globals() -> dict[str, Any]:
    return {"current_user": current_user(), "csrf_token": csrf_token, "Role": Role}


def install(app: Flask) -> None:
    """Wire sessions, the guard and the template helpers into ``app``."""
    app.session_interface = _SessionInterface()
    app.before_request(_guard)
    app.context_processor(_template_globals)
    static = app.view_functions.get("static")
    if static is not None:
        public(static)
    app.jinja_env.globals["safe_next"] = _safe_next


safe_next = _safe_next

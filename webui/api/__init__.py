"""The REST API under ``/api/v1``: JSON in and out, described by ``/api/v1/openapi.json``.

Each endpoint is declared once with :func:`endpoint` (path, role, parameters, body and response
schemas); the declaration registers the Flask route, validates the request before the view runs
and feeds the OpenAPI document. Bad input gets a 4xx ``application/problem+json`` body naming
each wrong field; an unexpected error gets a 500 problem without details (logged), never a
stack trace.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from scheduler import __version__
from scheduler.errors import HeadwaterError, NotFound
from webui.api.schema import ROUTES, Param, Route, coerce_query, openapi, ref, validate
from webui.auth import problem, public, requires
from webui.users import Role

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)

_PATH_PARAM = re.compile(r"{(\w+)}")
_STANDARD: dict[int, tuple[str, dict[str, Any] | None]] = {
    400: ("Bad request: the problem lists each wrong field", ref("Problem")),
    401: ("Not authenticated", ref("Problem")),
    403: ("The user's role does not allow it", ref("Problem")),
}


class ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str,
                 errors: Sequence[str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.errors = list(errors or [])


def endpoint(method: str, path: str, *, summary: str, role: Role | None,
             params: Sequence[Param] = (), body: dict[str, Any] | None = None,
             ok: tuple[int, str, dict[str, Any] | None], tag: str,
             extra: dict[int, tuple[str, dict[str, Any] | None]] | None = None
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an API operation. The view is called with the path parameters, ``query`` (the
    validated query parameters, defaults applied) and ``body`` (the validated JSON body or
    None), and returns a JSON-able payload (sent with ``ok``'s status) or a Response.
    ``role`` None makes it public."""
    path_names = _PATH_PARAM.findall(path)
    all_params = [Param(n, "path", {"type": "string", "minLength": 1}) for n in path_names]
    all_params += list(params)
    responses = dict(_STANDARD) if role is not None else {400: _STANDARD[400]}
    if path_names:
        responses[404] = ("Not found", ref("Problem"))
    responses.update(extra or {})
    responses[ok[0]] = (ok[1], ok[2])

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        operation_id = view.__name__
        route = Route(method=method, path=path, operation_id=operation_id, summary=summary,
                      role=role or Role.VIEWER, params=all_params, body=body,
                      responses=responses, tag=tag, view=view)
        ROUTES.append(route)

        @functools.wraps(view)
        def handle(**path_args: str) -> Any:
            try:
                query = _query(route)
                payload = _body(route)
                result = view(**path_args, query=query, body=payload)
            except ApiError as exc:
                return problem(exc.status, exc.title, exc.detail,
                               **({"errors": exc.errors} if exc.errors else {}))
            except NotFound as exc:
                return problem(404, "Not found", str(exc))
            except HeadwaterError as exc:
                status = getattr(exc, "status", 400)
                return problem(status, "Conflict" if status == 409 else "Bad request", str(exc))
            if isinstance(result, Response):
                return result
            response = jsonify(result)
            response.status_code = ok[0]
            return response

        if role is None:
            public(handle)
        else:
            requires(role)(handle)
        flask_path = _PATH_PARAM.sub(r"<\1>", path)
        bp.add_url_rule(flask_path, operation_id, handle, methods=[method])
        return view

    return register


def _query(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {}
    errors: list[str] = []
    for p in route.params:
        if p.where != "query":
            continue
        raw = request.args.get(p.name)
        if raw is None:
            if p.required:
                errors.append(f"query.{p.name}: is required")
            elif "default" in p.schema:
                out[p.name] = p.schema["default"]
            continue
        value = coerce_query(raw, p.schema)
        problems = validate(value, p.schema, f"query.{p.name}")
        errors.extend(problems)
        if not problems:
            out[p.name] = value
    if errors:
        raise ApiError(400, "Invalid query parameters", "; ".join(errors), errors)
    return out


def _body(route: Route) -> Any:
    if route.body is None:
        return None
    data = request.get_json(force=True, silent=True)
    if data is None and not request.get_data():
        data = {}
    if data is None:
        raise ApiError(400, "Invalid JSON", "the request body must be a JSON document")
    errors = validate(data, route.body)
    if errors:
        raise ApiError(400, "Invalid request body", "; ".join(errors), errors)
    return data


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    if exc.response is not None:
        return exc.response  # type: ignore[return-value]
    code = exc.code or 500
    return problem(code, exc.name or "Error", exc.description or "")


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    current_app.logger.exception("API error on %s %s", request.method, request.path)
    return problem(500, "Internal error",
                   "the server could not answer; its log has the details")


@bp.get("/openapi.json")
@public
def openapi_document() -> Response:
    """The OpenAPI 3.1 document of this API."""
    return jsonify(openapi(PREFIX, __version__))


def api_not_found(path: str) -> Response:
    return problem(404, "Not found", f"no API endpoint at {PREFIX}/{path}; "
                                     f"{PREFIX}/openapi.json lists them")


bp.add_url_rule("/<path:path>", "not_found", public(api_not_found),
                methods=["GET", "POST", "PUT", "PATCH", "DELETE"])


from webui.api import routes as _routes  # noqa: E402,F401  (registers the endpoints)

"""A small JSON-schema validator and the route registry the OpenAPI document is made from.

The REST API describes each endpoint once, with plain schema dicts (a subset of JSON Schema /
OpenAPI 3.1: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties: false``, ``items``, ``enum``, ``minimum``, ``maximum``, ``minLength``,
``maxLength``, ``format: date-time``, ``$ref`` to ``#/components/schemas/...``). The same dicts
validate requests (:func:`validate`) and build ``/api/v1/openapi.json`` (:func:`openapi`), so
the document cannot drift from what the server accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from webui.users import Role

#: Named schemas (``{"$ref": "#/components/schemas/Name"}``), filled by the API module.
COMPONENTS: dict[str, dict[str, Any]] = {}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = COMPONENTS[str(schema["$ref"]).rsplit("/", 1)[1]]
    return schema


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True


def parse_datetime(text: str) -> datetime | None:
    """An RFC 3339 date-time as an aware datetime, or None when it is not one."""
    if not isinstance(text, str) or len(text) < 10 or "T" not in text.upper():
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def validate(value: Any, schema: Mapping[str, Any], where: str = "body") -> list[str]:
    """Every way ``value`` breaks ``schema``, as messages naming the place (empty: valid)."""
    schema = _resolve(schema)
    errors: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_type_ok(value, k) for k in kinds):
            return [f"{where}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: must be <= {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: must have at most {schema['maxLength']} characters")
        if schema.get("format") == "date-time" and parse_datetime(value) is None:
            errors.append(f"{where}: must be an RFC 3339 date-time with an offset, "
                          "e.g. 2024-01-31T06:00:00Z")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors.extend(validate(item, schema["items"], f"{where}[{i}]"))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                errors.append(f"{where}.{name}: is required")
        for name, item in value.items():
            if name in props:
                errors.extend(validate(item, props[name], f"{where}.{name}"))
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}.{name}: is not a known field")
    return errors


def coerce_query(raw: str, schema: Mapping[str, Any]) -> Any:
    """A query-string value converted to the schema's type (left as text when it is not one,
    so that :func:`validate` reports it)."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or ["string"])
    if "integer" in kinds:
        try:
            return int(raw)
        except ValueError:
            return raw
    if "boolean" in kinds:
        return {"true": True, "false": False}.get(raw.lower(), raw)
    return raw


@dataclass(frozen=True)
class Param:
    """A path or query parameter."""

    name: str
    where: str  # "path" | "query"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass
class Route:
    """One API operation: what the OpenAPI document says about it, and what validates it."""

    method: str
    path: str  # OpenAPI form: /dags/{dag_id}
    operation_id: str
    summary: str
    role: Role
    params: list[Param] = field(default_factory=list)
    body: dict[str, Any] | None = None
    responses: dict[int, tuple[str, dict[str, Any] | None]] = field(default_factory=dict)
    tag: str = "api"
    view: Callable[..., Any] | None = None


ROUTES: list[Route] = []


def openapi(prefix: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every registered route."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        responses: dict[str, Any] = {}
        for status, (description, body) in sorted(route.responses.items()):
            entry: dict[str, Any] = {"description": description}
            if body is not None:
                media = "application/json" if status < 400 else "application/problem+json"
                entry["content"] = {media: {"schema": body}}
            responses[str(status)] = entry
        op: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
            "description": f"Needs the `{route.role.label}` role.",
            "parameters": [
                {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                 "schema": p.schema, **({"description": p.description} if p.description else {})}
                for p in route.params
            ],
            "responses": responses,
        }
        if route.body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": route.body}}}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Headwater REST API", "version": version,
                 "description": "Everything the web UI does, over HTTP. Authenticate with "
                                "`Authorization: Bearer <token>` (`headwater users token`)."},
        "servers": [{"url": prefix}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

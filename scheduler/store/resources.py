"""Variables, connections and pools: the store functions the CLI, the web UI and the API share.

Each function takes the session explicitly (the caller owns the transaction). Writes record who
made them in the audit log, in the same transaction. Reads return plain dicts, so callers never
hold ORM rows past their session.

Import/export documents are JSON objects keyed by the resource's name (Airflow's format):

- variables: ``{"key": "value", ...}``. Values are stored as text; a non-string value given to
  :func:`set_variable` or in an import file is stored as its JSON text (so ``var.json.key``
  reads it back as that value).
- connections: ``{"conn_id": {"conn_type": ..., "host": ..., "schema": ..., "login": ...,
  "password": ..., "port": ..., "extra": {...}}, ...}``.
- pools: ``{"name": {"slots": 8, "description": "..."}, ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.core.serialized import DEFAULT_POOL
from scheduler.errors import HeadwaterError, NotFound
from scheduler.store.models import AuditLog, Connection, Pool, Variable

CONNECTION_FIELDS = ("conn_type", "host", "schema", "login", "password", "port", "extra")


class InvalidResource(HeadwaterError):
    """A variable, connection or pool (or an import file of them) that cannot be stored."""


def _audit(session: Session, actor: str, action: str, detail: Any) -> None:
    session.add(AuditLog(when=datetime.now(UTC), actor=actor, action=action, detail=detail))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- variables ----------------------------------------------------------------------------------


def _variable_dict(row: Variable) -> dict[str, Any]:
    return {"key": row.key, "value": row.val, "description": row.description}


def list_variables(session: Session) -> list[dict[str, Any]]:
    """Every variable as ``{"key", "value", "description"}``, by key."""
    return [_variable_dict(r) for r in session.scalars(select(Variable).order_by(Variable.key))]


def get_variable(session: Session, key: str) -> dict[str, Any]:
    """The variable ``key``. Raises NotFound when there is none."""
    row = session.get(Variable, key)
    if row is None:
        raise NotFound(f"no variable {key!r}; `headwater variables list` shows the variables, "
                       f"`headwater variables set {key} VALUE` creates it")
    return _variable_dict(row)


def set_variable(session: Session, key: str, value: Any, *, description: str | None = None,
                 actor: str = "cli") -> dict[str, Any]:
    """Create or replace the variable ``key`` (a non-string value is stored as JSON text).

    A None ``description`` keeps the one already stored.
    """
    if not key or not isinstance(key, str):
        raise InvalidResource(f"a variable needs a non-empty string key, got {key!r}")
    row = session.get(Variable, key)
    if row is None:
        row = Variable(key=key, val=_as_text(value), description=description)
        session.add(row)
    else:
        row.val = _as_text(value)
        if description is not None:
            row.description = description
    _audit(session, actor, "variable.set", {"key": key})
    return _variable_dict(row)


def delete_variable(session: Session, key: str, *, actor: str = "cli") -> None:
    """Delete the variable ``key``. Raises NotFound when there is none."""
    row = session.get(Variable, key)
    if row is None:
        raise NotFound(f"no variable {key!r} to delete; `headwater variables list` shows them")
    session.delete(row)
    _audit(session, actor, "variable.delete", {"key": key})


def export_variables(session: Session) -> dict[str, str]:
    """``{key: value}`` of every variable, values as stored (text)."""
    return {r.key: r.val for r in session.scalars(select(Variable).order_by(Variable.key))}


def import_variables(session: Session, document: Any, *, actor: str = "cli") -> int:
    """Create or replace every variable of ``document`` (``{key: value}``); returns how many.

    Nothing is written unless the whole document is valid.
    """
    if not isinstance(document, Mapping):
        raise InvalidResource('a variables file must hold a JSON object {"key": value, ...}')
    for key in document:
        if not isinstance(key, str) or not key:
            raise InvalidResource(f"variable keys must be non-empty strings, got {key!r}")
    for key, value in document.items():
        set_variable(session, key, value, actor=actor)
    return len(document)


# --- connections --------------------------------------------------------------------------------


def _connection_dict(row: Connection) -> dict[str, Any]:
    return {"conn_id": row.conn_id, **{f: getattr(row, f) for f in CONNECTION_FIELDS}}


def list_connections(session: Session) -> list[dict[str, Any]]:
    """Every connection as a dict of ``conn_id`` and its fields, by id."""
    return [_connection_dict(r)
            for r in session.scalars(select(Connection).order_by(Connection.conn_id))]


def get_connection(session: Session, conn_id: str) -> dict[str, Any]:
    """The connection ``conn_id``. Raises NotFound when there is none."""
    row = session.get(Connection, conn_id)
    if row is None:
        raise NotFound(f"no connection {conn_id!r}; `headwater connections list` shows them, "
                       f"`headwater connections set {conn_id} --conn-type TYPE ...` creates it")
    return _connection_dict(row)


def parse_connection_uri(uri: str) -> dict[str, Any]:
    """Fields of a connection written as a URI, e.g.
    ``postgres://user:secret@db.example.com:5432/analytics?sslmode=require`` (query parameters
    become ``extra``). Raises InvalidResource for a URI without a scheme."""
    parts = urlsplit(uri)
    if not parts.scheme:
        raise InvalidResource(f"connection URI {uri!r} has no type; write it as "
                              "TYPE://LOGIN:PASSWORD@HOST:PORT/SCHEMA")
    try:
        port = parts.port
    except ValueError:
        raise InvalidResource(f"connection URI {uri!r} has an invalid port") from None
    extra = dict(parse_qsl(parts.query)) or None
    return {
        "conn_type": parts.scheme.replace("-", "_"),
        "host": unquote(parts.hostname) if parts.hostname else None,
        "schema": unquote(parts.path.lstrip("/")) or None,
        "login": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "port": port,
        "extra": extra,
    }


def _checked_connection(conn_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(CONNECTION_FIELDS) - {"conn_id"}
    if unknown:
        raise InvalidResource(f"connection {conn_id!r} has unknown fields {sorted(unknown)}; "
                              f"known fields: {', '.join(CONNECTION_FIELDS)}")
    if not fields.get("conn_type"):
        raise InvalidResource(f"connection {conn_id!r} needs a conn_type (e.g. postgres, http)")
    checked = {f: fields.get(f) for f in CONNECTION_FIELDS}
    port = checked["port"]
    if port is not None:
        try:
            checked["port"] = int(port)
        except (TypeError, ValueError):
            raise InvalidResource(f"port of connection {conn_id!r} must be a number, "
                                  f"got {port!r}") from None
    extra = checked["extra"]
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else None
        except json.JSONDecodeError as exc:
            raise InvalidResource(f"extra of connection {conn_id!r} is not JSON ({exc})") from None
    if extra is not None and not isinstance(extra, dict):
        raise InvalidResource(f"extra of connection {conn_id!r} must be a JSON object")
    checked["extra"] = extra
    return checked


def set_connection(session: Session, conn_id: str, fields: Mapping[str, Any], *,
                   actor: str = "cli") -> dict[str, Any]:
    """Create or replace the connection ``conn_id`` with ``fields`` (see CONNECTION_FIELDS;
    ``conn_type`` required, ``extra`` a dict or its JSON text)."""
    if not conn_id:
        raise InvalidResource("a connection needs a non-empty conn_id")
    checked = _checked_connection(conn_id, fields)
    row = session.get(Connection, conn_id)
    if row is None:
        row = Connection(conn_id=conn_id)
        session.add(row)
    for name, value in checked.items():
        setattr(row, name, value)
    _audit(session, actor, "connection.set", {"conn_id": conn_id})
    return _connection_dict(row)


def delete_connection(session: Session, conn_id: str, *, actor: str = "cli") -> None:
    """Delete the connection ``conn_id``. Raises NotFound when there is none."""
    row = session.get(Connection, conn_id)
    if row is None:
        raise NotFound(f"no connection {conn_id!r} to delete; `headwater connections list` "
                       "shows them")
    session.delete(row)
    _audit(session, actor, "connection.delete", {"conn_id": conn_id})


def export_connections(session: Session) -> dict[str, dict[str, Any]]:
    """``{conn_id: {field: value}}`` of every connection (passwords included: keep the file
    safe)."""
    return {c.pop("conn_id"): c for c in list_connections(session)}


def import_connections(session: Session, document: Any, *, actor: str = "cli") -> int:
    """Create or replace every connection of ``document``; returns how many. Nothing is
    written unless the whole document is valid."""
    if not isinstance(document, Mapping) or not all(
            isinstance(v, Mapping) for v in document.values()):
        raise InvalidResource('a connections file must hold a JSON object '
                              '{"conn_id": {"conn_type": ..., "host": ...}, ...}')
    checked = {conn_id: _checked_connection(conn_id, fields)
               for conn_id, fields in document.items()}
    for conn_id, fields in checked.items():
        set_connection(session, conn_id, fields, actor=actor)
    return len(checked)


# --- pools --------------------------------------------------------------------------------------


def _pool_dict(row: Pool) -> dict[str, Any]:
    return {"name": row.name, "slots": row.slots, "description": row.description}


def list_pools(session: Session) -> list[dict[str, Any]]:
    """Every pool as ``{"name", "slots", "description"}``, by name."""
    return [_pool_dict(r) for r in session.scalars(select(Pool).order_by(Pool.name))]


def get_pool(session: Session, name: str) -> dict[str, Any]:
    """The pool ``name``. Raises NotFound when there is none."""
    row = session.get(Pool, name)
    if row is None:
        raise NotFound(f"no pool {name!r}; `headwater pools list` shows the pools, "
                       f"`headwater pools set {name} SLOTS` creates it")
    return _pool_dict(row)


def _checked_slots(name: str, slots: Any) -> int:
    if isinstance(slots, bool) or not isinstance(slots, int | str):
        raise InvalidResource(f"slots of pool {name!r} must be a whole number >= 0, got {slots!r}")
    try:
        value = int(slots)
    except ValueError:
        raise InvalidResource(
            f"slots of pool {name!r} must be a whole number >= 0, got {slots!r}") from None
    if value < 0:
        raise InvalidResource(f"slots of pool {name!r} must be >= 0, got {value}")
    return value


def set_pool(session: Session, name: str, slots: int, *, description: str | None = None,
             actor: str = "cli") -> dict[str, Any]:
    """Create or resize the pool ``name``. A None ``description`` keeps the stored one.

    Task instances already running keep their slots; the new size applies to what is queued
    next.
    """
    if not name:
        raise InvalidResource("a pool needs a non-empty name")
    count = _checked_slots(name, slots)
    row = session.get(Pool, name)
    if row is None:
        row = Pool(name=name, slots=count, description=description)
        session.add(row)
    else:
        row.slots = count
        if description is not None:
            row.description = description
    _audit(session, actor, "pool.set", {"name": name, "slots": count})
    return _pool_dict(row)


def delete_pool(session: Session, name: str, *, actor: str = "cli") -> None:
    """Delete the pool ``name``. The default pool cannot be deleted (resize it instead).
    Raises NotFound when there is no such pool."""
    if name == DEFAULT_POOL:
        raise InvalidResource(f"{DEFAULT_POOL!r} cannot be deleted; resize it with "
                              f"`headwater pools set {DEFAULT_POOL} SLOTS`")
    row = session.get(Pool, name)
    if row is None:
        raise NotFound(f"no pool {name!r} to delete; `headwater pools list` shows them")
    session.delete(row)
    _audit(session, actor, "pool.delete", {"name": name})


def export_pools(session: Session) -> dict[str, dict[str, Any]]:
    """``{name: {"slots", "description"}}`` of every pool."""
    return {p.pop("name"): p for p in list_pools(session)}


def import_pools(session: Session, document: Any, *, actor: str = "cli") -> int:
    """Create or resize every pool of ``document``; returns how many. Nothing is written
    unless the whole document is valid."""
    if not isinstance(document, Mapping) or not all(
            isinstance(v, Mapping) and "slots" in v for v in document.values()):
        raise InvalidResource('a pools file must hold a JSON object '
                              '{"name": {"slots": 4, "description": "..."}, ...}')
    checked = {name: (_checked_slots(name, spec["slots"]), spec.get("description"))
               for name, spec in document.items()}
    for name, (slots, description) in checked.items():
        set_pool(session, name, slots, description=description, actor=actor)
    return len(checked)

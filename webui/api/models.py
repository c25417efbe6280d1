"""The JSON shapes of the REST API: component schemas and the functions that fill them.

Each ``*_json`` function turns a store row into exactly the object its schema describes (the
schemathesis run checks responses against these schemas).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from scheduler.store.models import (
    AuditLog,
    Connection,
    DagModel,
    DagRun,
    Event,
    ImportErrorRecord,
    Pool,
    TaskAttempt,
    TaskInstance,
    Variable,
    XCom,
)
from webui.api.schema import COMPONENTS, ref

MASK = "***"

_DT = {"type": ["string", "null"], "format": "date-time"}
_STR_OR_NULL = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_ANY: dict[str, Any] = {}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required}


def _page(item: str) -> dict[str, Any]:
    return _obj({"items": {"type": "array", "items": ref(item)},
                 "total_entries": {"type": "integer", "minimum": 0}})


COMPONENTS.update({
    "Problem": _obj({"type": {"type": "string"}, "title": {"type": "string"},
                     "status": {"type": "integer"}, "detail": {"type": "string"},
                     "errors": {"type": "array", "items": {"type": "string"}}},
                    required=["title", "status", "detail"]),
    "Dag": _obj({
        "dag_id": {"type": "string"}, "is_paused": {"type": "boolean"},
        "is_active": {"type": "boolean"}, "schedule": {"type": "string"},
        "timezone": {"type": "string"}, "description": _STR_OR_NULL,
        "tags": {"type": "array", "items": {"type": "string"}}, "fileloc": {"type": "string"},
        "next_logical_date": _DT, "next_run_after": _DT, "last_parsed_at": _DT,
        "max_active_runs": _INT, "max_active_tasks": _INT,
    }),
    "DagDetail": _obj({"dag": ref("Dag"), "version": _STR_OR_NULL,
                       "params": {"type": "object"},
                       "tasks": {"type": "array", "items": ref("Task")}}),
    "Task": _obj({"task_id": {"type": "string"}, "operator": {"type": "string"},
                  "upstream": {"type": "array", "items": {"type": "string"}},
                  "downstream": {"type": "array", "items": {"type": "string"}},
                  "trigger_rule": {"type": "string"}, "retries": _INT}),
    "DagRun": _obj({
        "dag_id": {"type": "string"}, "dag_run_id": {"type": "string"},
        "state": {"type": "string"}, "run_type": {"type": "string"},
        "logical_date": _DT, "data_interval_start": _DT, "data_interval_end": _DT,
        "queued_at": _DT, "start_date": _DT, "end_date": _DT, "conf": {"type": "object"},
        "version": _STR_OR_NULL,
    }),
    "TaskInstance": _obj({
        "dag_id": {"type": "string"}, "dag_run_id": {"type": "string"},
        "task_id": {"type": "string"}, "map_index": _INT, "state": {"type": "string"},
        "try_number": _INT, "max_tries": _INT, "operator": {"type": "string"},
        "pool": {"type": "string"}, "queue": {"type": "string"}, "start_date": _DT,
        "end_date": _DT, "duration": {"type": ["number", "null"]}, "hostname": _STR_OR_NULL,
        "defer_signal": _STR_OR_NULL,
    }),
    "TaskInstanceDetail": _obj({"task_instance": ref("TaskInstance"),
                                "attempts": {"type": "array", "items": ref("Attempt")}}),
    "Attempt": _obj({"try_number": _INT, "state": {"type": "string"}, "start_date": _DT,
                     "end_date": _DT, "hostname": _STR_OR_NULL, "error": _STR_OR_NULL}),
    "Log": _obj({"try_number": _INT, "content": _STR_OR_NULL, "note": _STR_OR_NULL,
                 "truncated": {"type": "boolean"}}),
    "XCom": _obj({"key": {"type": "string"}, "value": _ANY, "map_index": _INT,
                  "created_at": _DT}),
    "Event": _obj({"id": _INT, "when": _DT, "kind": {"type": "string"},
                   "dag_id": {"type": "string"}, "run_id": {"type": "string"},
                   "task_id": _STR_OR_NULL, "map_index": {"type": ["integer", "null"]},
                   "try_number": {"type": ["integer", "null"]}, "from_state": _STR_OR_NULL,
                   "to_state": {"type": "string"}, "reason": _STR_OR_NULL,
                   "actor": {"type": "string"}}),
    "Variable": _obj({"key": {"type": "string"}, "value": {"type": "string"},
                      "description": _STR_OR_NULL}),
    "Pool": _obj({"name": {"type": "string"}, "slots": _INT, "description": _STR_OR_NULL,
                  "running_slots": _INT, "queued_slots": _INT}),
    "Connection": _obj({"connection_id": {"type": "string"}, "conn_type": {"type": "string"},
                        "host": _STR_OR_NULL, "schema": _STR_OR_NULL, "login": _STR_OR_NULL,
                        "password": _STR_OR_NULL, "port": {"type": ["integer", "null"]},
                        "extra": {"type": ["object", "null"]}}),
    "ImportError": _obj({"filename": {"type": "string"}, "lineno": {"type": ["integer", "null"]},
                         "message": {"type": "string"}, "stack_trace": {"type": "string"},
                         "timestamp": _DT}),
    "AuditEntry": _obj({"id": _INT, "when": _DT, "actor": {"type": "string"},
                        "action": {"type": "string"}, "dag_id": _STR_OR_NULL,
                        "run_id": _STR_OR_NULL, "task_id": _STR_OR_NULL, "detail": _ANY}),
    "Signal": _obj({"dag_id": {"type": "string"}, "dag_run_id": {"type": "string"},
                    "name": {"type": "string"}, "payload": _ANY, "sent_at": _DT,
                    "sent_by": {"type": "string"}}),
    "PendingSignal": _obj({"dag_id": {"type": "string"}, "dag_run_id": {"type": "string"},
                           "task_id": {"type": "string"}, "map_index": _INT,
                           "signal": {"type": "string"}, "timeout_at": _DT}),
    "ClearResult": _obj({"task_instances": {"type": "array", "items": ref("TaskInstance")},
                         "dry_run": {"type": "boolean"}}),
    "Health": _obj({"status": {"type": "string"}, "store": {"type": "string"}}),
})
for _name in ("Dag", "DagRun", "TaskInstance", "Event", "Variable", "Pool", "Connection",
              "ImportError", "AuditEntry", "XCom", "PendingSignal"):
    COMPONENTS[f"{_name}Page"] = _page(_name)


def dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def dag_json(d: DagModel) -> dict[str, Any]:
    return {"dag_id": d.dag_id, "is_paused": bool(d.is_paused), "is_active": bool(d.is_active),
            "schedule": d.schedule, "timezone": d.timezone, "description": d.description,
            "tags": list(d.tags or []), "fileloc": d.fileloc,
            "next_logical_date": dt(d.next_logical_date), "next_run_after": dt(d.next_run_after),
            "last_parsed_at": dt(d.last_parsed_at), "max_active_runs": d.max_active_runs,
            "max_active_tasks": d.max_active_tasks}


def run_json(r: DagRun, versions: dict[int, str]) -> dict[str, Any]:
    return {"dag_id": r.dag_id, "dag_run_id": r.run_id, "state": r.state,
            "run_type": r.run_type, "logical_date": dt(r.logical_date),
            "data_interval_start": dt(r.data_interval_start),
            "data_interval_end": dt(r.data_interval_end), "queued_at": dt(r.queued_at),
            "start_date": dt(r.start_date), "end_date": dt(r.end_date),
            "conf": r.conf if isinstance(r.conf, dict) else {},
            "version": versions.get(r.version_id)}


def ti_json(t: TaskInstance) -> dict[str, Any]:
    return {"dag_id": t.dag_id, "dag_run_id": t.run_id, "task_id": t.task_id,
            "map_index": t.map_index, "state": t.state, "try_number": t.try_number,
            "max_tries": t.max_tries, "operator": t.operator, "pool": t.pool, "queue": t.queue,
            "start_date": dt(t.start_date), "end_date": dt(t.end_date),
            "duration": t.duration, "hostname": t.hostname, "defer_signal": t.defer_signal}


def attempt_json(a: TaskAttempt) -> dict[str, Any]:
    return {"try_number": a.try_number, "state": a.state, "start_date": dt(a.start_date),
            "end_date": dt(a.end_date), "hostname": a.hostname, "error": a.error}


def xcom_json(x: XCom) -> dict[str, Any]:
    return {"key": x.key, "value": x.value, "map_index": x.map_index,
            "created_at": dt(x.created_at)}


def event_json(e: Event) -> dict[str, Any]:
    return {"id": e.id, "when": dt(e.when), "kind": e.kind, "dag_id": e.dag_id,
            "run_id": e.run_id, "task_id": e.task_id, "map_index": e.map_index,
            "try_number": e.try_number, "from_state": e.from_state, "to_state": e.to_state,
            "reason": e.reason, "actor": e.actor}


def variable_json(v: Variable) -> dict[str, Any]:
    return {"key": v.key, "value": v.val, "description": v.description}


def pool_json(p: Pool, usage: dict[str, dict[str, int]]) -> dict[str, Any]:
    used = usage.get(p.name, {})
    return {"name": p.name, "slots": p.slots, "description": p.description,
            "running_slots": used.get("running", 0), "queued_slots": used.get("queued", 0)}


def mask_extra(extra: Any) -> Any:
    """``extra`` with the values of secret-looking keys replaced by ``***``."""
    if not isinstance(extra, dict):
        return extra
    secret_words = ("password", "secret", "token", "key", "credential", "private")
    return {k: (MASK if any(w in str(k).lower() for w in secret_words) and v else
                mask_extra(v)) for k, v in extra.items()}


def connection_json(c: Connection) -> dict[str, Any]:
    """A connection with its password (and secret-looking extras) masked: never sent out."""
    return {"connection_id": c.conn_id, "conn_type": c.conn_type, "host": c.host,
            "schema": c.schema, "login": c.login, "password": MASK if c.password else None,
            "port": c.port, "extra": mask_extra(c.extra) if isinstance(c.extra, dict) else None}


def import_error_json(e: ImportErrorRecord) -> dict[str, Any]:
    return {"filename": e.fileloc, "lineno": e.lineno, "message": e.message,
            "stack_trace": e.traceback, "timestamp": dt(e.timestamp)}


def audit_json(a: AuditLog) -> dict[str, Any]:
    return {"id": a.id, "when": dt(a.when), "actor": a.actor, "action": a.action,
            "dag_id": a.dag_id, "run_id": a.run_id, "task_id": a.task_id, "detail": a.detail}


def signal_json(s: Any) -> dict[str, Any]:
    return {"dag_id": s.dag_id, "dag_run_id": s.run_id, "name": s.name, "payload": s.payload,
            "sent_at": dt(s.sent_at), "sent_by": s.sent_by}


def pending_json(t: TaskInstance) -> dict[str, Any]:
    return {"dag_id": t.dag_id, "dag_run_id": t.run_id, "task_id": t.task_id,
            "map_index": t.map_index, "signal": t.defer_signal or "",
            "timeout_at": dt(t.defer_timeout_at)}

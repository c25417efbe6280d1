"""The endpoints of ``/api/v1``: DAGs, runs, task instances, signals, variables, pools,
connections, import errors, events, the audit log and health.

Reads go through ``scheduler.store.queries`` in read-only sessions; writes through
:mod:`webui.ops`, as the pages' forms do.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from scheduler.core.serialized import SerializedDag
from scheduler.store import queries
from scheduler.store.db import session_scope
from scheduler.store.models import DagVersion
from webui import ops, reads, web_context
from webui.api import ApiError, endpoint
from webui.api import models as m
from webui.api.schema import Param, parse_datetime, ref
from webui.auth import actor
from webui.logs import read_log_tail
from webui.users import Role

_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000,
                                  "default": 100}, "Page size")
_OFFSET = Param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 10**9,
                                    "default": 0}, "How many to skip")
_MAP_INDEX = Param("map_index", "query", {"type": "integer", "minimum": -1,
                                          "maximum": 10**6, "default": -1},
                   "Map index of a mapped task instance (-1: not mapped)")
_RUN_STATES = ["queued", "running", "success", "failed", "compensating", "compensated"]
_NAME = {"type": "string", "minLength": 1, "maxLength": 250}
_EMPTY_BODY = {"type": "object", "additionalProperties": False, "properties": {}}


def _ctx() -> Any:
    return web_context()


def _page(items: list[Any], total: int) -> dict[str, Any]:
    return {"items": items, "total_entries": total}


def _dt(query: dict[str, Any], name: str) -> Any:
    value = query.get(name)
    return None if value is None else parse_datetime(value)


# Health and DAGs -------------------------------------------------------------------------------

@endpoint("GET", "/health", summary="Is the server up and the store readable", role=None,
          ok=(200, "Healthy", ref("Health")), tag="health",
          extra={503: ("The store cannot be read", ref("Health"))})
def get_health(query: dict[str, Any], body: None) -> Any:
    try:
        with session_scope(_ctx().engine, readonly=True) as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        response: Response = jsonify(status="error", store="unavailable")
        response.status_code = 503
        return response
    return {"status": "ok", "store": "ok"}


@endpoint("GET", "/dags", summary="List DAGs", role=Role.VIEWER, tag="dags",
          params=[_LIMIT, _OFFSET,
                  Param("tag", "query", {"type": "string", "maxLength": 250}, "Only this tag"),
                  Param("paused", "query", {"type": "boolean"}, "Only (un)paused DAGs"),
                  Param("dag_id_pattern", "query", {"type": "string", "maxLength": 250},
                        "Only DAG ids containing this text"),
                  Param("include_inactive", "query", {"type": "boolean", "default": False})],
          ok=(200, "A page of DAGs", ref("DagPage")))
def get_dags(query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        dags = queries.list_dags(session, include_inactive=query["include_inactive"])
    if "tag" in query:
        dags = [d for d in dags if query["tag"] in (d.tags or [])]
    if "paused" in query:
        dags = [d for d in dags if bool(d.is_paused) == query["paused"]]
    if query.get("dag_id_pattern"):
        dags = [d for d in dags if query["dag_id_pattern"].lower() in d.dag_id.lower()]
    window = dags[query["offset"]:query["offset"] + query["limit"]]
    return _page([m.dag_json(d) for d in window], len(dags))


@endpoint("GET", "/dags/{dag_id}", summary="One DAG with its tasks and params",
          role=Role.VIEWER, tag="dags", ok=(200, "The DAG", ref("DagDetail")))
def get_dag(dag_id: str, query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        version = reads.latest_version(session, dag)
    sdag = SerializedDag.from_dict(version.serialized) if version else None
    tasks = [{"task_id": t.task_id, "operator": t.operator, "upstream": list(t.upstream),
              "downstream": list(t.downstream), "trigger_rule": t.trigger_rule,
              "retries": t.retries} for t in (sdag.tasks if sdag else ())]
    return {"dag": m.dag_json(dag), "version": version.version if version else None,
            "params": dict(sdag.params) if sdag else {}, "tasks": tasks}


@endpoint("PATCH", "/dags/{dag_id}", summary="Pause or unpause a DAG", role=Role.OPERATOR,
          tag="dags", body={"type": "object", "additionalProperties": False,
                            "required": ["is_paused"],
                            "properties": {"is_paused": {"type": "boolean"}}},
          ok=(200, "The DAG after the change", ref("Dag")))
def patch_dag(dag_id: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    ctx = _ctx()
    ops.set_paused(ctx.engine, ctx.settings, dag_id, body["is_paused"], actor=actor())
    with session_scope(ctx.engine, readonly=True) as session:
        return m.dag_json(queries.get_dag(session, dag_id))


# Runs ------------------------------------------------------------------------------------------

@endpoint("GET", "/dags/{dag_id}/dagRuns", summary="List a DAG's runs", role=Role.VIEWER,
          tag="runs",
          params=[_LIMIT, _OFFSET,
                  Param("state", "query", {"type": "string", "enum": _RUN_STATES}),
                  Param("run_type", "query", {"type": "string", "enum": [
                      "manual", "scheduled", "backfill"]}),
                  Param("logical_date_gte", "query", {"type": "string", "format": "date-time"}),
                  Param("logical_date_lte", "query", {"type": "string", "format": "date-time"}),
                  Param("order_by", "query", {"type": "string", "default": "-logical_date",
                                              "enum": list(queries.RUN_ORDERINGS)})],
          ok=(200, "A page of runs, newest first by default", ref("DagRunPage")))
def get_dag_runs(dag_id: str, query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        queries.get_dag(session, dag_id)
        runs, total = queries.runs_page(
            session, dag_id, limit=query["limit"], offset=query["offset"],
            states=[query["state"]] if "state" in query else None,
            run_types=[query["run_type"]] if "run_type" in query else None,
            since=_dt(query, "logical_date_gte"), until=_dt(query, "logical_date_lte"),
            order_by=query["order_by"])
        versions = queries.version_labels(session, {r.version_id for r in runs})
    return _page([m.run_json(r, versions) for r in runs], total)


@endpoint("POST", "/dags/{dag_id}/dagRuns", summary="Trigger a run", role=Role.OPERATOR,
          tag="runs",
          body={"type": "object", "additionalProperties": False, "properties": {
              "conf": {"type": "object"}, "dag_run_id": _NAME,
              "logical_date": {"type": "string", "format": "date-time"}}},
          ok=(201, "The new run", ref("DagRun")),
          extra={409: ("The run id is taken", ref("Problem"))})
def post_dag_run(dag_id: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    ctx = _ctx()
    logical = parse_datetime(body["logical_date"]) if "logical_date" in body else None
    run = ops.trigger(ctx.engine, ctx.settings, dag_id, conf=body.get("conf"),
                      run_id=body.get("dag_run_id"), logical_date=logical, actor=actor())
    with session_scope(ctx.engine, readonly=True) as session:
        run = queries.get_run(session, dag_id, run.run_id)
        versions = queries.version_labels(session, {run.version_id})
    return m.run_json(run, versions)


def _run_json(dag_id: str, run_id: str) -> dict[str, Any]:
    with session_scope(_ctx().engine, readonly=True) as session:
        run = queries.get_run(session, dag_id, run_id)
        return m.run_json(run, queries.version_labels(session, {run.version_id}))


@endpoint("GET", "/dags/{dag_id}/dagRuns/{dag_run_id}", summary="One run", role=Role.VIEWER,
          tag="runs", ok=(200, "The run", ref("DagRun")))
def get_dag_run(dag_id: str, dag_run_id: str, query: dict[str, Any], body: None) -> Any:
    return _run_json(dag_id, dag_run_id)


@endpoint("PATCH", "/dags/{dag_id}/dagRuns/{dag_run_id}", summary="Mark a run success or failed",
          role=Role.OPERATOR, tag="runs",
          body={"type": "object", "additionalProperties": False, "required": ["state"],
                "properties": {"state": {"type": "string", "enum": list(ops.MARKABLE_RUN_STATES)}}},
          ok=(200, "The run after the change", ref("DagRun")),
          extra={409: ("Not a change the run can make", ref("Problem"))})
def patch_dag_run(dag_id: str, dag_run_id: str, query: dict[str, Any],
                  body: dict[str, Any]) -> Any:
    ctx = _ctx()
    ops.mark_run(ctx.engine, ctx.settings, dag_id, dag_run_id, state=body["state"],
                 actor=actor())
    return _run_json(dag_id, dag_run_id)


_CLEAR_BODY = {"type": "object", "additionalProperties": False, "properties": {
    "task_ids": {"type": "array", "items": _NAME, "maxLength": 1000},
    "only_failed": {"type": "boolean"}, "dry_run": {"type": "boolean"},
    "upstream": {"type": "boolean"}, "downstream": {"type": "boolean"}}}


@endpoint("POST", "/dags/{dag_id}/dagRuns/{dag_run_id}/clear",
          summary="Clear task instances of a run (all, or task_ids) so they run again",
          role=Role.OPERATOR, tag="runs", body=_CLEAR_BODY,
          ok=(200, "The task instances cleared (or that would be)", ref("ClearResult")))
def clear_dag_run(dag_id: str, dag_run_id: str, query: dict[str, Any],
                  body: dict[str, Any]) -> Any:
    ctx = _ctx()
    tis = ops.clear(ctx.engine, ctx.settings, dag_id, dag_run_id,
                    task_ids=body.get("task_ids"), upstream=body.get("upstream", False),
                    downstream=body.get("downstream", False),
                    only_failed=body.get("only_failed", False),
                    dry_run=body.get("dry_run", False), actor=actor())
    return {"task_instances": [m.ti_json(t) for t in tis], "dry_run": body.get("dry_run", False)}


@endpoint("POST", "/dags/{dag_id}/dagRuns/{dag_run_id}/compensate",
          summary="Run the saga compensations of a failed run", role=Role.OPERATOR, tag="runs",
          body=_EMPTY_BODY, ok=(200, "The run", ref("DagRun")),
          extra={409: ("The run cannot be compensated now", ref("Problem"))})
def compensate_dag_run(dag_id: str, dag_run_id: str, query: dict[str, Any], body: Any) -> Any:
    ctx = _ctx()
    ops.compensate(ctx.engine, ctx.settings, dag_id, dag_run_id, actor=actor())
    return _run_json(dag_id, dag_run_id)


@endpoint("GET", "/dags/{dag_id}/dagRuns/{dag_run_id}/events",
          summary="The event history of a run, oldest first", role=Role.VIEWER, tag="events",
          params=[_LIMIT, _OFFSET], ok=(200, "A page of events", ref("EventPage")))
def get_run_events(dag_id: str, dag_run_id: str, query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        run = queries.get_run(session, dag_id, dag_run_id)
        rows, total = queries.events_page(session, run_pk=run.id, limit=query["limit"],
                                          offset=query["offset"], newest_first=False)
    return _page([m.event_json(e) for e in rows], total)


# Task instances --------------------------------------------------------------------------------

_TI = "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}"


@endpoint("GET", "/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
          summary="The task instances of a run", role=Role.VIEWER, tag="task instances",
          params=[Param("state", "query", {"type": "string", "maxLength": 50})],
          ok=(200, "Every task instance of the run", ref("TaskInstancePage")))
def get_task_instances(dag_id: str, dag_run_id: str, query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        run = queries.get_run(session, dag_id, dag_run_id)
        tis = queries.task_instances(session, run)
    if "state" in query:
        tis = [t for t in tis if t.state == query["state"]]
    return _page([m.ti_json(t) for t in tis], len(tis))


@endpoint("GET", _TI, summary="One task instance with its attempts", role=Role.VIEWER,
          tag="task instances", params=[_MAP_INDEX],
          ok=(200, "The task instance", ref("TaskInstanceDetail")))
def get_task_instance(dag_id: str, dag_run_id: str, task_id: str, query: dict[str, Any],
                      body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        run = queries.get_run(session, dag_id, dag_run_id)
        ti = queries.get_task_instance(session, run, task_id, query["map_index"])
        attempts = queries.attempts(session, ti)
    return {"task_instance": m.ti_json(ti), "attempts": [m.attempt_json(a) for a in attempts]}


@endpoint("PATCH", _TI, summary="Mark a task instance success, failed or skipped",
          role=Role.OPERATOR, tag="task instances",
          body={"type": "object", "additionalProperties": False, "required": ["state"],
                "properties": {"state": {"type": "string",
                                         "enum": list(ops.MARKABLE_TASK_STATES)},
                               "map_index": {"type": "integer", "minimum": -1,
                                             "maximum": 10**6}}},
          ok=(200, "The task instance after the change", ref("TaskInstance")),
          extra={409: ("Not a change the task instance can make", ref("Problem"))})
def patch_task_instance(dag_id: str, dag_run_id: str, task_id: str, query: dict[str, Any],
                        body: dict[str, Any]) -> Any:
    ctx = _ctx()
    ti = ops.mark_task(ctx.engine, ctx.settings, dag_id, dag_run_id, task_id,
                       map_index=body.get("map_index", -1), state=body["state"], actor=actor())
    return m.ti_json(ti)


@endpoint("POST", _TI + "/clear", summary="Clear one task (and, as asked, its relatives)",
          role=Role.OPERATOR, tag="task instances",
          body={"type": "object", "additionalProperties": False, "properties": {
              "upstream": {"type": "boolean"}, "downstream": {"type": "boolean"},
              "only_failed": {"type": "boolean"}, "dry_run": {"type": "boolean"},
              "map_index": {"type": "integer", "minimum": -1, "maximum": 10**6}}},
          ok=(200, "The task instances cleared", ref("ClearResult")))
def clear_task_instance(dag_id: str, dag_run_id: str, task_id: str, query: dict[str, Any],
                        body: dict[str, Any]) -> Any:
    ctx = _ctx()
    tis = ops.clear(ctx.engine, ctx.settings, dag_id, dag_run_id, task_ids=[task_id],
                    map_index=body.get("map_index"), upstream=body.get("upstream", False),
                    downstream=body.get("downstream", False),
                    only_failed=body.get("only_failed", False),
                    dry_run=body.get("dry_run", False), actor=actor())
    return {"task_instances": [m.ti_json(t) for t in tis], "dry_run": body.get("dry_run", False)}


@endpoint("GET", _TI + "/logs/{try_number}", summary="The log of one attempt (its tail)",
          role=Role.VIEWER, tag="task instances", params=[_MAP_INDEX],
          ok=(200, "The log", ref("Log")))
def get_log(dag_id: str, dag_run_id: str, task_id: str, try_number: str, query: dict[str, Any],
            body: None) -> Any:
    if not try_number.isdigit() or len(try_number) > 6:
        raise ApiError(400, "Invalid try number", "try_number must be a positive integer")
    ctx = _ctx()
    with session_scope(ctx.engine, readonly=True) as session:
        run = queries.get_run(session, dag_id, dag_run_id)
        ti = queries.get_task_instance(session, run, task_id, query["map_index"])
        attempt = next((a for a in queries.attempts(session, ti)
                        if a.try_number == int(try_number)), None)
    if attempt is None:
        raise ApiError(404, "Not found", f"task {task_id!r} has no attempt {try_number}")
    view = read_log_tail(attempt.log_path, ctx.settings.base_log_folder)
    return {"try_number": attempt.try_number, "content": view.text, "note": view.note,
            "truncated": view.truncated}


@endpoint("GET", _TI + "/xcoms", summary="The XComs a task instance pushed", role=Role.VIEWER,
          tag="task instances", params=[_MAP_INDEX], ok=(200, "Its XComs", ref("XComPage")))
def get_xcoms(dag_id: str, dag_run_id: str, task_id: str, query: dict[str, Any],
              body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        run = queries.get_run(session, dag_id, dag_run_id)
        ti = queries.get_task_instance(session, run, task_id, query["map_index"])
        xcoms = reads.xcoms_of(session, ti)
    return _page([m.xcom_json(x) for x in xcoms], len(xcoms))


# Signals ---------------------------------------------------------------------------------------

@endpoint("GET", "/signals/pending", summary="Task instances waiting for a signal",
          role=Role.VIEWER, tag="signals",
          ok=(200, "Deferred task instances and the signal each waits for",
              ref("PendingSignalPage")))
def get_pending_signals(query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        waiting = queries.deferred_task_instances(session)
    return _page([m.pending_json(t) for t in waiting], len(waiting))


@endpoint("POST", "/dags/{dag_id}/dagRuns/{dag_run_id}/signals",
          summary="Send a named signal (with a JSON payload) to a run", role=Role.OPERATOR,
          tag="signals",
          body={"type": "object", "additionalProperties": False, "required": ["name"],
                "properties": {"name": _NAME, "payload": {}}},
          ok=(201, "The signal sent", ref("Signal")))
def post_signal(dag_id: str, dag_run_id: str, query: dict[str, Any],
                body: dict[str, Any]) -> Any:
    ctx = _ctx()
    sig = ops.send_signal(ctx.engine, ctx.settings, dag_id, dag_run_id, body["name"],
                          payload=body.get("payload"), actor=actor())
    return m.signal_json(sig)


# Variables, pools, connections ---------------------------------------------------------------

@endpoint("GET", "/variables", summary="List variables", role=Role.VIEWER, tag="variables",
          params=[_LIMIT, _OFFSET], ok=(200, "A page of variables", ref("VariablePage")))
def get_variables(query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        rows = queries.list_variables(session)
    window = rows[query["offset"]:query["offset"] + query["limit"]]
    return _page([m.variable_json(v) for v in window], len(rows))


@endpoint("GET", "/variables/{key}", summary="One variable", role=Role.VIEWER,
          tag="variables", ok=(200, "The variable", ref("Variable")))
def get_variable(key: str, query: dict[str, Any], body: None) -> Any:
    from scheduler.errors import NotFound
    from scheduler.store.models import Variable

    with session_scope(_ctx().engine, readonly=True) as session:
        row = session.get(Variable, key)
        if row is None:
            raise NotFound(f"no variable {key!r}")
        return m.variable_json(row)


@endpoint("PUT", "/variables/{key}", summary="Create or replace a variable",
          role=Role.OPERATOR, tag="variables",
          body={"type": "object", "additionalProperties": False, "required": ["value"],
                "properties": {"value": {"type": "string", "maxLength": 1_000_000},
                               "description": {"type": ["string", "null"], "maxLength": 5000}}},
          ok=(200, "The variable", ref("Variable")))
def put_variable(key: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    if len(key) > 250:
        raise ApiError(400, "Invalid key", "a variable key has at most 250 characters")
    ops.put_variable(_ctx().engine, key, body["value"], body.get("description"), actor=actor())
    return {"key": key, "value": body["value"], "description": body.get("description")}


@endpoint("DELETE", "/variables/{key}", summary="Delete a variable", role=Role.OPERATOR,
          tag="variables", ok=(204, "Deleted", None))
def delete_variable(key: str, query: dict[str, Any], body: None) -> Any:
    ops.delete_variable(_ctx().engine, key, actor=actor())
    return Response(status=204)


@endpoint("GET", "/pools", summary="List pools with their slots in use", role=Role.VIEWER,
          tag="pools", params=[_LIMIT, _OFFSET], ok=(200, "A page of pools", ref("PoolPage")))
def get_pools(query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        rows = queries.list_pools(session)
        usage = queries.pool_usage(session)
    window = rows[query["offset"]:query["offset"] + query["limit"]]
    return _page([m.pool_json(p, usage) for p in window], len(rows))


@endpoint("PUT", "/pools/{name}", summary="Create or resize a pool", role=Role.OPERATOR,
          tag="pools",
          body={"type": "object", "additionalProperties": False, "required": ["slots"],
                "properties": {"slots": {"type": "integer", "minimum": 0, "maximum": 100_000},
                               "description": {"type": ["string", "null"], "maxLength": 5000}}},
          ok=(200, "The pool", ref("Pool")))
def put_pool(name: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    if len(name) > 250:
        raise ApiError(400, "Invalid name", "a pool name has at most 250 characters")
    ops.put_pool(_ctx().engine, name, body["slots"], body.get("description"), actor=actor())
    return {"name": name, "slots": body["slots"], "description": body.get("description"),
            "running_slots": 0, "queued_slots": 0}


@endpoint("DELETE", "/pools/{name}", summary="Delete a pool", role=Role.OPERATOR, tag="pools",
          ok=(204, "Deleted", None), extra={409: ("The default pool stays", ref("Problem"))})
def delete_pool(name: str, query: dict[str, Any], body: None) -> Any:
    ops.delete_pool(_ctx().engine, name, actor=actor())
    return Response(status=204)


@endpoint("GET", "/connections", summary="List connections (passwords masked)",
          role=Role.VIEWER, tag="connections", params=[_LIMIT, _OFFSET],
          ok=(200, "A page of connections", ref("ConnectionPage")))
def get_connections(query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        rows = queries.list_connections(session)
    window = rows[query["offset"]:query["offset"] + query["limit"]]
    return _page([m.connection_json(c) for c in window], len(rows))


@endpoint("PUT", "/connections/{connection_id}", summary="Create or replace a connection",
          role=Role.ADMIN, tag="connections",
          body={"type": "object", "additionalProperties": False, "required": ["conn_type"],
                "properties": {
                    "conn_type": {"type": "string", "minLength": 1, "maxLength": 100},
                    "host": {"type": ["string", "null"], "maxLength": 500},
                    "schema": {"type": ["string", "null"], "maxLength": 500},
                    "login": {"type": ["string", "null"], "maxLength": 500},
                    "password": {"type": ["string", "null"], "maxLength": 5000},
                    "port": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535},
                    "extra": {"type": ["object", "null"]}}},
          ok=(200, "The connection (password masked)", ref("Connection")))
def put_connection(connection_id: str, query: dict[str, Any], body: dict[str, Any]) -> Any:
    from scheduler.store.models import Connection

    if len(connection_id) > 250:
        raise ApiError(400, "Invalid id", "a connection id has at most 250 characters")
    ctx = _ctx()
    ops.put_connection(ctx.engine, connection_id, body, actor=actor())
    with session_scope(ctx.engine, readonly=True) as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        return m.connection_json(row)


@endpoint("DELETE", "/connections/{connection_id}", summary="Delete a connection",
          role=Role.ADMIN, tag="connections", ok=(204, "Deleted", None))
def delete_connection(connection_id: str, query: dict[str, Any], body: None) -> Any:
    ops.delete_connection(_ctx().engine, connection_id, actor=actor())
    return Response(status=204)


# Import errors, events, audit log ----------------------------------------------------------------

@endpoint("GET", "/importErrors", summary="DAG files that failed to import", role=Role.VIEWER,
          tag="dags", ok=(200, "Import errors", ref("ImportErrorPage")))
def get_import_errors(query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        rows = queries.import_errors(session)
    return _page([m.import_error_json(e) for e in rows], len(rows))


@endpoint("GET", "/events", summary="State changes, newest first", role=Role.VIEWER,
          tag="events",
          params=[_LIMIT, _OFFSET, Param("dag_id", "query", {"type": "string", "maxLength": 250})],
          ok=(200, "A page of events", ref("EventPage")))
def get_events(query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        rows, total = queries.events_page(session, dag_id=query.get("dag_id"),
                                          limit=query["limit"], offset=query["offset"])
    return _page([m.event_json(e) for e in rows], total)


@endpoint("GET", "/auditLog", summary="Who changed what, newest first", role=Role.ADMIN,
          tag="events",
          params=[_LIMIT, _OFFSET, Param("dag_id", "query", {"type": "string", "maxLength": 250})],
          ok=(200, "A page of audit entries", ref("AuditEntryPage")))
def get_audit_log(query: dict[str, Any], body: None) -> Any:
    with session_scope(_ctx().engine, readonly=True) as session:
        rows, total = queries.audit_page(session, dag_id=query.get("dag_id"),
                                         limit=query["limit"], offset=query["offset"])
    return _page([m.audit_json(a) for a in rows], total)


@endpoint("GET", "/dags/{dag_id}/versions/{version}/source",
          summary="The source of one version of a DAG's file", role=Role.VIEWER, tag="dags",
          ok=(200, "The source", {"type": "object", "required": ["version", "source"],
                                  "properties": {"version": {"type": "string"},
                                                 "source": {"type": "string"}}}))
def get_source(dag_id: str, version: str, query: dict[str, Any], body: None) -> Any:
    from sqlalchemy import select

    from scheduler.errors import NotFound

    with session_scope(_ctx().engine, readonly=True) as session:
        row = session.scalars(select(DagVersion).where(
            DagVersion.dag_id == dag_id, DagVersion.version == version)).first()
        if row is None:
            raise NotFound(f"DAG {dag_id!r} has no version {version!r}")
        return {"version": row.version, "source": row.source}

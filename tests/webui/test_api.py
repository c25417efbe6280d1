"""The REST API under /api/v1, with a bearer token, against a real temporary store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from scheduler.config import Settings
from scheduler.core.states import RunState, TaskState
from scheduler.store.db import session_scope
from scheduler.store.models import AuditLog, Connection, DagRun, TaskInstance
from webui.api.schema import ROUTES, validate
from webui.users import create_token, create_user

RUN_ID = "manual__2024-01-01T00:00:00+00:00"


class Api:
    """A test client that sends a bearer token and checks each answer against the schema
    the OpenAPI document gives for its status."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self.client.open("/api/v1" + url, method=method, headers=self.headers,
                                    **kwargs)
        assert response.status_code < 500, response.get_data(as_text=True)
        if response.status_code >= 400:
            assert response.mimetype == "application/problem+json"
            assert not validate(response.get_json(), {"$ref": "#/components/schemas/Problem"})
        else:
            schema = _response_schema(method, url, response.status_code)
            if schema is not None:
                errors = validate(response.get_json(), schema)
                assert not errors, errors
        return response


def _response_schema(method: str, url: str, status: int) -> Any:
    import re

    path = url.split("?", 1)[0]
    for route in ROUTES:
        pattern = "^" + re.sub(r"{\w+}", "[^/]+", route.path) + "$"
        if route.method == method and re.match(pattern, path):
            return route.responses.get(status, ("", None))[1]
    raise AssertionError(f"no route for {method} {url}")


def _api(app: Flask, engine: Engine, role: str) -> Api:
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        user = create_user(session, f"api-{role}", "x" * 12, role, now=now)
        token = create_token(session, user, "test", now=now)
    return Api(app.test_client(), token)


@pytest.fixture
def api(app: Flask, engine: Engine) -> Api:
    return _api(app, engine, "admin")


def test_openapi_document_lists_every_endpoint(anon: FlaskClient) -> None:
    doc = anon.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in (("/dags", "get"), ("/dags/{dag_id}", "patch"),
                         ("/dags/{dag_id}/dagRuns", "post"),
                         ("/dags/{dag_id}/dagRuns/{dag_run_id}/clear", "post"),
                         ("/dags/{dag_id}/dagRuns/{dag_run_id}/compensate", "post"),
                         ("/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", "patch"),
                         ("/signals/pending", "get"), ("/variables/{key}", "put"),
                         ("/pools", "get"), ("/connections", "get"), ("/importErrors", "get"),
                         ("/events", "get"), ("/health", "get")):
        assert method in paths[path], (path, method)
    trigger = paths["/dags/{dag_id}/dagRuns"]["post"]
    body = trigger["requestBody"]["content"]["application/json"]["schema"]
    assert body["additionalProperties"] is False and "conf" in body["properties"]


def test_dags_list_get_and_pause(api: Api, store: Any, engine: Engine) -> None:
    store.dag()
    store.dag(store.etl_dag("other", tags=["x"]))
    page = api.call("GET", "/dags?limit=1").get_json()
    assert page["total_entries"] == 2 and [d["dag_id"] for d in page["items"]] == ["etl"]
    assert [d["dag_id"] for d in api.call("GET", "/dags?tag=x").get_json()["items"]] == ["other"]
    detail = api.call("GET", "/dags/etl").get_json()
    assert [t["task_id"] for t in detail["tasks"]] == ["extract", "transform", "load"]
    paused = api.call("PATCH", "/dags/etl", json={"is_paused": True}).get_json()
    assert paused["is_paused"] is True
    assert api.call("GET", "/dags?paused=true").get_json()["items"][0]["dag_id"] == "etl"
    with session_scope(engine, readonly=True) as session:
        [entry] = session.scalars(select(AuditLog)).all()
    assert (entry.action, entry.dag_id, entry.actor) == ("pause", "etl", "api:api-admin")


def test_bad_input_gets_a_problem_naming_the_field(api: Api, store: Any) -> None:
    store.dag()
    cases = [
        ("GET", "/dags?limit=0", None), ("GET", "/dags?limit=abc", None),
        ("GET", "/dags/etl/dagRuns?state=bogus", None),
        ("GET", "/dags/etl/dagRuns?logical_date_gte=yesterday", None),
        ("PATCH", "/dags/etl", {"is_paused": "yes"}),
        ("PATCH", "/dags/etl", {"is_paused": True, "extra": 1}),
        ("POST", "/dags/etl/dagRuns", {"conf": []}),
        ("POST", "/dags/etl/dagRuns", {"logical_date": "2024-01-01"}),
    ]
    for method, url, body in cases:
        response = api.call(method, url, json=body)
        assert response.status_code == 400, (method, url)
        assert response.get_json()["detail"], (method, url)
    not_json = api.call("POST", "/dags/etl/dagRuns", data="{nope",
                        content_type="application/json")
    assert not_json.status_code == 400 and not_json.get_json()["title"] == "Invalid JSON"
    assert api.call("GET", "/dags/nope").status_code == 404
    assert api.call("GET", "/nothing/here").status_code == 404


def test_trigger_validates_conf_against_params(api: Api, store: Any, engine: Engine,
                                               settings: Settings) -> None:
    store.dag(store.etl_dag(params={"n": {"default": 3, "type": "integer",
                                          "description": None}}))
    bad = api.call("POST", "/dags/etl/dagRuns", json={"conf": {"n": "many"}})
    assert bad.status_code == 400 and "'n'" in bad.get_json()["detail"]
    made = api.call("POST", "/dags/etl/dagRuns", json={
        "conf": {"n": 5}, "dag_run_id": "r1", "logical_date": "2024-02-01T00:00:00Z"})
    assert made.status_code == 201
    run = made.get_json()
    assert (run["dag_run_id"], run["state"], run["conf"]) == ("r1", "queued", {"n": 5})
    assert run["logical_date"].startswith("2024-02-01T00:00:00")
    again = api.call("POST", "/dags/etl/dagRuns", json={"dag_run_id": "r1"})
    assert again.status_code == 409
    assert api.call("GET", "/dags/etl/dagRuns/r1").get_json()["dag_run_id"] == "r1"


def test_runs_list_paginates_filters_and_orders(api: Api, store: Any) -> None:
    store.dag()
    for i in range(7):
        pk = store.run("etl", f"r{i}", store.T0 + timedelta(days=i),
                       {"extract": TaskState.SUCCESS})
        if i % 2:
            store.finish_run(pk, RunState.FAILED, store.T0 + timedelta(days=i, hours=1))
    page = api.call("GET", "/dags/etl/dagRuns?limit=3&offset=1").get_json()
    assert page["total_entries"] == 7
    assert [r["dag_run_id"] for r in page["items"]] == ["r5", "r4", "r3"]
    failed = api.call("GET", "/dags/etl/dagRuns?state=failed&order_by=logical_date").get_json()
    assert [r["dag_run_id"] for r in failed["items"]] == ["r1", "r3", "r5"]
    ranged = api.call("GET", "/dags/etl/dagRuns?logical_date_gte=2024-01-03T00:00:00Z"
                             "&logical_date_lte=2024-01-04T00:00:00%2B00:00").get_json()
    assert [r["dag_run_id"] for r in ranged["items"]] == ["r3", "r2"]
    assert api.call("GET", "/dags/etl/dagRuns?run_type=backfill").get_json()["items"] == []


def test_task_instances_clear_mark_logs_and_xcoms(api: Api, store: Any, engine: Engine,
                                                  settings: Settings) -> None:
    store.dag()
    pk = store.run("etl", RUN_ID, store.T0)
    logs = settings.base_log_folder
    logs.mkdir(parents=True)
    (logs / "x.log").write_text("hello from extract\n")
    store.walk(pk, "extract", TaskState.SUCCESS, store.T0, log_path=str(logs / "x.log"),
               xcoms={"return_value": [1, 2]})
    store.walk(pk, "transform", TaskState.FAILED, store.T0)
    base = f"/dags/etl/dagRuns/{RUN_ID}/taskInstances"
    listed = api.call("GET", base).get_json()
    assert {t["task_id"]: t["state"] for t in listed["items"]} == {
        "extract": "success", "transform": "failed", "load": "none"}
    detail = api.call("GET", f"{base}/extract").get_json()
    assert detail["attempts"][0]["try_number"] == 1
    log = api.call("GET", f"{base}/extract/logs/1").get_json()
    assert log["content"] == "hello from extract\n"
    assert api.call("GET", f"{base}/extract/logs/9").status_code == 404
    assert api.call("GET", f"{base}/extract/logs/x").status_code == 400
    xcoms = api.call("GET", f"{base}/extract/xcoms").get_json()
    assert xcoms["items"][0]["value"] == [1, 2]
    dry = api.call("POST", f"{base}/extract/clear",
                   json={"downstream": True, "dry_run": True}).get_json()
    # load has no state yet: nothing to clear there.
    assert sorted(t["task_id"] for t in dry["task_instances"]) == ["extract", "transform"]
    marked = api.call("PATCH", f"{base}/transform", json={"state": "success"}).get_json()
    assert marked["state"] == "success"
    assert api.call("PATCH", f"{base}/transform", json={"state": "running"}).status_code == 400
    cleared = api.call("POST", f"/dags/etl/dagRuns/{RUN_ID}/clear",
                       json={"task_ids": ["extract"]}).get_json()
    assert [t["task_id"] for t in cleared["task_instances"]] == ["extract"]
    with session_scope(engine, readonly=True) as session:
        ti = session.scalars(select(TaskInstance).where(TaskInstance.task_id == "extract")).one()
        assert ti.state == "none"
    events = api.call("GET", f"/dags/etl/dagRuns/{RUN_ID}/events").get_json()
    assert events["items"][-1]["actor"] == "api:api-admin"
    assert api.call("GET", "/events?dag_id=etl&limit=2").get_json()["total_entries"] > 2


def test_marking_a_task_of_a_finished_run_lets_the_scheduler_decide_again(
        api: Api, store: Any, engine: Engine) -> None:
    store.dag()
    pk = store.run("etl", RUN_ID, store.T0, {"extract": TaskState.FAILED})
    store.finish_run(pk, RunState.FAILED, store.T0 + timedelta(minutes=1))
    api.call("PATCH", f"/dags/etl/dagRuns/{RUN_ID}/taskInstances/extract",
             json={"state": "success"})
    with session_scope(engine, readonly=True) as session:
        assert session.get(DagRun, pk).state == "queued"  # type: ignore[union-attr]
    marked = api.call("PATCH", f"/dags/etl/dagRuns/{RUN_ID}", json={"state": "failed"})
    assert marked.get_json()["state"] == "failed"


def test_variables_pools_and_connections_with_secrets_masked(api: Api, engine: Engine) -> None:
    assert api.call("PUT", "/variables/greeting", json={"value": "hi"}).status_code == 200
    assert api.call("GET", "/variables/greeting").get_json()["value"] == "hi"
    assert api.call("GET", "/variables").get_json()["total_entries"] == 1
    assert api.call("DELETE", "/variables/greeting").status_code == 204
    assert api.call("GET", "/variables/greeting").status_code == 404
    assert api.call("PUT", "/pools/db", json={"slots": 2}).get_json()["slots"] == 2
    assert api.call("PUT", "/pools/db", json={"slots": -1}).status_code == 400
    assert [p["name"] for p in api.call("GET", "/pools").get_json()["items"]] == [
        "db", "default_pool"]
    conn = api.call("PUT", "/connections/warehouse", json={
        "conn_type": "postgres", "host": "db", "password": "hunter2",
        "extra": {"api_key": "k-123", "region": "eu"}}).get_json()
    assert conn["password"] == "***" and conn["extra"] == {"api_key": "***", "region": "eu"}
    listed = api.call("GET", "/connections").get_data(as_text=True)
    assert "hunter2" not in listed and "k-123" not in listed
    with session_scope(engine, readonly=True) as session:
        assert session.get(Connection, "warehouse").password == "hunter2"  # type: ignore[union-attr]
    assert api.call("DELETE", "/connections/warehouse").status_code == 204


def test_roles_on_the_api(app: Flask, engine: Engine, store: Any) -> None:
    store.dag()
    viewer, operator = _api(app, engine, "viewer"), _api(app, engine, "operator")
    assert viewer.call("GET", "/dags/etl/dagRuns").status_code == 200
    assert viewer.call("POST", "/dags/etl/dagRuns", json={}).status_code == 403
    assert operator.call("POST", "/dags/etl/dagRuns", json={}).status_code == 201
    assert operator.call("PUT", "/connections/c", json={"conn_type": "x"}).status_code == 403
    assert operator.call("GET", "/auditLog").status_code == 403
    assert viewer.call("GET", "/connections").status_code == 200


def test_import_errors_pending_signals_and_health(api: Api, store: Any, engine: Engine) -> None:
    from scheduler.store.dags import set_import_error

    with session_scope(engine) as session:
        set_import_error(session, fileloc="/dags/bad.py", message="boom", lineno=3,
                         traceback="tb", now=store.T0)
    errors = api.call("GET", "/importErrors").get_json()["items"]
    assert errors[0]["filename"] == "/dags/bad.py" and errors[0]["lineno"] == 3
    store.dag()
    pk = store.run("etl", RUN_ID, store.T0)
    store.walk(pk, "extract", TaskState.RUNNING, store.T0)
    from scheduler.store import commands

    with session_scope(engine) as session:
        ti = session.scalars(select(TaskInstance).where(
            TaskInstance.run_pk == pk, TaskInstance.task_id == "extract")).one()
        commands.set_task_state(session, ti, TaskState.DEFERRED, now=store.T0, reason="wait",
                                actor="test")
        ti.defer_signal = "approval"
    pending = api.call("GET", "/signals/pending").get_json()["items"]
    assert pending == [{"dag_id": "etl", "dag_run_id": RUN_ID, "task_id": "extract",
                        "map_index": -1, "signal": "approval", "timeout_at": None}]
    assert api.call("GET", "/health").get_json() == {"status": "ok", "store": "ok"}


def test_runs_list_issues_a_fixed_number_of_statements(api: Api, store: Any,
                                                       engine: Engine) -> None:
    from tests.webui.test_pages import count_statements

    store.dag()
    counts = []
    for n in (2, 30):
        for i in range(n):
            store.run("etl", f"r{n}-{i}", store.T0 + timedelta(days=i))
        with count_statements(engine) as statements:
            api.call("GET", "/dags/etl/dagRuns?limit=100")
        counts.append(len(statements))
    assert counts[0] == counts[1] and counts[0] <= 8


def test_send_a_signal_and_compensate_through_the_api(api: Api, store: Any,
                                                      engine: Engine) -> None:
    from scheduler.store import commands

    store.dag()
    pk = store.run("etl", RUN_ID, store.T0, {"extract": TaskState.RUNNING})
    with session_scope(engine) as session:
        ti = session.scalars(select(TaskInstance).where(
            TaskInstance.run_pk == pk, TaskInstance.task_id == "extract")).one()
        commands.set_task_state(session, ti, TaskState.DEFERRED, now=store.T0, reason="wait",
                                actor="test")
        ti.defer_signal = "approval"
    sent = api.call("POST", f"/dags/etl/dagRuns/{RUN_ID}/signals",
                    json={"name": "approval", "payload": {"approved": True}})
    assert sent.status_code == 201 and sent.get_json()["sent_by"] == "api:api-admin"
    with session_scope(engine, readonly=True) as session:
        ti = session.scalars(select(TaskInstance).where(
            TaskInstance.run_pk == pk, TaskInstance.task_id == "extract")).one()
        assert ti.state == "success"
    assert api.call("GET", "/signals/pending").get_json()["items"] == []
    # The run is running, not failed: nothing to compensate.
    refused = api.call("POST", f"/dags/etl/dagRuns/{RUN_ID}/compensate", json={})
    assert refused.status_code == 409
    store.finish_run(pk, RunState.FAILED, store.T0 + timedelta(minutes=1))
    late = api.call("POST", f"/dags/etl/dagRuns/{RUN_ID}/signals", json={"name": "approval"})
    assert late.status_code == 409 and "ended" in late.get_json()["detail"]

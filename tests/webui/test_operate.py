"""The pages that operate DAGs (trigger form, clear, mark, pause, signals) and the new views
(graph, Gantt, run history, versions, code, events, pools, variables, connections, audit)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from scheduler.core.states import RunState, TaskState
from scheduler.store.db import session_scope
from scheduler.store.models import AuditLog, DagModel, DagRun, TaskInstance
from tests.webui.test_pages import ESCAPED_XSS, XSS, count_statements, text

RUN_ID = "manual__2024-01-01T00:00:00+00:00"
PARAMS = {"n": {"default": 3, "type": "integer", "description": "How many", "minimum": 1},
          "mode": {"default": "fast", "type": "string", "enum": ["fast", "slow"],
                   "description": None},
          "dry": {"default": False, "type": "boolean", "description": None},
          "tables": {"default": ["a"], "type": "array", "description": None}}


def _csrf(client: FlaskClient) -> str:
    with client.session_transaction() as sess:
        return str(sess["csrf_token"])


def _audit(engine: Engine) -> list[str]:
    with session_scope(engine, readonly=True) as session:
        return [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.id))
                if a.action not in ("login", "login_failed")]


def test_trigger_form_is_built_from_params_and_validates_them(client: FlaskClient, store: Any,
                                                              engine: Engine) -> None:
    store.dag(store.etl_dag(params=PARAMS))
    form = text(client.get("/dags/etl/trigger"))
    assert 'type="number" name="param.n" value="3"' in form and "How many" in form
    assert '<select name="param.mode">' in form and 'name="param.dry"' in form
    assert 'name="param.tables"' in form and "textarea" in form
    csrf = _csrf(client)
    bad = client.post("/dags/etl/trigger", data={"csrf_token": csrf, "param.n": "0",
                                                 "param.mode": '"fast"', "param.tables": "[]"})
    assert bad.status_code == 400 and "must be &gt;= 1" in text(bad)
    bad_json = client.post("/dags/etl/trigger", data={"csrf_token": csrf, "param.n": "2",
                                                      "param.mode": '"slow"',
                                                      "param.tables": "[", "conf": "[1]"})
    assert bad_json.status_code == 400
    assert "tables" in text(bad_json) and "must be a JSON object" in text(bad_json)
    ok = client.post("/dags/etl/trigger", data={
        "csrf_token": csrf, "param.n": "7", "param.mode": '"slow"', "param.dry": "1",
        "param.tables": '["x", "y"]', "conf": '{"extra": true}', "run_id": "from-form",
        "logical_date": "2024-03-01"})
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/runs/from-form")
    with session_scope(engine, readonly=True) as session:
        run = session.scalars(select(DagRun)).one()
    assert run.conf == {"n": 7, "mode": "slow", "dry": True, "tables": ["x", "y"],
                        "extra": True}
    assert run.logical_date.isoformat() == "2024-03-01T00:00:00+00:00"
    assert _audit(engine) == ["trigger"]
    assert "Triggered run from-form" in text(client.get(ok.headers["Location"]))


def test_pause_toggle_from_the_list(client: FlaskClient, store: Any, engine: Engine) -> None:
    store.dag()
    response = client.post("/dags/etl/pause", data={"csrf_token": _csrf(client), "paused": "1",
                                                    "back": "list"})
    assert response.headers["Location"] == "/"
    with session_scope(engine, readonly=True) as session:
        assert session.get(DagModel, "etl").is_paused  # type: ignore[union-attr]
    assert "Unpause etl" in text(client.get("/"))


def test_clear_a_task_with_downstream_and_mark_states(client: FlaskClient, store: Any,
                                                      engine: Engine) -> None:
    store.dag()
    pk = store.run("etl", RUN_ID, store.T0, {"extract": TaskState.SUCCESS,
                                             "transform": TaskState.FAILED})
    store.finish_run(pk, RunState.FAILED, store.T0 + timedelta(minutes=1))
    csrf = _csrf(client)
    base = f"/dags/etl/runs/{RUN_ID}/tasks"
    done = client.post(f"{base}/extract/clear", data={"csrf_token": csrf, "downstream": "1"})
    assert done.status_code == 302
    with session_scope(engine, readonly=True) as session:
        states = {t.task_id: t.state for t in session.scalars(select(TaskInstance))}
        assert session.get(DagRun, pk).state == "queued"  # type: ignore[union-attr]
    assert states == {"extract": "none", "transform": "none", "load": "none"}
    page = text(client.get(done.headers["Location"]))
    assert "Cleared 2 task instances: extract, transform" in page
    client.post(f"{base}/load/mark", data={"csrf_token": csrf, "state": "skipped"})
    refused = client.post(f"{base}/load/mark", data={"csrf_token": csrf, "state": "running"})
    assert "can be marked" in text(client.get(refused.headers["Location"]))
    client.post(f"/dags/etl/runs/{RUN_ID}/mark", data={"csrf_token": csrf, "state": "failed"})
    with session_scope(engine, readonly=True) as session:
        assert session.get(DagRun, pk).state == "failed"  # type: ignore[union-attr]
    assert _audit(engine) == ["clear", "mark_task_skipped", "mark_run_failed"]


def test_clear_failed_only_for_the_whole_run(client: FlaskClient, store: Any,
                                             engine: Engine) -> None:
    store.dag()
    store.run("etl", RUN_ID, store.T0, {"extract": TaskState.SUCCESS,
                                        "transform": TaskState.FAILED})
    client.post(f"/dags/etl/runs/{RUN_ID}/clear", data={"csrf_token": _csrf(client),
                                                        "only_failed": "1"})
    with session_scope(engine, readonly=True) as session:
        states = {t.task_id: t.state for t in session.scalars(select(TaskInstance))}
    assert states == {"extract": "success", "transform": "none", "load": "none"}


def test_graph_is_an_svg_with_states_groups_and_links(client: FlaskClient, store: Any) -> None:
    serialized = store.etl_dag(XSS)
    serialized["tasks"].append({"task_id": "grp.inner", "upstream": ["load"],
                                "downstream": []})
    serialized["tasks"][2]["downstream"] = ["grp.inner"]
    dag_id = store.dag(serialized)
    store.run(dag_id, RUN_ID, store.T0, {"extract": TaskState.SUCCESS,
                                         "transform": TaskState.RUNNING})
    html = text(client.get(f"/dags/{dag_id.replace('<', '%3C').replace('>', '%3E')}/graph"))
    assert "<svg" in html and 'class="graph-node st-success"' in html
    assert 'class="graph-node st-running"' in html
    assert 'class="graph-group"' in html and ">grp<" in html
    assert html.count('class="graph-edge"') == 3
    assert XSS not in html and ESCAPED_XSS in html


def test_graph_of_200_tasks_is_layered_and_bounded(client: FlaskClient, store: Any,
                                                   engine: Engine) -> None:
    from scheduler.core.serialized import SerializedDag
    from webui.graph import layout

    tasks = [{"task_id": f"t{i:03d}", "upstream": [f"t{i // 2:03d}"] if i else [],
              "downstream": []} for i in range(200)]
    serialized = store.etl_dag("big")
    serialized["tasks"] = tasks
    store.dag(serialized)
    nodes = layout(SerializedDag.from_dict(serialized))
    # A tree (t001 under t000, then two children each): each child one layer right of its
    # parent, t199 at depth 8.
    assert max(n.layer for n in nodes.values()) == 8
    assert all(nodes[f"t{i:03d}"].layer == nodes[f"t{i // 2:03d}"].layer + 1
               for i in range(1, 200))
    assert len({(n.x, n.y) for n in nodes.values()}) == 200
    with count_statements(engine) as statements:
        assert client.get("/dags/big/graph").status_code == 200
    assert len(statements) <= 8


def test_run_page_has_a_gantt_and_signal_buttons(client: FlaskClient, store: Any,
                                                 engine: Engine) -> None:
    from scheduler.store import commands

    store.dag()
    pk = store.run("etl", RUN_ID, store.T0, {"extract": TaskState.SUCCESS,
                                             "transform": TaskState.RUNNING})
    with session_scope(engine) as session:
        ti = session.scalars(select(TaskInstance).where(
            TaskInstance.run_pk == pk, TaskInstance.task_id == "transform")).one()
        commands.set_task_state(session, ti, TaskState.DEFERRED, now=store.T0, reason="wait",
                                actor="test")
        ti.defer_signal = "approval"
    html = text(client.get(f"/dags/etl/runs/{RUN_ID}"))
    assert 'class="gantt"' in html and 'class="gantt-bar st-success"' in html
    assert "waits for <code>approval</code>" in html and 'value="approve"' in html
    pending = text(client.get("/signals"))
    assert "approval" in pending and RUN_ID in pending


def test_run_history_filters_and_pages(client: FlaskClient, store: Any, engine: Engine) -> None:
    store.dag()
    for i in range(60):
        pk = store.run("etl", f"r{i:02d}", store.T0 + timedelta(days=i))
        if i % 3 == 0:
            store.finish_run(pk, RunState.FAILED, store.T0 + timedelta(days=i, hours=1))
    first = text(client.get("/dags/etl/runs"))
    assert "60 runs" in first and "r59" in first and "r09" not in first
    assert "Page 1 of 2" in first
    second = text(client.get("/dags/etl/runs?page=2"))
    assert "r09" in second and "r59" not in second
    failed = text(client.get("/dags/etl/runs?state=failed&since=2024-01-01&until=2024-01-10"))
    assert "4 runs" in failed  # r00 r03 r06 r09
    assert client.get("/dags/etl/runs?since=not-a-date").status_code == 400
    counts = []
    for url in ("/dags/etl/runs", "/dags/etl/runs?page=1&state=failed"):
        with count_statements(engine) as statements:
            client.get(url)
        counts.append(len(statements))
    assert counts[0] == counts[1] <= 8


def test_versions_code_and_events(client: FlaskClient, store: Any, engine: Engine) -> None:
    from scheduler.store.dags import record_dag

    store.dag()
    store.run("etl", RUN_ID, store.T0, {"extract": TaskState.SUCCESS})
    with session_scope(engine) as session:
        record_dag(session, store.etl_dag(), "print('v2 " + XSS + "')\n", now=store.T0,
                   paused_by_default=False)
    versions = text(client.get("/dags/etl/versions"))
    assert versions.count("code</a>") == 2 and "latest" in versions
    latest = text(client.get("/dags/etl/code"))
    assert "print(&#39;v2 " + ESCAPED_XSS in latest and XSS not in latest
    run_page = text(client.get(f"/dags/etl/runs/{RUN_ID}"))
    pinned = run_page.split('title="The code this run executes"')[0].rsplit('href="', 1)[1]
    pinned_page = text(client.get(pinned.split('"')[0].replace("&amp;", "&")))
    assert "# source" in pinned_page and "v2" not in pinned_page
    assert client.get("/dags/etl/code?version=nope").status_code == 404
    events = text(client.get("/dags/etl/events"))
    assert "attempt succeeded" in events and "manual run created" in events


def test_admin_pages_mask_secrets_and_show_the_audit_log(client: FlaskClient,
                                                         engine: Engine) -> None:
    csrf = _csrf(client)
    client.post("/variables", data={"csrf_token": csrf, "key": "k", "value": XSS})
    client.post("/pools", data={"csrf_token": csrf, "name": "db", "slots": "3"})
    client.post("/connections", data={"csrf_token": csrf, "conn_id": "wh",
                                      "conn_type": "postgres", "password": "hunter2"})
    assert ESCAPED_XSS in text(client.get("/variables"))
    assert ">db<" in text(client.get("/pools"))
    conns = text(client.get("/connections"))
    assert "wh" in conns and "hunter2" not in conns and "***" in conns
    audit = text(client.get("/audit"))
    for action in ("variable_set", "pool_set", "connection_set"):
        assert action in audit
    assert "admin-user" in text(client.get("/users"))


def test_new_pages_issue_a_bounded_number_of_statements(client: FlaskClient, store: Any,
                                                        engine: Engine) -> None:
    store.dag()
    for i in range(20):
        store.run("etl", f"r{i}", store.T0 + timedelta(days=i), {"extract": TaskState.SUCCESS})
    for url in ("/", "/dags/etl/graph", "/dags/etl/versions", "/dags/etl/code",
                "/dags/etl/events", "/dags/etl/runs/r3", "/dags/etl/runs/r3/tasks/extract",
                "/pools", "/variables", "/connections", "/audit", "/signals"):
        with count_statements(engine) as statements:
            assert client.get(url).status_code == 200, url
        # The signed-in user is read on each request: one statement more than before auth.
        assert len(statements) <= 10, (url, len(statements))

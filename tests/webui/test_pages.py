"""The web UI's pages, rendered from a real temporary store through Flask's test client."""

from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from scheduler.config import Settings
from scheduler.core.states import RunState, TaskState
from scheduler.store.dags import set_import_error
from scheduler.store.db import session_scope
from webui.grid import build_grid, summarize
from webui.logs import read_log_tail
from webui.serve import make_dev_server

XSS = "<script>alert(1)</script>"
ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"
RUN_ID = "manual__2024-01-01T00:00:00+00:00"


def hrefs(html: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]+)"', html)]


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))


@contextmanager
def count_statements(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def test_health_reports_the_store_ok(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "store": "ok"}


def test_empty_dag_list_says_where_to_put_dags(client: FlaskClient, settings: Settings) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "No DAGs yet" in text(response)
    assert str(settings.dags_folder) in text(response)


def test_dag_list_shows_each_dag_with_its_last_runs(client: FlaskClient, store: Any) -> None:
    store.dag()
    store.dag(store.etl_dag("paused_one", is_paused_upon_creation=True, tags=["x-tag"]))
    for i in range(12):
        store.run("etl", f"run_{i:02d}", store.T0 + timedelta(days=i),
                  {"extract": TaskState.SUCCESS})
    html = text(client.get("/"))
    assert "/dags/etl" in hrefs(html) and "/dags/paused_one" in hrefs(html)
    assert "paused" in html and "x-tag" in html and "/dags/etl.py" in html
    squares = re.findall(r'class="sq st-[a-z_]+"\s+href="([^"]+)"', html)
    # The last 10 runs, newest first.
    assert [s.rsplit("/", 1)[1] for s in squares] == [f"run_{i:02d}" for i in range(11, 1, -1)]
    assert "no runs yet" in html  # paused_one


def test_dag_list_banner_lists_import_errors(client: FlaskClient, engine: Engine,
                                             store: Any) -> None:
    with session_scope(engine) as session:
        set_import_error(session, fileloc="/dags/broken.py", message="SyntaxError: bad " + XSS,
                         lineno=7, traceback="Traceback (most recent call last):\n  boom",
                         now=store.T0)
    html = text(client.get("/"))
    assert "1 DAG file failed to import" in html
    assert "/dags/broken.py:7" in html
    assert "SyntaxError: bad " + ESCAPED_XSS in html and XSS not in html
    assert "<details><summary>Traceback</summary>" in html and "boom" in html


def test_dag_page_shows_the_grid_and_the_runs(client: FlaskClient, store: Any) -> None:
    store.dag()
    store.run("etl", RUN_ID, store.T0, {"extract": TaskState.SUCCESS,
                                        "transform": TaskState.RUNNING})
    store.run("etl", "older", store.T0 - timedelta(days=1))
    response = client.get("/dags/etl")
    html = text(response)
    assert response.status_code == 200
    assert "Nightly load" in html and "team-a" in html
    # Rows in topological order, one cell per (task, run) coloured by its state.
    assert html.index(">extract<") < html.index(">transform<") < html.index(">load<")
    assert 'class="cell st-success"' in html and 'class="cell st-running"' in html
    assert 'title="extract · manual__2024-01-01T00:00:00+00:00 · success · try 1"' in html
    # Run ids with ':' and '+' make links that lead to the run and task-instance pages.
    run_link = f"/dags/etl/runs/{RUN_ID}"
    assert run_link in hrefs(html)
    assert client.get(run_link).status_code == 200
    ti_link = f"{run_link}/tasks/extract"
    assert ti_link in hrefs(html)
    assert client.get(ti_link).status_code == 200
    assert 'data-auto-refresh="5"' in html  # a run is still running


def test_finished_runs_stop_the_auto_refresh(client: FlaskClient, store: Any) -> None:
    store.dag()
    pk = store.run("etl", RUN_ID, store.T0, {"extract": TaskState.SUCCESS})
    store.finish_run(pk, RunState.SUCCESS, store.T0 + timedelta(minutes=1))
    html = text(client.get("/dags/etl"))
    assert "data-auto-refresh" not in html
    assert "1m 00s" in html  # run duration


def test_run_page_shows_task_instances_and_events(client: FlaskClient, store: Any) -> None:
    store.dag()
    pk = store.run("etl", RUN_ID, store.T0, {"extract": TaskState.SUCCESS,
                                             "transform": TaskState.FAILED})
    store.finish_run(pk, RunState.FAILED, store.T0 + timedelta(seconds=10))
    response = client.get(f"/dags/etl/runs/{RUN_ID}")
    html = text(response)
    assert response.status_code == 200
    for task in ("extract", "transform", "load"):
        assert f"/dags/etl/runs/{RUN_ID}/tasks/{task}" in hrefs(html)
    assert "manual run created" in html and "attempt succeeded" in html
    # Events oldest first: the run's creation before its end.
    assert html.index("manual run created") < html.index("attempt succeeded")
    assert "&#34;n&#34;: 1" in html  # conf, escaped JSON


def test_task_instance_page_shows_attempt_logs_and_xcoms(client: FlaskClient, store: Any,
                                                        settings: Settings) -> None:
    store.dag()
    pk = store.run("etl", RUN_ID, store.T0)
    logs = settings.base_log_folder
    logs.mkdir(parents=True)
    (logs / "a1.log").write_text("first attempt output\n")
    (logs / "a2.log").write_text("second attempt says " + XSS + "\n")
    assert store.walk(pk, "extract", TaskState.FAILED, store.T0, log_path=str(logs / "a1.log"),
                      error="ValueError: nope") == TaskState.UP_FOR_RETRY
    store.walk(pk, "extract", TaskState.SUCCESS, store.T0 + timedelta(minutes=5),
               log_path=str(logs / "a2.log"), xcoms={"return_value": {"rows": 3, "x": XSS}})
    html = text(client.get(f"/dags/etl/runs/{RUN_ID}/tasks/extract"))
    assert "Attempt 1" in html and "Attempt 2" in html
    assert "first attempt output" in html and "ValueError: nope" in html
    assert "second attempt says " + ESCAPED_XSS in html
    assert "return_value" in html and "&#34;rows&#34;: 3" in html
    assert XSS not in html


def test_unknown_dag_run_or_task_is_a_friendly_404(client: FlaskClient, store: Any) -> None:
    store.dag()
    store.run("etl", RUN_ID, store.T0)
    for url in ("/dags/nope", "/dags/etl/runs/nope", f"/dags/etl/runs/{RUN_ID}/tasks/nope",
                f"/dags/etl/runs/{RUN_ID}/tasks/extract?map_index=3", "/no/such/page"):
        response = client.get(url)
        assert response.status_code == 404, url
        html = text(response)
        assert "Traceback" not in html and "Back to the DAG list" in html


def test_a_server_error_page_shows_no_traceback(app: Flask) -> None:
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    from webui.auth import public

    app.add_url_rule("/boom", "boom", public(boom))
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    html = text(response)
    assert "Something went wrong" in html
    assert "secret internal detail" not in html and "Traceback" not in html


def test_script_in_a_dag_id_is_escaped_everywhere(client: FlaskClient, store: Any) -> None:
    dag_id = store.dag(store.etl_dag(XSS))
    store.run(dag_id, RUN_ID + XSS, store.T0, {"extract": TaskState.RUNNING})
    listing = text(client.get("/"))
    assert ESCAPED_XSS in listing and XSS not in listing
    [dag_link] = {h for h in hrefs(listing)
                  if h.startswith("/dags/%3Cscript") and "/runs/" not in h
                  and not h.endswith("/trigger")}
    page = client.get(dag_link)
    assert page.status_code == 200
    assert ESCAPED_XSS in text(page) and XSS not in text(page)
    run_links = [h for h in hrefs(text(page)) if "/runs/" in h]
    assert run_links
    for link in set(run_links):
        response = client.get(link)
        assert response.status_code == 200, link
        assert XSS not in text(response)


def test_a_log_path_outside_the_logs_folder_is_not_read(client: FlaskClient, store: Any,
                                                        settings: Settings) -> None:
    secret = settings.home / "secret.txt"
    secret.write_text("TOP SECRET CONTENT")
    settings.base_log_folder.mkdir(parents=True)
    store.dag()
    pk = store.run("etl", RUN_ID, store.T0)
    store.walk(pk, "extract", TaskState.SUCCESS, store.T0, log_path=str(secret))
    store.walk(pk, "transform", TaskState.SUCCESS, store.T0,
               log_path=str(settings.base_log_folder / ".." / "secret.txt"))
    for task in ("extract", "transform"):
        html = text(client.get(f"/dags/etl/runs/{RUN_ID}/tasks/{task}"))
        assert "TOP SECRET" not in html
        assert "outside the logs folder" in html


def test_log_reader_refuses_symlinks_out_and_keeps_only_the_tail(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "outside.txt").write_text("secret")
    (logs / "link.log").symlink_to(tmp_path / "outside.txt")
    assert read_log_tail(str(logs / "link.log"), logs).text is None
    assert read_log_tail("../outside.txt", logs).text is None
    big = logs / "big.log"
    big.write_text("".join(f"line {i:06d}\n" for i in range(40_000)))  # 480 KB
    view = read_log_tail(str(big), logs, max_bytes=200 * 1024)
    assert view.truncated and view.text is not None
    assert view.text.endswith("line 039999\n") and view.text.startswith("line ")
    assert len(view.text.encode()) <= 200 * 1024
    assert read_log_tail(str(logs / "missing.log"), logs).note
    assert read_log_tail(None, logs).text is None


def test_dag_page_issues_the_same_number_of_statements_for_3_or_20_runs(
        client: FlaskClient, store: Any, engine: Engine) -> None:
    counts = []
    for dag_id, n in (("few", 3), ("many", 20)):
        store.dag(store.etl_dag(dag_id))
        for i in range(n):
            store.run(dag_id, f"r{i}", store.T0 + timedelta(days=i),
                      {"extract": TaskState.SUCCESS})
        with count_statements(engine) as statements:
            assert client.get(f"/dags/{dag_id}").status_code == 200
        counts.append(len(statements))
    assert counts[0] == counts[1]
    assert counts[0] <= 8


def test_grid_summarizes_mapped_instances_by_what_needs_attention() -> None:
    class TI:
        def __init__(self, task_id: str, map_index: int, state: str, try_number: int) -> None:
            self.task_id, self.map_index = task_id, map_index
            self.state, self.try_number = state, try_number

    cell = summarize([TI("m", 0, "success", 1), TI("m", 1, "failed", 2), TI("m", 2, "running", 1)])
    assert (cell.state, cell.map_index, cell.mapped, cell.try_number) == ("failed", 1, 3, 2)

    class Run:
        def __init__(self, pk: int) -> None:
            self.id = pk

    rows = build_grid(["a", "b"], [Run(1), Run(2)],
                      {1: [TI("a", -1, "success", 1), TI("old", -1, "failed", 1)],
                       2: [TI("a", -1, "running", 1)]})
    assert [r.task_id for r in rows] == ["a", "b", "old"]
    assert rows[1].cells == (None, None) and not rows[2].in_latest_version
    assert [c.state if c else None for c in rows[0].cells] == ["success", "running"]


def test_dev_server_serves_the_app(settings: Settings, app: Flask) -> None:
    server = make_dev_server(settings, "127.0.0.1", 0, app=app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10) as r:
            assert "Content-Security-Policy" in r.headers
            assert r.url.endswith("/login?next=/")  # signed out: the sign-in page
            assert b"Sign in to Headwater" in r.read()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

"""The web UI in a real browser: Debian's headless Chromium driven by Playwright, against a real
`headwater webserver` (gunicorn) and `headwater scheduler` started as processes.

One journey, as an operator lives it: sign in, trigger a DAG from its params form, watch the run
go green, read a task's log, clear a task and see it run again, approve a pending signal; every
main page loads with no console error and no failed request. Screenshots of the main pages go
to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, wait_for
from tests.e2e.procs import Service, hw

pytestmark = pytest.mark.slow

playwright_api = pytest.importorskip("playwright.sync_api")

ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "browser-test-password"

DAG_SOURCE = '''
from datetime import datetime
from scheduler import DAG, Param
from scheduler.operators import BashOperator
from scheduler.sensors import SignalSensor

with DAG("ui_journey", schedule=None, start_date=datetime(2024, 1, 1),
         params={"rows": Param(3, type="integer", description="How many rows to make")},
         description="Made by the browser test", tags=["browser"]) as dag:
    make = BashOperator(task_id="make_rows", bash_command="echo making {{ params.rows }} rows")
    check = BashOperator(task_id="check_rows", bash_command="echo checked")
    make >> check

with DAG("ui_approval", schedule=None, start_date=datetime(2024, 1, 1)) as approval:
    wait = SignalSensor(task_id="wait_for_approval", signal_name="approval")
    ship = BashOperator(task_id="ship", bash_command="echo shipped")
    wait >> ship
'''


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(env: dict[str, str], home: Path, write_dag: Any) -> Iterator[str]:
    write_dag("ui_journey.py", DAG_SOURCE)
    hw(env, "users", "create", "operator1", "--role", "admin", "--password", PASSWORD)
    port = _free_port()
    scheduler = Service(env, "scheduler", log=home / "scheduler.log")
    web = Service(env, "webserver", "--port", str(port), "--workers", "1",
                  log=home / "webserver.log")
    base = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        def healthy() -> bool:
            assert web.proc.poll() is None, web.output()
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(healthy, timeout=60, interval=0.2, message="the web server to answer")
        yield base
    finally:
        web.stop()
        scheduler.stop()


class Watch:
    """Console errors and failed requests of a page, to assert there were none."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # ERR_ABORTED is the browser dropping a request because the test navigated on.
        page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "")
                and self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(
            f"HTTP {r.status}: {r.url}"))


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_operator_journey_in_chromium(server: str) -> None:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(60_000)
            watch = Watch(page)
            _journey(page, server)
            assert watch.problems == []
        finally:
            browser.close()


def _journey(page: Any, base: str) -> None:
    expect = playwright_api.expect
    page.goto(f"{base}/")
    assert "/login" in page.url
    _shot(page, "01-login")
    page.fill("input[name=username]", "operator1")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    # The scheduler parses the DAG file within seconds; the list refreshes on reload.
    def listed() -> bool:
        page.goto(f"{base}/")
        return page.locator("a.dag-link", has_text="ui_journey").count() == 1

    wait_for(listed, timeout=60, interval=0.5, message="ui_journey in the DAG list")
    _shot(page, "02-dag-list")

    # Trigger from the params form.
    page.goto(f"{base}/dags/ui_journey/trigger")
    expect(page.locator("input[name='param.rows']")).to_have_value("3")
    _shot(page, "03-trigger-form")
    page.fill("input[name='param.rows']", "5")
    page.fill("input[name=run_id]", "browser-run")
    page.click("#trigger-form button[type=submit]")
    expect(page.locator("p.flash")).to_contain_text("Triggered run browser-run")

    # The run page refreshes itself until the run is green.
    expect(page.locator(".page-head .badge")).to_have_text("success", timeout=60_000)
    _shot(page, "04-run")

    page.goto(f"{base}/dags/ui_journey")
    expect(page.locator(".grid a.cell.st-success")).to_have_count(2)
    _shot(page, "05-grid")

    # A task's log.
    page.goto(f"{base}/dags/ui_journey/runs/browser-run")
    page.click("table a:text-is('make_rows')")
    expect(page.locator("pre.log").first).to_contain_text("making 5 rows")
    _shot(page, "06-task-log")

    # Clear it (with downstream): it runs again as attempt 2.
    page.click(".clear-form button[type=submit]")
    expect(page.locator("p.flash")).to_contain_text("Cleared 2 task instances")
    expect(page.locator("#attempt-2")).to_be_visible(timeout=60_000)
    expect(page.locator(".page-head .badge")).to_have_text("success", timeout=60_000)
    expect(page.locator("#attempt-2 pre.log")).to_contain_text("making 5 rows")

    # Graph, runs, versions, code, events.
    for name, path in (("07-graph", "graph"), ("08-runs", "runs"), ("09-versions", "versions"),
                       ("10-code", "code"), ("11-events", "events")):
        page.goto(f"{base}/dags/ui_journey/{path}")
        expect(page.locator("nav.tabs a[aria-current=page]")).to_be_visible()
        _shot(page, name)
    page.goto(f"{base}/dags/ui_journey/graph")
    expect(page.locator("svg.graph rect.graph-node.st-success")).to_have_count(2)

    # A run waiting for approval: approve it from the signals page.
    page.goto(f"{base}/dags/ui_approval/trigger")
    page.fill("input[name=run_id]", "needs-approval")
    page.click("#trigger-form button[type=submit]")

    def waiting() -> bool:
        page.goto(f"{base}/signals")
        return page.locator("td:text-is('needs-approval')").count() == 1 or page.locator(
            "a:text-is('needs-approval')").count() == 1

    wait_for(waiting, timeout=60, interval=0.5, message="the approval task to wait")
    _shot(page, "12-signals")
    page.fill("input[name=payload]", '{"by": "browser"}')
    page.click("button[value=approve]")
    expect(page.locator("p.flash")).to_contain_text("Signal approval sent")
    page.goto(f"{base}/dags/ui_approval/runs/needs-approval")
    expect(page.locator(".page-head .badge")).to_have_text("success", timeout=60_000)
    _shot(page, "13-approved-run")

    for name, path in (("14-pools", "pools"), ("15-variables", "variables"),
                       ("16-connections", "connections"), ("17-audit", "audit")):
        page.goto(f"{base}/{path}")
        _shot(page, name)
    expect(page.locator("table")).to_contain_text("signal")

"""`headwater standalone`: the scheduler and the web UI in one command, as `make run` starts them,
serving the repo's example DAGs; SIGTERM stops all of it."""

from __future__ import annotations

import errno
import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_for
from tests.e2e.procs import Service, hw, hw_json, live_group_members, runs_of

pytestmark = pytest.mark.slow

EXAMPLE_DAG_IDS = ("daily_etl", "manual_report", "taskflow_pipeline")  # as the README lists


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, str] | None:
    """(status, body) of a GET, or None while nothing answers on the port."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


@pytest.fixture
def standalone(env: dict[str, str], home: Path) -> Iterator[tuple[Service, int]]:
    port = _free_port()
    svc = Service({**env, "HEADWATER__CORE__DAGS_FOLDER": str(REPO / "dags"),
                   "HEADWATER__CORE__PLUGINS_FOLDER": str(REPO / "plugins")},
                  "standalone", "--port", str(port), log=home / "standalone.log")
    yield svc, port
    svc.stop()


def test_standalone_serves_the_examples_runs_a_trigger_and_stops_on_sigterm(
        standalone, env) -> None:
    svc, port = standalone
    base = f"http://127.0.0.1:{port}"
    cli_env = {**env, "HEADWATER__CORE__DAGS_FOLDER": str(REPO / "dags")}

    def healthy() -> bool:
        assert svc.proc.poll() is None, f"standalone exited early:\n{svc.output()}"
        answer = _get(f"{base}/health")
        return answer is not None and answer[0] == 200 and json.loads(answer[1])["status"] == "ok"

    wait_for(healthy, timeout=30, interval=0.1, message="GET /health to answer ok")
    # The first start creates the admin user and prints its password once.
    assert "admin" in svc.output() and "password" in svc.output().lower()
    assert _get(f"{base}/")[0] in (302, 200)  # type: ignore[index]
    anonymous = _get(f"{base}/dags/manual_report")
    assert anonymous is not None and "manual_report</" not in anonymous[1]
    token = hw(cli_env, "users", "token", "admin").stdout.strip().split()[-1]

    def index_lists_examples() -> bool:
        answer = _get(f"{base}/", token)
        return answer is not None and answer[0] == 200 and all(
            dag_id in answer[1] for dag_id in EXAMPLE_DAG_IDS)

    wait_for(index_lists_examples, timeout=20, interval=0.2,
             message=f"GET / to list {', '.join(EXAMPLE_DAG_IDS)}")

    run_id = "standalone-e2e-1"
    run = hw_json(cli_env, "dags", "trigger", "manual_report", "--run-id", run_id)
    assert run["state"] == "queued"

    def run_state() -> str | None:
        return next((r["state"] for r in runs_of(cli_env, "manual_report")
                     if r["run_id"] == run_id), None)

    final = wait_for(lambda: (s := run_state()) in ("success", "failed") and s,
                     timeout=30, interval=0.1, message=f"run {run_id} to finish")
    assert final == "success", svc.output()

    page = _get(f"{base}/dags/manual_report", token)
    assert page is not None and page[0] == 200
    assert run_id in page[1]

    pgid = svc.pid  # Service starts it in its own session: the group id is its pid
    before = live_group_members(pgid)
    assert len(before) >= 2, f"expected the scheduler and the web server, found {before}"
    assert not _port_is_free(port)
    svc.proc.send_signal(signal.SIGTERM)
    try:
        svc.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"standalone still running 20 s after SIGTERM:\n{svc.output()}")
    wait_for(lambda: not live_group_members(pgid), timeout=15, interval=0.1,
             message="every process of standalone (web server, workers) to exit")
    wait_for(lambda: _port_is_free(port), timeout=5, interval=0.1,
             message=f"port {port} to be free")
    assert _get(f"{base}/health") is None

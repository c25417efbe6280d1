"""A scheduler stopped with SIGTERM lets running attempts finish and hands back the rest; an
XCom over the size limit fails its task with advice."""

from __future__ import annotations

import json
import signal

import pytest

from tests.conftest import wait_for
from tests.e2e.procs import Service, hw, hw_json, runs_of

pytestmark = pytest.mark.slow


def test_sigterm_lets_running_tasks_finish_and_a_new_scheduler_completes_the_run(
        env, home, write_dag) -> None:
    started = home / "started"
    write_dag("graceful.py", f"""
        import time
        from datetime import datetime
        from pathlib import Path
        from scheduler import DAG
        from scheduler.operators import PythonOperator

        def slow(task):
            Path({str(started)!r}).mkdir(exist_ok=True)
            Path({str(started)!r}, task.task_id).touch()
            time.sleep(1.5)
            return task.task_id

        with DAG("graceful", schedule=None, start_date=datetime(2024, 1, 1),
                 max_active_tasks=2):
            for i in range(6):
                PythonOperator(task_id=f"t{{i}}", python_callable=slow)
    """)
    first = Service(env, "scheduler", log=home / "first.log")
    try:
        hw(env, "dags", "trigger", "graceful", "--run-id", "r1")
        wait_for(lambda: started.exists() and len(list(started.iterdir())) >= 1, timeout=30,
                 message="a task to start")
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(30) == 0
    finally:
        first.stop()
    states = hw_json(env, "tasks", "states-for-run", "graceful", "r1")
    began = {p.name for p in started.iterdir()}
    # What had started finished (it was not killed); nothing is left queued or running.
    assert {s["task_id"] for s in states if s["state"] == "success"} == began
    assert not [s for s in states if s["state"] in ("queued", "running")], states
    assert all(s["try_number"] <= 1 for s in states), states
    second = Service(env, "scheduler", log=home / "second.log")
    try:
        wait_for(lambda: any(r["run_id"] == "r1" and r["state"] == "success"
                             for r in runs_of(env, "graceful")), timeout=60,
                 message="the run to finish under a new scheduler")
    finally:
        second.stop()
    assert all(s["try_number"] == 1 for s in hw_json(
        env, "tasks", "states-for-run", "graceful", "r1"))


def test_an_xcom_over_the_limit_fails_the_task_and_says_to_pass_an_identifier(
        env, write_dag) -> None:
    write_dag("big.py", """
        from datetime import datetime
        from scheduler import DAG, task

        with DAG("big", schedule=None, start_date=datetime(2024, 1, 1)):
            @task
            def huge():
                return "x" * (70 * 1024)

            huge()
    """)
    proc = hw(env, "dags", "test", "big", "--output", "json", check=False)
    assert proc.returncode == 1
    run = json.loads(proc.stdout)
    assert run["task_instances"][0]["state"] == "failed"
    log = hw(env, "tasks", "logs", "big", run["run_id"], "huge").stdout
    assert "65536-byte limit" in log and "identifier" in log

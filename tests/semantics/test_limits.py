"""Limits an operator relies on under load: pools and their slots, dagrun_timeout."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_for
from tests.e2e.procs import Service, hw, runs_of

pytestmark = pytest.mark.slow


def _max_overlap(spans: list[tuple[float, float, int]]) -> int:
    """The largest total weight of spans running at one instant."""
    points = sorted([(s, w) for s, _, w in spans] + [(e, -w) for _, e, w in spans],
                    key=lambda p: (p[0], p[1]))
    current = peak = 0
    for _, delta in points:
        current += delta
        peak = max(peak, current)
    return peak


def test_a_pool_never_runs_more_than_its_slots(env, home, write_dag) -> None:
    spans_dir = home / "spans"
    spans_dir.mkdir()
    hw(env, "pools", "set", "narrow", "3", "--description", "three slots")
    write_dag("pooled.py", f"""
        import time
        from datetime import datetime
        from pathlib import Path
        from scheduler import DAG
        from scheduler.operators import PythonOperator

        def work(task):
            start = time.time()
            time.sleep(0.3)
            Path({str(spans_dir)!r}, task.task_id).write_text(
                f"{{start}} {{time.time()}} {{task.pool_slots}}")

        with DAG("pooled", schedule=None, start_date=datetime(2024, 1, 1)):
            for i in range(6):
                PythonOperator(task_id=f"one_{{i}}", python_callable=work, pool="narrow")
            for i in range(2):
                PythonOperator(task_id=f"two_{{i}}", python_callable=work, pool="narrow",
                               pool_slots=2, priority_weight=10)
    """)
    scheduler = Service({**env, "HEADWATER__CORE__PARALLELISM": "8"}, "scheduler",
                        log=home / "scheduler.log")
    try:
        hw(env, "dags", "trigger", "pooled", "--run-id", "r1")
        wait_for(lambda: any(r["run_id"] == "r1" and r["state"] == "success"
                             for r in runs_of(env, "pooled")), timeout=60,
                 message="the pooled run to succeed")
    finally:
        scheduler.stop()
    spans = []
    for path in spans_dir.iterdir():
        start, end, slots = path.read_text().split()
        spans.append((float(start), float(end), int(slots)))
    assert len(spans) == 8
    assert _max_overlap(spans) <= 3, "the pool ran more than its 3 slots at once"
    assert _max_overlap(spans) >= 2, "the pool never ran two tasks at once"
    # A higher-priority task was among the first to start (one 2-slot and one 1-slot task
    # fill the 3 slots of the first round).
    assert 2 in [slots for _, _, slots in sorted(spans)[:2]]


def test_dagrun_timeout_fails_the_run_and_skips_what_had_not_started(
        env, home, write_dag) -> None:
    write_dag("slow_run.py", """
        from datetime import datetime, timedelta
        from scheduler import DAG
        from scheduler.operators import BashOperator

        with DAG("slow_run", schedule=None, start_date=datetime(2024, 1, 1),
                 dagrun_timeout=timedelta(seconds=1)):
            BashOperator(task_id="first", bash_command="sleep 2") >> BashOperator(
                task_id="second", bash_command="true")
    """)
    scheduler = Service(env, "scheduler", log=home / "scheduler.log")
    try:
        hw(env, "dags", "trigger", "slow_run", "--run-id", "r1")
        wait_for(lambda: any(r["run_id"] == "r1" and r["state"] == "failed"
                             for r in runs_of(env, "slow_run")), timeout=30,
                 message="the run to fail on its dagrun_timeout")
        history = json.loads(hw(env, "runs", "history", "slow_run", "r1",
                                "--output", "json").stdout)
    finally:
        scheduler.stop()
    run_end = [e for e in history if e["kind"] == "run" and e["to_state"] == "failed"]
    assert run_end and "dagrun_timeout" in run_end[-1]["reason"]
    states = {s["task_id"]: s["state"] for s in json.loads(hw(
        env, "tasks", "states-for-run", "slow_run", "r1", "--output", "json").stdout)}
    assert states["second"] == "skipped"

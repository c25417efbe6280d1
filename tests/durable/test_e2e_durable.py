"""End to end with a real scheduler: many runs parked on signals hold nothing; a DAG edited
while a run is in flight leaves that run on its version."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from scheduler.loop import trigger_run
from scheduler.signals import send_signal
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, TaskInstance
from scheduler.wakeup import notify
from tests.conftest import wait_for
from tests.e2e.procs import hw, hw_json

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return children + [d for c in children for d in _descendants(c)]


def _count(engine, *where) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.scalar(select(func.count()).select_from(TaskInstance).where(*where)) or 0


def test_500_runs_waiting_for_signals_hold_no_slot_nor_process_and_all_resume(
        env, home, write_dag, engine, scheduler) -> None:
    n = 500
    write_dag("approvals.py", """
        from datetime import datetime
        from scheduler import DAG, task
        from scheduler.sensors.signal import SignalSensor

        with DAG("approvals", schedule=None, start_date=datetime(2024, 1, 1),
                 max_active_runs=1000, max_active_tasks=1000):
            approved = SignalSensor(task_id="approved", signal_name="approval")

            @task
            def act(decision):
                return decision["n"] * 2

            act(approved.output)
    """)
    hw(env, "dags", "list")
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for i in range(n):
            trigger_run(session, dag_id="approvals", now=now, run_id=f"r{i:03d}", actor="test")
    notify(home)
    waiting = (TaskInstance.task_id == "approved", TaskInstance.state == "deferred")
    wait_for(lambda: _count(engine, *waiting) == n, timeout=300, interval=0.25,
             message=f"{n} task instances to wait for their signal")
    # Nothing holds a slot, and the scheduler's processes are its fixed pool (each worker and
    # its fork server, the DAG processor and its import process), not one a wait.
    assert _count(engine, TaskInstance.state.in_(["queued", "running"])) == 0
    processes = _descendants(scheduler.pid)
    assert len(processes) <= 2 * int(env["HEADWATER__CORE__PARALLELISM"]) + 3, processes
    with session_scope(engine) as session:
        for i in range(n):
            send_signal(session, dag_id="approvals", run_id=f"r{i:03d}", name="approval",
                        payload={"n": i}, actor="test", now=datetime.now(UTC))
    notify(home)

    def all_done() -> bool:
        with session_scope(engine, readonly=True) as session:
            return (session.scalar(select(func.count()).where(
                DagRun.dag_id == "approvals", DagRun.state == "success")) or 0) == n
    wait_for(all_done, timeout=300, interval=0.25, message=f"{n} runs to succeed")
    assert json.loads(hw(env, "xcom", "get", "approvals", "r123", "act").stdout) == 246


V1 = """
    from datetime import datetime
    from scheduler import DAG
    from scheduler.operators import PythonOperator
    from scheduler.sensors.signal import SignalSensor

    def note(text):
        def run(**_):
            with open({ledger!r}, "a") as fh:
                fh.write(text + "\\n")
        return run

    with DAG("evolving", schedule=None, start_date=datetime(2024, 1, 1)):
        a = PythonOperator(task_id="a", python_callable=note("{v}:a"))
        gate = SignalSensor(task_id="gate", signal_name="go")
        {tail}
"""


def test_a_run_in_flight_keeps_its_version_when_the_dag_file_changes(
        env, home, write_dag, engine, scheduler) -> None:
    ledger = str(home / "ledger.txt")
    write_dag("evolving.py", V1.format(ledger=ledger, v="v1", tail=(
        'b = PythonOperator(task_id="b", python_callable=note("v1:b"))\n'
        '        a >> gate >> b')))
    hw(env, "dags", "trigger", "evolving", "--run-id", "r1")
    wait_for(lambda: _count(engine, TaskInstance.run_id == "r1",
                            TaskInstance.state == "deferred") == 1,
             timeout=60, message="r1 to reach its gate")
    # v2: a changes, b is removed, c is added.
    write_dag("evolving.py", V1.format(ledger=ledger, v="v2", tail=(
        'c = PythonOperator(task_id="c", python_callable=note("v2:c"))\n'
        '        a >> gate >> c')))
    hw(env, "dags", "trigger", "evolving", "--run-id", "r2")
    wait_for(lambda: _count(engine, TaskInstance.run_id == "r2",
                            TaskInstance.state == "deferred") == 1,
             timeout=60, message="r2 to reach its gate")
    for run_id in ("r1", "r2"):
        hw(env, "signals", "send", "evolving", run_id, "go")
    wait_for(lambda: {r["run_id"]: r["state"] for r in hw_json(env, "dags", "list-runs",
                                                                "evolving")}
             == {"r1": "success", "r2": "success"}, timeout=60, interval=0.1,
             message="both runs to succeed")
    lines = Path(ledger).read_text().split()
    assert sorted(lines) == ["v1:a", "v1:b", "v2:a", "v2:c"]
    tasks = {run_id: sorted(s["task_id"] for s in hw_json(env, "tasks", "states-for-run",
                                                          "evolving", run_id))
             for run_id in ("r1", "r2")}
    assert tasks == {"r1": ["a", "b", "gate"], "r2": ["a", "c", "gate"]}
    versions = {r["run_id"]: r["version"] for r in hw_json(env, "dags", "list-runs", "evolving")}
    assert versions["r1"] and versions["r2"] and versions["r1"] != versions["r2"]

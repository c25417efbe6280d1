"""End to end: `headwater tasks clear` makes a real scheduler run cleared task instances again,
as a new try, and brings their finished run back to running and on to its new end."""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import select

from scheduler.store.db import session_scope
from scheduler.store.models import Event
from tests.conftest import wait_for
from tests.e2e.procs import HEADWATER, hw, hw_json, run_state, runs_of

pytestmark = pytest.mark.slow


def states(env: dict[str, str], dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
    return {t["task_id"]: (t["state"], t["try_number"])
            for t in hw_json(env, "tasks", "states-for-run", dag_id, run_id)}


def test_clearing_a_failed_task_reruns_it_and_its_downstream_and_the_run_succeeds(
        env, home, write_dag, engine, scheduler) -> None:
    marker = home / "data-ready"
    write_dag("fixable.py", f"""
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import BashOperator, EmptyOperator

        with DAG("fixable", schedule=None, start_date=datetime(2024, 1, 1)):
            start = EmptyOperator(task_id="start")
            check = BashOperator(task_id="check", bash_command="test -f {marker}")
            load = BashOperator(task_id="load", bash_command="echo loaded")
            start >> check >> load
    """)
    wait_for(lambda: hw(env, "dags", "list", check=False).returncode == 0 and any(
        d["dag_id"] == "fixable" for d in hw_json(env, "dags", "list")),
        timeout=60, message="the DAG to be parsed")
    hw(env, "dags", "trigger", "fixable", "--run-id", "r1")
    wait_for(lambda: run_state(env, "fixable", "r1") == "failed", timeout=60, interval=0.1,
             message="the run to fail")
    assert states(env, "fixable", "r1") == {
        "start": ("success", 1), "check": ("failed", 1), "load": ("upstream_failed", 0)}

    # --only-failed leaves the successful start alone; --downstream takes load along.
    dry = hw_json(env, "tasks", "clear", "fixable", "--run", "r1", "--task-regex",
                  "^(start|check)$", "--downstream", "--only-failed", "--dry-run")
    assert sorted(r["task_id"] for r in dry) == ["check", "load"]
    assert run_state(env, "fixable", "r1") == "failed"  # a dry run changes nothing

    marker.write_text("ok")
    cleared = hw_json(env, "tasks", "clear", "fixable", "--run", "r1", "--task-regex", "^check$",
                      "--downstream", "--yes")
    assert {(r["task_id"], r["state"]) for r in cleared} == {
        ("check", "failed"), ("load", "upstream_failed")}
    wait_for(lambda: run_state(env, "fixable", "r1") == "success", timeout=60, interval=0.1,
             message=f"the cleared run to succeed\n{scheduler.output()}")
    assert states(env, "fixable", "r1") == {
        "start": ("success", 1), "check": ("success", 2), "load": ("success", 1)}
    assert hw(env, "tasks", "logs", "fixable", "r1", "check", "--try", "1",
              check=False).returncode == 0  # the failed try's log is kept

    with session_scope(engine, readonly=True) as session:
        run_moves = [(e.from_state, e.to_state, e.actor) for e in session.scalars(
            select(Event).where(Event.run_id == "r1", Event.kind == "run").order_by(Event.id))]
    assert run_moves[-4:] == [("running", "failed", "scheduler"), ("failed", "queued", "cli"),
                              ("queued", "running", "scheduler"),
                              ("running", "success", "scheduler")]


def test_clear_without_yes_asks_and_a_no_changes_nothing(env, write_dag, engine) -> None:
    write_dag("once.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator

        with DAG("once", schedule=None, start_date=datetime(2024, 1, 1)):
            EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
    """)
    assert hw_json(env, "dags", "test", "once")["state"] == "success"
    run_id = runs_of(env, "once")[0]["run_id"]
    proc = subprocess.run([*HEADWATER, "tasks", "clear", "once", "--run", run_id], env=env,
                          input="n\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Aborted" in proc.stderr
    assert run_state(env, "once", run_id) == "success"
    nothing = hw(env, "tasks", "clear", "once", "--run", run_id, "--only-failed", "--yes")
    assert "Nothing to clear" in nothing.stdout
    bad = hw(env, "tasks", "clear", "once", "--run", "nope", "--yes", check=False)
    assert bad.returncode == 1 and "has no run 'nope'" in bad.stderr

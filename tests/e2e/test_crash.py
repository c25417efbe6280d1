"""Crash safety: the scheduler is killed with SIGKILL mid-run; a restarted one finishes the run,
every task succeeds, and no task that had finished runs again."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.procs import Service, hw, hw_json, ledger_dag_source

pytestmark = pytest.mark.slow

N_TASKS = 24


def _write_dag(write_dag, ledger: Path) -> None:
    write_dag("many.py", ledger_dag_source(ledger, N_TASKS, work_seconds=0.15, retries=2))


def _finished(ledger: Path) -> Counter[str]:
    return Counter(ledger.read_text().split()) if ledger.exists() else Counter()


@pytest.mark.parametrize("kill", ["scheduler_only", "whole_process_group"])
def test_killed_scheduler_is_restarted_and_finishes_the_run_without_rerunning(
        kill: str, env, home, write_dag) -> None:
    ledger = home / "ledger.txt"
    _write_dag(write_dag, ledger)
    env = {**env, "HEADWATER__SCHEDULER__TASK_HEARTBEAT_TIMEOUT": "3",
           "HEADWATER__SCHEDULER__SCHEDULER_HEARTBEAT_TIMEOUT": "3"}
    first = Service(env, "scheduler", log=home / "first.log")
    second: Service | None = None
    try:
        hw(env, "dags", "trigger", "many", "--run-id", "r1")
        wait_for(lambda: sum(_finished(ledger).values()) >= 6, timeout=60,
                 message="a few tasks to finish before the kill")
        if kill == "scheduler_only":
            # Its workers live on, orphaned: they finish what they hold, recording it while the
            # new scheduler below starts and the CLI reads the store, then exit.
            first.kill_scheduler_only()
        else:
            first.kill_all()
        # Finished = recorded as success in the store (the side effect and the record are not
        # one atomic step, so the ledger alone cannot tell what "finished" means).
        done_before_kill = {s["task_id"] for s in hw_json(env, "tasks", "states-for-run", "many",
                                                         "r1") if s["state"] == "success"}
        assert done_before_kill
        second = Service(env, "scheduler", log=home / "second.log")
        wait_for(lambda: any(r["run_id"] == "r1" and r["state"] in ("success", "failed")
                             for r in hw_json(env, "dags", "list-runs", "many")),
                 timeout=90, interval=0.1, message="the run to finish after the restart")
    finally:
        if second is not None:
            second.stop()
        first.stop()
    [run] = hw_json(env, "dags", "list-runs", "many")
    assert run["state"] == "success", second.output() if second else ""
    states = hw_json(env, "tasks", "states-for-run", "many", "r1")
    assert len(states) == N_TASKS
    assert all(s["state"] == "success" for s in states), states
    counts = _finished(ledger)
    assert set(counts) == {s["task_id"] for s in states}
    # A task whose work was done before the kill never ran again.
    assert all(counts[t] == 1 for t in done_before_kill), counts
    if kill == "scheduler_only":
        # The workers outlived the scheduler and finished what they held: nothing ran twice.
        assert max(counts.values()) == 1, counts

"""Crash safety under repeated SIGKILL: the scheduler's whole process group is killed at random
moments, at least 20 times during one run, and restarted each time. The run ends success,
every task ends success, and no task recorded as finished before a kill ran again."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.procs import Service, hw, hw_json, ledger_dag_source

pytestmark = pytest.mark.slow

N_TASKS = 120
KILLS = 20


def _finished(ledger: Path) -> Counter[str]:
    return Counter(ledger.read_text().split()) if ledger.exists() else Counter()


def _run_state(env: dict[str, str]) -> str:
    [run] = hw_json(env, "dags", "list-runs", "many")
    return str(run["state"])


def test_twenty_kills_of_the_scheduler_group_lose_nothing_and_rerun_nothing_finished(
        env, home, write_dag) -> None:
    ledger = home / "ledger.txt"
    write_dag("many.py", ledger_dag_source(ledger, N_TASKS, work_seconds=0.5, retries=100))
    env = {**env, "HEADWATER__SCHEDULER__TASK_HEARTBEAT_TIMEOUT": "2",
           "HEADWATER__SCHEDULER__SCHEDULER_HEARTBEAT_TIMEOUT": "2"}
    hw(env, "dags", "trigger", "many", "--run-id", "r1")
    rng = random.Random(4)
    # Task id -> how often its work had been done when it was first seen finished after a
    # kill. (An attempt killed between its work and its record legitimately runs again, so
    # the count may be above 1; it must not grow once the task is recorded finished.)
    done_before_a_kill: dict[str, int] = {}
    kills = 0
    while kills < KILLS:
        before = sum(_finished(ledger).values())
        svc = Service(env, "scheduler", log=home / f"scheduler-{kills}.log")
        # Let this life do some work, then kill it at a random moment after: while tasks
        # run, record their ends, or get queued.
        wait_for(lambda b=before: sum(_finished(ledger).values()) > b, timeout=60,
                 message="a task to do its work in this life of the scheduler")
        time.sleep(rng.uniform(0.0, 0.5))
        svc.kill_all()
        svc.stop()
        if _run_state(env) in ("success", "failed"):
            break
        kills += 1
        work = _finished(ledger)
        for s in hw_json(env, "tasks", "states-for-run", "many", "r1"):
            if s["state"] == "success":
                done_before_a_kill.setdefault(s["task_id"], work[s["task_id"]])
    assert kills == KILLS, f"the run ended after {kills} kills; make it longer"
    last = Service(env, "scheduler", log=home / "scheduler-last.log")
    try:
        wait_for(lambda: _run_state(env) in ("success", "failed"), timeout=180, interval=0.1,
                 message="the run to finish after the last restart")
    finally:
        last.stop()
    assert _run_state(env) == "success", last.output()
    states = hw_json(env, "tasks", "states-for-run", "many", "r1")
    assert len(states) == N_TASKS
    assert all(s["state"] == "success" for s in states), states
    counts = _finished(ledger)
    assert set(counts) == {s["task_id"] for s in states}
    assert done_before_a_kill, "no task finished between kills; the test proved nothing"
    reran = {t: (n, counts[t]) for t, n in done_before_a_kill.items() if counts[t] != n}
    assert not reran, f"finished tasks ran again (count when finished, at the end): {reran}"

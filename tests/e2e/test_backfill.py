"""``headwater dags backfill`` as users run it: real processes, real worker processes.

Each task of the DAGs here appends ``<run_id> <task_id>`` to a ledger file when it has done its
work, so a test can tell whether any task ran twice.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, Job, TaskInstance
from tests.conftest import wait_for
from tests.e2e.procs import Service, hw, hw_json, runs_of

pytestmark = pytest.mark.slow

DAG = """
    import os, time
    from datetime import datetime
    from scheduler import DAG
    from scheduler.operators import PythonOperator

    def work(run_id, task):
        time.sleep({sleep})
        if task.task_id in {failing!r}:
            raise RuntimeError("broken on purpose")
        fd = os.open({ledger!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{{run_id}} {{task.task_id}}\\n".encode())
        os.close(fd)

    with DAG("daily", schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False,
             is_paused_upon_creation={paused}, max_active_runs={max_active_runs}):
        extract = PythonOperator(task_id="extract", python_callable=work)
        transform = PythonOperator(task_id="transform", python_callable=work)
        load = PythonOperator(task_id="load", python_callable=work)
        extract >> transform >> load
"""


def _write(write_dag, home: Path, *, failing: tuple[str, ...] = (), paused: bool = False,
           sleep: float = 0.0, max_active_runs: int = 16) -> Path:
    ledger = home / "ledger.txt"
    write_dag("daily.py", DAG.format(ledger=str(ledger), failing=failing, paused=paused,
                                     sleep=sleep, max_active_runs=max_active_runs))
    return ledger


def _ledger(ledger: Path) -> Counter[str]:
    return Counter(ledger.read_text().splitlines()) if ledger.exists() else Counter()


def _backfill(env: dict[str, str], *args: str, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    return hw(env, "dags", "backfill", "daily", *args, "--output", "json", check=check,
              timeout=300)


def _runs(env: dict[str, str]) -> list[dict[str, Any]]:
    return sorted(runs_of(env, "daily"), key=lambda r: r["logical_date"])


def _day(i: int) -> str:
    return f"2024-01-{i:02d}T00:00:00+00:00"


def test_a_ten_day_backfill_creates_exactly_its_runs_and_a_second_one_creates_nothing(
        env, home, write_dag) -> None:
    ledger = _write(write_dag, home)
    first = _backfill(env, "--start-date", "2024-01-01", "--end-date", "2024-01-10")
    summary = json.loads(first.stdout)
    assert (summary["created"], summary["succeeded"], summary["failed"]) == (10, 10, 0)
    runs = _runs(env)
    assert [r["logical_date"] for r in runs] == [_day(i) for i in range(1, 11)]
    assert [r["data_interval_end"] for r in runs] == [_day(i) for i in range(2, 12)]
    assert all(r["data_interval_start"] == r["logical_date"] for r in runs)
    assert {(r["run_type"], r["state"]) for r in runs} == {("backfill", "success")}
    assert [r["run_id"] for r in runs] == [f"backfill__{_day(i)}" for i in range(1, 11)]
    assert sum(_ledger(ledger).values()) == 30 and set(_ledger(ledger).values()) == {1}

    again = _backfill(env, "--start-date", "2024-01-01", "--end-date", "2024-01-10")
    summary = json.loads(again.stdout)
    assert (summary["created"], summary["reused"], summary["succeeded"]) == (0, 0, 10)
    assert len(_runs(env)) == 10
    assert sum(_ledger(ledger).values()) == 30


def test_a_failed_backfill_exits_1_and_rerun_failed_after_a_fix_succeeds(
        env, home, write_dag) -> None:
    _write(write_dag, home, failing=("transform",))
    proc = _backfill(env, "-s", "2024-02-01", "-e", "2024-02-02", check=False)
    assert proc.returncode == 1, proc.stderr
    assert {r["state"] for r in _runs(env)} == {"failed"}

    _write(write_dag, home)  # the fix
    # Without --rerun-failed nothing runs again, and the exit code still says "failed".
    assert _backfill(env, "-s", "2024-02-01", "-e", "2024-02-02", check=False).returncode == 1
    _backfill(env, "-s", "2024-02-01", "-e", "2024-02-02", "--rerun-failed")
    runs = _runs(env)
    assert {r["state"] for r in runs} == {"success"}
    for run in runs:
        tries = {t["task_id"]: (t["state"], t["try_number"]) for t in hw_json(
            env, "tasks", "states-for-run", "daily", run["run_id"])}
        assert tries == {"extract": ("success", 1), "transform": ("success", 2),
                         "load": ("success", 1)}


def test_dry_run_lists_the_runs_with_whether_each_exists(env, home, write_dag) -> None:
    _write(write_dag, home)
    _backfill(env, "-s", "2024-03-02", "-e", "2024-03-03")
    rows = hw_json(env, "dags", "backfill", "daily", "-s", "2024-03-01", "-e", "2024-03-04",
                   "--dry-run")
    assert [(r["logical_date"][:10], r["data_interval_end"][:10], r["exists"]) for r in rows] == [
        ("2024-03-01", "2024-03-02", False), ("2024-03-02", "2024-03-03", True),
        ("2024-03-03", "2024-03-04", True), ("2024-03-04", "2024-03-05", False)]
    assert len(_runs(env)) == 2, "a dry run creates nothing"


def _intervals(runs: list[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    return sorted((datetime.fromisoformat(r["start_date"]), datetime.fromisoformat(r["end_date"]))
                  for r in runs)


def test_max_active_runs_1_never_runs_two_runs_at_once(env, home, write_dag) -> None:
    _write(write_dag, home, sleep=0.05)
    _backfill(env, "-s", "2024-01-01", "-e", "2024-01-05", "--max-active-runs", "1")
    spans = _intervals(_runs(env))
    assert len(spans) == 5
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, spans


def test_reverse_starts_the_newest_run_first(env, home, write_dag) -> None:
    _write(write_dag, home)
    _backfill(env, "-s", "2024-01-01", "-e", "2024-01-04", "--reverse", "--max-active-runs", "1")
    runs = _runs(env)
    by_start = sorted(runs, key=lambda r: r["start_date"])
    assert [r["logical_date"] for r in by_start] == [_day(i) for i in (4, 3, 2, 1)]


def test_a_paused_dag_is_backfilled_and_stays_paused(env, home, write_dag) -> None:
    _write(write_dag, home, paused=True)
    _backfill(env, "-s", "2024-01-01", "-e", "2024-01-02")
    assert {r["state"] for r in _runs(env)} == {"success"}
    [dag] = hw_json(env, "dags", "list")
    assert dag["paused"] is True


def test_a_backfill_beside_a_running_scheduler_runs_no_task_twice(
        env, home, write_dag, engine) -> None:
    ledger = _write(write_dag, home, sleep=0.05, max_active_runs=4)
    scheduler = Service(env, "scheduler", log=home / "scheduler.log")
    try:
        # The scheduler creates (and runs) the schedule's own latest run meanwhile.
        wait_for(lambda: any(r["run_type"] == "scheduled" for r in _runs(env)), timeout=180,
                 interval=0.1, message="the scheduler to create its scheduled run")
        _backfill(env, "-s", "2024-01-01", "-e", "2024-01-08")
    finally:
        scheduler.stop()
    backfilled = [r for r in _runs(env) if r["run_type"] == "backfill"]
    assert len(backfilled) == 8 and {r["state"] for r in backfilled} == {"success"}
    counts = _ledger(ledger)
    assert max(counts.values()) == 1, [line for line, n in counts.items() if n > 1]
    for run in backfilled:
        assert {f"{run['run_id']} {t}" for t in ("extract", "transform", "load")} <= set(counts)
    # The scheduler left the backfill's runs alone: the backfill queued every task of them.
    with session_scope(engine, readonly=True) as session:
        queuers = set(session.scalars(
            select(Job.kind).join(TaskInstance, TaskInstance.queued_by_job_id == Job.id)
            .join(DagRun, DagRun.id == TaskInstance.run_pk).where(DagRun.run_type == "backfill")))
    assert queuers == {"backfill"}


def test_a_killed_backfill_is_resumed_by_running_the_same_command(env, home, write_dag) -> None:
    ledger = _write(write_dag, home, sleep=0.3)
    args = ("dags", "backfill", "daily", "-s", "2024-01-01", "-e", "2024-01-08",
            "--max-active-runs", "2", "--output", "json")
    first = Service(env, *args, log=home / "first.log")
    try:
        wait_for(lambda: sum(_ledger(ledger).values()) >= 6, timeout=180,
                 message="a few tasks to finish before the kill")
        # SIGKILL the backfill process only: its worker processes, orphaned, finish the
        # attempts they hold (while the resumed backfill starts) and exit.
        first.kill_scheduler_only()
        assert any(r["state"] in ("queued", "running") for r in _runs(env)), "killed too late"
        resumed = hw(env, *args, timeout=300)
    finally:
        first.stop()
    summary = json.loads(resumed.stdout)
    assert summary["created"] == 0 and summary["succeeded"] == 8
    counts = _ledger(ledger)
    assert sum(counts.values()) == 24 and set(counts.values()) == {1}, counts


def test_next_run_shows_the_upcoming_runs_in_the_dags_time_zone(env, write_dag) -> None:
    write_dag("amsterdam.py", """
        from datetime import datetime
        from zoneinfo import ZoneInfo
        from scheduler import DAG
        from scheduler.operators import EmptyOperator

        with DAG("amsterdam", schedule="30 2 * * *", catchup=True,
                 start_date=datetime(2024, 3, 29, tzinfo=ZoneInfo("Europe/Amsterdam"))):
            EmptyOperator(task_id="only")
    """)
    rows = hw_json(env, "dags", "next-run", "amsterdam", "--count", "3")
    # 02:30 local is 01:30 UTC in winter time; on 31 March 02:30 does not exist and the run
    # moves to the first valid time, 03:00 CEST (01:00 UTC).
    assert [r["logical_date"] for r in rows] == [
        "2024-03-29T01:30:00+00:00", "2024-03-30T01:30:00+00:00", "2024-03-31T01:00:00+00:00"]
    assert [r["data_interval_end"] for r in rows] == [
        "2024-03-30T01:30:00+00:00", "2024-03-31T01:00:00+00:00", "2024-04-01T00:30:00+00:00"]
    assert all(r["run_after"] == r["data_interval_end"] for r in rows)
    assert all(r["data_interval_start"] == r["logical_date"] for r in rows)

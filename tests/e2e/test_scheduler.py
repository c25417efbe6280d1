"""End to end: a real `headwater scheduler` process runs DAG files dropped in the folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.procs import Service, hw, hw_json, run_state, runs_of

pytestmark = pytest.mark.slow


@pytest.fixture
def start_scheduler(env: dict[str, str], home: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def _start(**extra_env: str) -> Service:
        svc = Service({**env, **extra_env}, "scheduler", log=home / f"scheduler-{len(started)}.log")
        started.append(svc)
        return svc

    yield _start
    for svc in started:
        svc.stop()


def wait_run_finished(env: dict[str, str], dag_id: str, run_id: str, timeout: float = 60) -> str:
    return wait_for(
        lambda: (s := run_state(env, dag_id, run_id)) in ("success", "failed") and s,
        timeout=timeout, interval=0.1, message=f"run {run_id} of {dag_id} to finish")


def test_triggered_dag_runs_to_success_and_passes_xcoms(
        env, write_dag, start_scheduler) -> None:
    write_dag("pipeline.py", """
        from datetime import datetime
        from scheduler import DAG, task
        from scheduler.operators import BashOperator

        with DAG("pipeline", schedule=None, start_date=datetime(2024, 1, 1)):
            @task
            def numbers():
                return [1, 2, 3]

            @task
            def total(values):
                return sum(values)

            echo = BashOperator(task_id="echo", bash_command="echo run {{ run_id }}")
            total(numbers()) >> echo
    """)
    scheduler = start_scheduler()
    run = hw_json(env, "dags", "trigger", "pipeline", "--run-id", "r1")
    assert run["state"] == "queued"
    assert wait_run_finished(env, "pipeline", "r1") == "success", scheduler.output()
    states = hw_json(env, "tasks", "states-for-run", "pipeline", "r1")
    assert {s["task_id"]: s["state"] for s in states} == {
        "numbers": "success", "total": "success", "echo": "success"}
    assert hw(env, "xcom", "get", "pipeline", "r1", "total").stdout.strip() == "6"
    assert hw(env, "xcom", "get", "pipeline", "r1", "echo").stdout.strip() == '"run r1"'
    log = hw(env, "tasks", "logs", "pipeline", "r1", "echo").stdout
    assert "run r1" in log


def test_failed_attempt_is_retried_and_each_attempt_keeps_its_log(
        env, home, write_dag, start_scheduler) -> None:
    marker = home / "failed-once"
    write_dag("flaky.py", f"""
        from datetime import datetime, timedelta
        from pathlib import Path
        from scheduler import DAG
        from scheduler.operators import PythonOperator

        def flaky():
            marker = Path({str(marker)!r})
            if not marker.exists():
                marker.write_text("x")
                raise RuntimeError("first try fails")
            print("second try works")

        with DAG("flaky", schedule=None, start_date=datetime(2024, 1, 1)):
            PythonOperator(task_id="flaky", python_callable=flaky, retries=1,
                           retry_delay=timedelta(seconds=0))
    """)
    start_scheduler()
    hw(env, "dags", "trigger", "flaky", "--run-id", "r1")
    assert wait_run_finished(env, "flaky", "r1") == "success"
    [ti] = hw_json(env, "tasks", "states-for-run", "flaky", "r1")
    assert ti["try_number"] == 2
    first_log = hw(env, "tasks", "logs", "flaky", "r1", "flaky", "--try", "1").stdout
    assert "first try fails" in first_log
    assert "second try works" in hw(env, "tasks", "logs", "flaky", "r1", "flaky").stdout


def test_execution_timeout_kills_the_task_and_fails_the_run(
        env, write_dag, start_scheduler) -> None:
    write_dag("slow.py", """
        from datetime import datetime, timedelta
        from scheduler import DAG
        from scheduler.operators import BashOperator

        with DAG("slow", schedule=None, start_date=datetime(2024, 1, 1)):
            BashOperator(task_id="sleepy", bash_command="sleep 30",
                         execution_timeout=timedelta(seconds=1))
    """)
    start_scheduler()
    hw(env, "dags", "trigger", "slow", "--run-id", "r1")
    assert wait_run_finished(env, "slow", "r1", timeout=20) == "failed"
    history = hw(env, "tasks", "states-for-run", "slow", "r1", "--output", "json").stdout
    assert '"failed"' in history


def test_cron_schedule_with_catchup_creates_each_missed_interval(
        env, write_dag, start_scheduler) -> None:
    now = datetime.now(UTC)
    start = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    write_dag("hourly.py", f"""
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator

        with DAG("hourly", schedule="@hourly", catchup=True,
                 start_date=datetime.fromisoformat({start.isoformat()!r})):
            EmptyOperator(task_id="tick")
    """)
    start_scheduler()
    runs = wait_for(lambda: (rs := runs_of(env, "hourly"))
                    and len([r for r in rs if r["state"] == "success"]) >= 3 and rs,
                    timeout=60, interval=0.1, message="three successful scheduled runs")
    oldest_first = sorted(runs, key=lambda r: r["logical_date"])
    for i, run in enumerate(oldest_first[:3]):
        expected_start = start + timedelta(hours=i)
        assert datetime.fromisoformat(run["logical_date"]) == expected_start
        assert datetime.fromisoformat(run["data_interval_start"]) == expected_start
        end = datetime.fromisoformat(run["data_interval_end"])
        assert end == expected_start + timedelta(hours=1)
        assert run["run_type"] == "scheduled"
        assert run["run_id"] == f"scheduled__{expected_start.isoformat()}"


def test_without_catchup_only_the_latest_interval_runs(env, write_dag, start_scheduler) -> None:
    now = datetime.now(UTC)
    start = (now - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    write_dag("nocatchup.py", f"""
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator

        with DAG("nocatchup", schedule="@hourly", catchup=False,
                 start_date=datetime.fromisoformat({start.isoformat()!r})):
            EmptyOperator(task_id="tick")
    """)
    start_scheduler()
    [run] = wait_for(lambda: runs_of(env, "nocatchup"), timeout=30,
                     interval=0.1, message="a scheduled run")
    latest_end = now.replace(minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(run["data_interval_end"]) >= latest_end
    assert datetime.fromisoformat(run["logical_date"]) >= latest_end - timedelta(hours=1)


def test_new_and_changed_dag_files_are_picked_up_while_running(
        env, write_dag, start_scheduler) -> None:
    start_scheduler()
    write_dag("late.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator

        with DAG("late", schedule=None, start_date=datetime(2024, 1, 1)):
            EmptyOperator(task_id="a")
    """)
    hw(env, "dags", "trigger", "late", "--run-id", "r1")
    assert wait_run_finished(env, "late", "r1") == "success"


def test_max_active_tasks_limits_concurrency(env, home, write_dag, start_scheduler) -> None:
    spans = home / "spans"
    spans.mkdir()
    write_dag("narrow.py", f"""
        import time
        from datetime import datetime
        from pathlib import Path
        from scheduler import DAG
        from scheduler.operators import PythonOperator

        def work(task):
            start = time.time()
            time.sleep(0.3)
            Path({str(spans)!r}, task.task_id).write_text(f"{{start}} {{time.time()}}")

        with DAG("narrow", schedule=None, start_date=datetime(2024, 1, 1), max_active_tasks=1):
            for i in range(4):
                PythonOperator(task_id=f"t{{i}}", python_callable=work)
    """)
    start_scheduler()
    hw(env, "dags", "trigger", "narrow", "--run-id", "r1")
    assert wait_run_finished(env, "narrow", "r1") == "success"
    intervals = sorted(tuple(map(float, p.read_text().split())) for p in spans.iterdir())
    assert len(intervals) == 4
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert start >= end - 0.01, "two tasks of a max_active_tasks=1 DAG overlapped"

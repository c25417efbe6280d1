"""Scheduling rules an Airflow user relies on, run through `headwater dags test` for real."""

from __future__ import annotations

import pytest

from tests.e2e.procs import hw, hw_json

pytestmark = pytest.mark.slow


def states(env, dag_id: str) -> dict[str, str]:
    result = hw(env, "dags", "test", dag_id, "--output", "json", check=False)
    import json

    run = json.loads(result.stdout)
    return {t["task_id"]: t["state"] for t in run["task_instances"]} | {"__run__": run["state"]}


def test_branch_skips_the_branches_not_taken_and_the_join_still_runs(env, write_dag) -> None:
    write_dag("branching.py", """
        from datetime import datetime
        from scheduler import DAG, task
        from scheduler.operators import BranchPythonOperator, EmptyOperator

        with DAG("branching", schedule=None, start_date=datetime(2024, 1, 1)):
            pick = BranchPythonOperator(task_id="pick", python_callable=lambda: "left")
            left = EmptyOperator(task_id="left")
            right = EmptyOperator(task_id="right")
            after_right = EmptyOperator(task_id="after_right")
            join = EmptyOperator(task_id="join", trigger_rule="none_failed_min_one_success")
            pick >> [left, right]
            right >> after_right
            [left, after_right] >> join
    """)
    assert states(env, "branching") == {
        "pick": "success", "left": "success", "right": "skipped", "after_right": "skipped",
        "join": "success", "__run__": "success"}


def test_short_circuit_false_skips_everything_downstream(env, write_dag) -> None:
    write_dag("short.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator, ShortCircuitOperator

        with DAG("short", schedule=None, start_date=datetime(2024, 1, 1)):
            gate = ShortCircuitOperator(task_id="gate", python_callable=lambda: False)
            gate >> EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
    """)
    assert states(env, "short") == {"gate": "success", "a": "skipped", "b": "skipped",
                                    "__run__": "success"}


def test_a_failure_propagates_upstream_failed_and_fails_the_run(env, write_dag) -> None:
    write_dag("failing.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import BashOperator, EmptyOperator

        with DAG("failing", schedule=None, start_date=datetime(2024, 1, 1)):
            bad = BashOperator(task_id="bad", bash_command="exit 3")
            bad >> EmptyOperator(task_id="next") >> EmptyOperator(task_id="last")
            bad >> EmptyOperator(task_id="cleanup", trigger_rule="all_done")
    """)
    assert states(env, "failing") == {
        "bad": "failed", "next": "upstream_failed", "last": "upstream_failed",
        "cleanup": "success", "__run__": "failed"}


def test_a_teardown_runs_after_a_failure_and_does_not_decide_the_run(env, write_dag) -> None:
    write_dag("setup_teardown.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import BashOperator, EmptyOperator

        with DAG("setup_teardown", schedule=None, start_date=datetime(2024, 1, 1)):
            create = EmptyOperator(task_id="create_cluster").as_setup()
            work = BashOperator(task_id="work", bash_command="exit 1")
            delete = EmptyOperator(task_id="delete_cluster").as_teardown(setups=create)
            create >> work >> delete
    """)
    result = states(env, "setup_teardown")
    assert result["delete_cluster"] == "success"
    assert result["work"] == "failed"
    assert result["__run__"] == "failed"


def test_depends_on_past_waits_for_the_previous_run(env, home, write_dag, settings) -> None:
    from datetime import UTC, datetime

    from scheduler.core.states import TaskState
    from scheduler.store import commands, queries
    from scheduler.store.db import make_engine, session_scope
    from tests.conftest import wait_for
    from tests.e2e.procs import Service, runs_of

    write_dag("past.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import BashOperator, EmptyOperator

        with DAG("past", schedule=None, start_date=datetime(2024, 1, 1)):
            BashOperator(task_id="step", depends_on_past=True,
                         bash_command="[ '{{ ds }}' != '2024-01-01' ]")

        with DAG("probe", schedule=None, start_date=datetime(2024, 1, 1)):
            EmptyOperator(task_id="noop")
    """)
    scheduler = Service(env, "scheduler", log=home / "scheduler.log")
    try:
        hw(env, "dags", "trigger", "past", "--logical-date", "2024-01-01", "--run-id", "first")
        wait_for(lambda: any(r["run_id"] == "first" and r["state"] == "failed"
                             for r in runs_of(env, "past")), timeout=30, message="first fails")
        hw(env, "dags", "trigger", "past", "--logical-date", "2024-01-02", "--run-id", "second")
        # Let the loop go round several times (a probe run finishing proves it), then look.
        for i in range(3):
            hw(env, "dags", "trigger", "probe", "--run-id", f"probe{i}")
            wait_for(lambda i=i: any(r["run_id"] == f"probe{i}" and r["state"] == "success"
                                     for r in runs_of(env, "probe")), timeout=30,
                     message="a probe run")
        [step] = hw_json(env, "tasks", "states-for-run", "past", "second")
        assert step["state"] == "none", "depends_on_past let a task start after a failed past"
        # A person marks the past task successful: the waiting one may go.
        engine = make_engine(settings.sql_alchemy_conn)
        with session_scope(engine) as session:
            first = queries.get_run(session, "past", "first")
            [ti] = queries.task_instances(session, first)
            commands.set_task_state(session, ti, TaskState.SUCCESS, now=datetime.now(UTC),
                                    reason="marked success", actor="test")
        engine.dispose()
        hw(env, "dags", "trigger", "probe", "--run-id", "wake")  # wakes the loop
        wait_for(lambda: any(r["run_id"] == "second" and r["state"] == "success"
                             for r in runs_of(env, "past")), timeout=30,
                 message="second runs once its past succeeded")
    finally:
        scheduler.stop()


def test_a_rescheduled_task_pokes_again_later_without_using_up_a_try(
        env, home, write_dag) -> None:
    pokes = home / "pokes"
    write_dag("resched.py", f"""
        from datetime import UTC, datetime, timedelta
        from pathlib import Path
        from scheduler import DAG
        from scheduler.errors import RescheduleRequested
        from scheduler.operators import PythonOperator

        def poke():
            path = Path({str(pokes)!r})
            n = int(path.read_text()) if path.exists() else 0
            path.write_text(str(n + 1))
            if n < 2:
                raise RescheduleRequested(datetime.now(UTC) + timedelta(milliseconds=200))
            return n + 1

        with DAG("resched", schedule=None, start_date=datetime(2024, 1, 1)):
            PythonOperator(task_id="wait", python_callable=poke)
    """)
    run = hw_json(env, "dags", "test", "resched")
    [ti] = run["task_instances"]
    assert (run["state"], ti["state"], ti["try_number"]) == ("success", "success", 1)
    assert hw(env, "xcom", "get", "resched", run["run_id"], "wait").stdout.strip() == "3"
    history = hw(env, "tasks", "logs", "resched", run["run_id"], "wait").stdout
    assert history.count("rescheduled to") == 2


def test_task_and_dag_callbacks_run_with_the_outcome(env, home, write_dag) -> None:
    calls = home / "calls"
    write_dag("callbacks.py", f"""
        from datetime import datetime, timedelta
        from pathlib import Path
        from scheduler import DAG
        from scheduler.operators import BashOperator, EmptyOperator

        def note(what):
            def callback(context):
                with open({str(calls)!r}, "a") as fh:
                    fh.write(f"{{what}} {{context['dag_run'].run_id}}\\n")
            return callback

        with DAG("callbacks", schedule=None, start_date=datetime(2024, 1, 1),
                 on_failure_callback=note("dag_failed"), on_success_callback=note("dag_ok")):
            EmptyOperator(task_id="fine", on_success_callback=note("task_ok"))
            BashOperator(task_id="broken", bash_command="exit 1", retries=1,
                         retry_delay=timedelta(0), on_retry_callback=note("task_retry"),
                         on_failure_callback=note("task_failed"))
    """)
    proc = hw(env, "dags", "test", "callbacks", "--output", "json", check=False)
    assert proc.returncode == 1
    import json

    run = json.loads(proc.stdout)
    lines = sorted(calls.read_text().splitlines())
    assert lines == sorted(f"{w} {run['run_id']}" for w in
                           ("task_ok", "task_retry", "task_failed", "dag_failed"))


def test_an_attempt_log_ends_with_the_recorded_outcome_with_or_without_callbacks(
        env, home, write_dag) -> None:
    # Without callbacks the task's process exits as soon as it reports and the worker writes
    # the last line; with callbacks the process waits for the recorded state and writes it.
    calls = home / "calls"
    write_dag("ends.py", f"""
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import PythonOperator

        def note(context):
            with open({str(calls)!r}, "a") as fh:
                fh.write("called\\n")

        with DAG("ends", schedule=None, start_date=datetime(2024, 1, 1)):
            PythonOperator(task_id="plain", python_callable=lambda: print("plain ran"))
            PythonOperator(task_id="called", python_callable=lambda: print("called ran"),
                           on_success_callback=note)
    """)
    run = hw_json(env, "dags", "test", "ends")
    assert run["state"] == "success"
    for task_id in ("plain", "called"):
        lines = hw(env, "tasks", "logs", "ends", run["run_id"], task_id).stdout.splitlines()
        assert f"{task_id} ran" in "\n".join(lines)
        assert lines[-1].endswith("attempt ended: success"), lines
    assert calls.read_text() == "called\n"


def test_a_sensor_timeout_fails_the_task_without_using_its_retries(env, write_dag) -> None:
    write_dag("sensor_timeout.py", """
        from datetime import datetime, timedelta
        from scheduler import DAG
        from scheduler.sensors import PythonSensor

        with DAG("sensor_timeout", schedule=None, start_date=datetime(2024, 1, 1)):
            PythonSensor(task_id="never", python_callable=lambda: False, poke_interval=0.2,
                         timeout=1, retries=3, retry_delay=timedelta(0))
    """)
    proc = hw(env, "dags", "test", "sensor_timeout", "--output", "json", check=False)
    import json

    [ti] = json.loads(proc.stdout)["task_instances"]
    assert (proc.returncode, ti["state"], ti["try_number"]) == (1, "failed", 1)

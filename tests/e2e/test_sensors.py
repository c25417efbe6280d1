"""End to end: sensors waiting in poke and reschedule mode under a real scheduler, their
timeout and soft_fail, ExternalTaskSensor across DAGs, and TriggerDagRunOperator."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from scheduler.store.db import session_scope
from scheduler.store.models import Event
from tests.conftest import wait_for
from tests.e2e.procs import Service, hw, hw_json, run_state, runs_of

pytestmark = pytest.mark.slow


def wait_finished(env: dict[str, str], dag_id: str, run_id: str, svc: Service,
                  timeout: float = 90) -> str:
    return wait_for(
        lambda: (s := run_state(env, dag_id, run_id)) in ("success", "failed") and s,
        timeout=timeout, interval=0.1, message=f"run {run_id} of {dag_id} to end\n{svc.output()}")


def ti_states(env: dict[str, str], dag_id: str, run_id: str) -> dict[str, dict[str, object]]:
    return {t["task_id"]: t for t in hw_json(env, "tasks", "states-for-run", dag_id, run_id)}


def task_moves(engine, dag_id: str, run_id: str, task_id: str) -> list[str]:
    with session_scope(engine, readonly=True) as session:
        return [e.to_state for e in session.scalars(select(Event).where(
            Event.dag_id == dag_id, Event.run_id == run_id, Event.task_id == task_id)
            .order_by(Event.id))]


def wait_parsed(env: dict[str, str], *dag_ids: str) -> None:
    wait_for(lambda: set(dag_ids) <= {d["dag_id"] for d in hw_json(env, "dags", "list")},
             timeout=60, interval=0.3, message=f"{dag_ids} to be parsed")


FILE_SENSORS = """
    from datetime import datetime
    from scheduler import DAG
    from scheduler.operators import BashOperator
    from scheduler.sensors import FileSensor

    with DAG("{dag_id}", schedule=None, start_date=datetime(2024, 1, 1)):
        FileSensor(task_id="wait", filepath="{path}", mode="{mode}", poke_interval=0.3,
                   timeout=120) >> BashOperator(task_id="after", bash_command="echo go")
"""


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_file_sensor_waits_for_the_file_then_lets_the_run_go_on(
        env, home, write_dag, engine, scheduler, mode) -> None:
    target = home / f"incoming-{mode}" / "data.csv"
    write_dag("files.py", FILE_SENSORS.format(dag_id="files", path=target, mode=mode))
    wait_parsed(env, "files")
    hw(env, "dags", "trigger", "files", "--run-id", "r1")
    wanted = "running" if mode == "poke" else "up_for_reschedule"
    wait_for(lambda: wanted in task_moves(engine, "files", "r1", "wait"), timeout=60,
             message=f"the sensor to be {wanted}")
    assert run_state(env, "files", "r1") == "running"
    target.parent.mkdir()
    target.write_text("a,b\n")
    assert wait_finished(env, "files", "r1", scheduler) == "success"
    states = ti_states(env, "files", "r1")
    # Reschedules do not use up tries: the sensor ends on its first try either way.
    assert states["wait"]["state"] == "success" and states["wait"]["try_number"] == 1
    assert states["after"]["state"] == "success"
    if mode == "reschedule":
        moves = task_moves(engine, "files", "r1", "wait")
        assert moves.count("up_for_reschedule") >= 1
        assert moves.count("running") == moves.count("up_for_reschedule") + 1


def test_python_sensor_timeout_fails_or_skips_with_soft_fail_in_both_modes(
        env, write_dag, engine, scheduler) -> None:
    write_dag("timeouts.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator
        from scheduler.sensors import PythonSensor

        with DAG("timeouts", schedule=None, start_date=datetime(2024, 1, 1)):
            for mode in ("poke", "reschedule"):
                PythonSensor(task_id=f"hard_{mode}", python_callable=lambda: False,
                             mode=mode, poke_interval=0.3, timeout=1.5)
                PythonSensor(task_id=f"soft_{mode}", python_callable=lambda: False,
                             mode=mode, poke_interval=0.3, timeout=1.5, soft_fail=True)
            PythonSensor(task_id="ready", python_callable=lambda ds: ds == "2024-03-01",
                         poke_interval=0.3, timeout=30) >> EmptyOperator(task_id="after")
    """)
    wait_parsed(env, "timeouts")
    hw(env, "dags", "trigger", "timeouts", "--run-id", "r1", "--logical-date", "2024-03-01")
    assert wait_finished(env, "timeouts", "r1", scheduler) == "failed"
    states = {k: v["state"] for k, v in ti_states(env, "timeouts", "r1").items()}
    assert states == {"hard_poke": "failed", "soft_poke": "skipped",
                      "hard_reschedule": "failed", "soft_reschedule": "skipped",
                      "ready": "success", "after": "success"}
    # The reschedule-mode timeout counts from the first poke: it ended after several
    # reschedules, not a fresh 1.5 s after each.
    moves = task_moves(engine, "timeouts", "r1", "hard_reschedule")
    assert moves.count("up_for_reschedule") >= 2 and moves[-1] == "failed"
    log = hw(env, "tasks", "logs", "timeouts", "r1", "hard_reschedule").stdout
    assert "SensorTimeout" in log and "timeout of 1.5 s" in log


def test_time_delta_sensor_waits_until_interval_end_plus_delta(env, write_dag) -> None:
    write_dag("later.py", """
        from datetime import datetime, timedelta
        from scheduler import DAG
        from scheduler.sensors import TimeDeltaSensor

        with DAG("later", schedule="@daily", start_date=datetime(2024, 1, 1)):
            TimeDeltaSensor(task_id="past", delta=timedelta(hours=1), poke_interval=0.2,
                            timeout=10)
            TimeDeltaSensor(task_id="future", delta=timedelta(days=3650), poke_interval=0.2,
                            timeout=1, soft_fail=True)
    """)
    proc = hw(env, "dags", "test", "later", "2024-03-01", "--output", "json")
    states = {t["task_id"]: t["state"] for t in json.loads(proc.stdout)["task_instances"]}
    assert states == {"past": "success", "future": "skipped"}


def test_external_task_sensor_follows_another_dags_task_and_fails_on_its_failure(
        env, write_dag, scheduler) -> None:
    write_dag("producer.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import BashOperator

        with DAG("producer", schedule=None, start_date=datetime(2024, 1, 1), params={"ok": 1}):
            BashOperator(task_id="publish", bash_command="test {{ params.ok }} = 1")
    """)
    write_dag("consumer.py", """
        from datetime import datetime, timedelta
        from scheduler import DAG
        from scheduler.sensors import ExternalTaskSensor

        with DAG("consumer", schedule=None, start_date=datetime(2024, 1, 1)):
            ExternalTaskSensor(task_id="wait_publish", external_dag_id="producer",
                               external_task_id="publish", failed_states=["failed"],
                               execution_delta=timedelta(hours=1), mode="reschedule",
                               poke_interval=0.3, timeout=120)
    """)
    wait_parsed(env, "producer", "consumer")
    hw(env, "dags", "trigger", "consumer", "--run-id", "c1", "--logical-date",
       "2024-03-01T01:00:00")
    hw(env, "dags", "trigger", "consumer", "--run-id", "c2", "--logical-date",
       "2024-03-02T01:00:00")
    wait_for(lambda: ti_states(env, "consumer", "c1")["wait_publish"]["state"]
             == "up_for_reschedule", timeout=60, message="the consumer to wait")
    hw(env, "dags", "trigger", "producer", "--run-id", "p1", "--logical-date", "2024-03-01")
    hw(env, "dags", "trigger", "producer", "--run-id", "p2", "--logical-date", "2024-03-02",
       "--conf", '{"ok": 0}')
    assert wait_finished(env, "consumer", "c1", scheduler) == "success"
    assert wait_finished(env, "consumer", "c2", scheduler) == "failed"
    log = hw(env, "tasks", "logs", "consumer", "c2", "wait_publish").stdout
    assert "ended failed" in log


def test_trigger_dagrun_passes_conf_and_waits_for_the_triggered_run(
        env, write_dag, scheduler) -> None:
    write_dag("target.py", """
        from datetime import datetime
        from scheduler import DAG, Param
        from scheduler.operators import BashOperator

        with DAG("target", schedule=None, start_date=datetime(2024, 1, 1),
                 params={"n": Param(1, type="integer")}):
            BashOperator(task_id="work",
                         bash_command="echo n={{ params.n }}; test {{ params.n }} -lt 10")
    """)
    write_dag("parent.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import TriggerDagRunOperator

        with DAG("parent", schedule=None, start_date=datetime(2024, 1, 1)):
            TriggerDagRunOperator(task_id="fire", trigger_dag_id="target", conf={"n": 3},
                                  trigger_run_id="from_{{ run_id }}")
            TriggerDagRunOperator(task_id="fire_and_wait", trigger_dag_id="target",
                                  conf={"n": 4}, trigger_run_id="waited_{{ run_id }}",
                                  wait_for_completion=True, poke_interval=0.3)
            TriggerDagRunOperator(task_id="wait_for_failure", trigger_dag_id="target",
                                  conf={"n": 11}, trigger_run_id="bad_{{ run_id }}",
                                  wait_for_completion=True, poke_interval=0.3)
            TriggerDagRunOperator(task_id="refused_conf", trigger_dag_id="target",
                                  conf={"n": "three"})
    """)
    wait_parsed(env, "target", "parent")
    hw(env, "dags", "trigger", "parent", "--run-id", "p")
    assert wait_finished(env, "parent", "p", scheduler) == "failed"
    states = {k: v["state"] for k, v in ti_states(env, "parent", "p").items()}
    assert states == {"fire": "success", "fire_and_wait": "success",
                      "wait_for_failure": "failed", "refused_conf": "failed"}
    assert hw(env, "xcom", "get", "parent", "p", "fire", "--key",
              "trigger_run_id").stdout.strip() == '"from_p"'
    target_runs = {r["run_id"]: r for r in runs_of(env, "target")}
    assert set(target_runs) == {"from_p", "waited_p", "bad_p"}
    assert target_runs["waited_p"]["state"] == "success"
    assert target_runs["bad_p"]["state"] == "failed"
    assert wait_finished(env, "target", "from_p", scheduler) == "success"
    assert hw(env, "xcom", "get", "target", "from_p", "work").stdout.strip() == '"n=3"'
    assert "refused" in hw(env, "tasks", "logs", "parent", "p", "refused_conf").stdout
    started = datetime.fromisoformat(target_runs["from_p"]["logical_date"])
    assert started.tzinfo is not None and started <= datetime.now(UTC)


def test_a_retried_trigger_goes_on_with_the_run_it_triggered(env, write_dag, scheduler) -> None:
    """The first attempt triggers, then times out while waiting; the retry waits for that
    same run instead of triggering a second one (a crash of its worker is the same case)."""
    write_dag("slow.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import BashOperator

        with DAG("slow", schedule=None, start_date=datetime(2024, 1, 1)):
            BashOperator(task_id="work", bash_command="sleep 2")
    """)
    write_dag("impatient.py", """
        from datetime import datetime, timedelta
        from scheduler import DAG
        from scheduler.operators import TriggerDagRunOperator

        with DAG("impatient", schedule=None, start_date=datetime(2024, 1, 1)):
            TriggerDagRunOperator(task_id="fire", trigger_dag_id="slow",
                                  wait_for_completion=True, poke_interval=0.2,
                                  execution_timeout=timedelta(seconds=1.5), retries=3,
                                  retry_delay=timedelta(0))
    """)
    wait_parsed(env, "slow", "impatient")
    hw(env, "dags", "trigger", "impatient", "--run-id", "i")
    assert wait_finished(env, "impatient", "i", scheduler) == "success"
    fire = ti_states(env, "impatient", "i")["fire"]
    assert fire["try_number"] > 1  # the first attempt timed out
    [run] = runs_of(env, "slow")
    assert run["state"] == "success"
    assert hw(env, "xcom", "get", "impatient", "i", "fire", "--key",
              "trigger_run_id").stdout.strip() == json.dumps(run["run_id"])
    assert "not triggering another" in hw(env, "tasks", "logs", "impatient", "i", "fire").stdout

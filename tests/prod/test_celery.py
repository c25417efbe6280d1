"""The CeleryExecutor on a PostgreSQL store: `headwater worker` processes run the tasks the
scheduler sends to their queues, over Redis and over RabbitMQ."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_for
from tests.e2e.procs import hw, hw_json, runs_of

pytestmark = pytest.mark.slow

PIPELINE = """
    from datetime import datetime
    from scheduler import DAG, task
    from scheduler.operators import BashOperator

    with DAG("celery_pipeline", schedule=None, start_date=datetime(2024, 1, 1)):
        @task
        def numbers():
            return [1, 2, 3]

        @task(queue="heavy")
        def total(values):
            print("adding up", values)
            return sum(values)

        echo = BashOperator(task_id="echo",
                            bash_command="echo total is {{ ti.xcom_pull('total') }}")
        total(numbers()) >> echo
"""


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_dag_runs_green_on_celery_workers_and_routes_to_queues(
        request, broker, prod_env, write_dag, services) -> None:
    url = (request.getfixturevalue("redis_broker").url if broker == "redis"
           else request.getfixturevalue("rabbit_broker"))
    env = {**prod_env, "HEADWATER__CELERY__BROKER_URL": url}
    write_dag("pipeline.py", PIPELINE)
    hw(env, "db", "migrate")
    default_worker = services(env, "worker", "--queues", "default", "--concurrency", "2",
                              name="worker-default")
    heavy_worker = services(env, "worker", "--queues", "heavy", "--concurrency", "1",
                            name="worker-heavy")
    services(env, "scheduler", name="scheduler")
    wait_for(lambda: runs_of(env, "celery_pipeline") is not None and hw(
        env, "dags", "list", "--output", "json", check=False).stdout.count("celery_pipeline"),
        timeout=60, message="the DAG to be parsed")
    hw(env, "dags", "trigger", "celery_pipeline", "--run-id", "r1")
    state = wait_for(
        lambda: next((r["state"] for r in runs_of(env, "celery_pipeline")
                      if r["run_id"] == "r1" and r["state"] in ("success", "failed")), None),
        timeout=120, interval=0.1, message="the run to finish")
    assert state == "success", default_worker.output()[-3000:] + heavy_worker.output()[-3000:]
    assert json.loads(hw(env, "xcom", "get", "celery_pipeline", "r1", "total").stdout) == 6
    # The task sent to the "heavy" queue ran on the worker that consumes it, and its log (written
    # by that worker into the shared logs folder) is readable from the CLI like the UI reads it.
    assert "adding up [1, 2, 3]" in hw(env, "tasks", "logs", "celery_pipeline", "r1",
                                       "total").stdout
    assert "total is 6" in hw(env, "tasks", "logs", "celery_pipeline", "r1", "echo").stdout
    states = hw_json(env, "tasks", "states-for-run", "celery_pipeline", "r1")
    assert {s["task_id"]: (s["state"], s["try_number"]) for s in states} == {
        "numbers": ("success", 1), "total": ("success", 1), "echo": ("success", 1)}

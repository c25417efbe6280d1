"""Dynamic task mapping: one task instance per element, results reduced in order."""

from __future__ import annotations

import json

import pytest

from tests.e2e.procs import hw

pytestmark = pytest.mark.slow


def _test(env, dag_id: str) -> dict:
    proc = hw(env, "dags", "test", dag_id, "--output", "json", check=False)
    return json.loads(proc.stdout)


def test_expand_over_an_upstream_xcom_and_reduce_in_map_order(env, write_dag) -> None:
    write_dag("mapped.py", """
        from datetime import datetime
        from scheduler import DAG, task

        with DAG("mapped", schedule=None, start_date=datetime(2024, 1, 1)):
            @task
            def numbers():
                return [3, 1, 2]

            @task
            def square(x, offset):
                return x * x + offset

            @task
            def total(values):
                return {"values": values, "sum": sum(values)}

            total(square.partial(offset=10).expand(x=numbers()))
    """)
    run = _test(env, "mapped")
    assert run["state"] == "success"
    squares = sorted((t["map_index"], t["state"]) for t in run["task_instances"]
                     if t["task_id"] == "square")
    assert squares == [(0, "success"), (1, "success"), (2, "success")]
    value = json.loads(hw(env, "xcom", "get", "mapped", run["run_id"], "total").stdout)
    assert value == {"values": [19, 11, 14], "sum": 44}
    one = hw(env, "xcom", "get", "mapped", run["run_id"], "square", "--map-index", "1").stdout
    assert json.loads(one) == 11


def test_expand_over_a_literal_list_with_a_classic_operator(env, write_dag) -> None:
    write_dag("bash_mapped.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import BashOperator

        with DAG("bash_mapped", schedule=None, start_date=datetime(2024, 1, 1)):
            BashOperator.partial(task_id="echo").expand(
                bash_command=["echo one", "echo two"])
    """)
    run = _test(env, "bash_mapped")
    assert run["state"] == "success"
    outputs = [json.loads(hw(env, "xcom", "get", "bash_mapped", run["run_id"], "echo",
                             "--map-index", str(i)).stdout) for i in (0, 1)]
    assert outputs == ["one", "two"]


def test_mapping_over_an_empty_list_skips_the_task_and_its_reducer(env, write_dag) -> None:
    write_dag("empty_map.py", """
        from datetime import datetime
        from scheduler import DAG, task

        with DAG("empty_map", schedule=None, start_date=datetime(2024, 1, 1)):
            @task
            def nothing():
                return []

            @task
            def double(x):
                return 2 * x

            @task
            def collect(values):
                return values

            collect(double.expand(x=nothing()))
    """)
    run = _test(env, "empty_map")
    states = {t["task_id"]: t["state"] for t in run["task_instances"]}
    assert states == {"nothing": "success", "double": "skipped", "collect": "skipped"}
    assert run["state"] == "success"


def test_one_failing_instance_fails_the_mapped_task_and_the_run(env, write_dag) -> None:
    write_dag("map_fail.py", """
        from datetime import datetime
        from scheduler import DAG, task

        with DAG("map_fail", schedule=None, start_date=datetime(2024, 1, 1)):
            @task
            def check(x):
                if x == 2:
                    raise ValueError("two is bad")
                return x

            @task
            def after(values):
                return values

            after(check.expand(x=[1, 2, 3]))
    """)
    run = _test(env, "map_fail")
    states = sorted((t["task_id"], t["map_index"], t["state"]) for t in run["task_instances"])
    assert states == [("after", -1, "upstream_failed"), ("check", 0, "success"),
                      ("check", 1, "failed"), ("check", 2, "success")]
    assert run["state"] == "failed"

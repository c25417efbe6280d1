"""The serialized DAG: the documented shape, a lossless round trip, and determinism."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import DAG, Param, TaskGroup, task
from scheduler.core.serialize import serialize_dag
from scheduler.core.serialized import SerializedDag
from scheduler.errors import CycleError
from scheduler.operators import BashOperator, EmptyOperator, PythonOperator

DOCUMENTED_DAG_KEYS = {
    "dag_id", "fileloc", "schedule", "timezone", "start_date", "end_date", "catchup",
    "max_active_runs", "max_active_tasks", "dagrun_timeout", "description", "tags", "doc_md",
    "params", "is_paused_upon_creation", "tasks",
}
DOCUMENTED_TASK_KEYS = {
    "task_id", "operator", "upstream", "downstream", "trigger_rule", "retries", "retry_delay",
    "retry_exponential_backoff", "max_retry_delay", "execution_timeout", "pool", "pool_slots",
    "priority_weight", "queue", "depends_on_past", "is_setup", "is_teardown",
    "template_fields", "doc_md", "lineno",
}


def build_etl() -> DAG:
    with DAG(
        "etl", schedule="0 2 * * *",
        start_date=datetime(2024, 1, 1, tzinfo=ZoneInfo("Europe/Amsterdam")),
        default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
        params={"n": Param(3, type="integer", minimum=1, description="how many"),
                "mode": Param("fast", enum=["fast", "slow"]), "plain": 1.5, "nothing": None},
        dagrun_timeout=timedelta(hours=1), tags=["b", "a"], description="ETL",
        on_failure_callback=print,
    ) as d:
        extract = BashOperator(task_id="extract", bash_command="echo hi",
                               execution_timeout=timedelta(seconds=90))
        with TaskGroup("transform"):
            @task
            def clean(x: str) -> str:
                return x

            cleaned = clean(extract.output)
        load = PythonOperator(task_id="load", python_callable=print, compensate=print,
                              trigger_rule="all_done", pool="db", priority_weight=5)
        cleaned >> load
    return d


def test_the_documented_shape() -> None:
    data = serialize_dag(build_etl())
    assert DOCUMENTED_DAG_KEYS <= set(data)
    for t in data["tasks"]:
        assert DOCUMENTED_TASK_KEYS <= set(t)
    assert data["schedule"] == "0 2 * * *" and data["timezone"] == "Europe/Amsterdam"
    assert data["start_date"] == "2023-12-31T23:00:00+00:00" and data["end_date"] is None
    assert data["dagrun_timeout"] == 3600.0 and data["tags"] == ["a", "b"]
    assert data["params"] == {
        "n": {"default": 3, "type": "integer", "description": "how many", "minimum": 1},
        "mode": {"default": "fast", "type": None, "description": None, "enum": ["fast", "slow"]},
        "plain": {"default": 1.5, "type": "number", "description": None},
        "nothing": {"default": None, "type": None, "description": None},
    }
    tasks = {t["task_id"]: t for t in data["tasks"]}
    extract = tasks["extract"]
    assert extract["operator"] == "BashOperator" and extract["retries"] == 2
    assert extract["retry_delay"] == 60.0 and extract["execution_timeout"] == 90.0
    assert extract["template_fields"] == ["bash_command", "env", "cwd"]
    assert extract["downstream"] == ["transform.clean"] and isinstance(extract["lineno"], int)
    load = tasks["load"]
    assert load["trigger_rule"] == "all_done" and load["pool"] == "db"
    assert load["compensate"] == "load__compensate"
    assert tasks["load__compensate"]["compensates"] == "load"
    assert tasks["transform.clean"]["operator"] == "@task"
    assert data["has_callbacks"] == {"on_success": False, "on_failure": True}
    assert data["task_groups"]["transform"]["tasks"] == ["transform.clean"]
    json.dumps(data)  # JSON-safe as it is


def test_tasks_are_in_topological_order() -> None:
    with DAG("order") as d:
        c, b, a = EmptyOperator(task_id="c"), EmptyOperator(task_id="b"), EmptyOperator(task_id="a")
        a >> b >> c
    assert [t["task_id"] for t in serialize_dag(d)["tasks"]] == ["a", "b", "c"]


def test_round_trip_through_serialized_dag() -> None:
    d = build_etl()
    sdag = SerializedDag.from_dict(json.loads(json.dumps(serialize_dag(d))))
    assert sdag.dag_id == "etl" and sdag.fileloc == __file__
    assert sdag.start_date == d.start_date and sdag.dagrun_timeout == timedelta(hours=1)
    # Compensations are kept apart from the tasks of a normal run.
    assert sdag.task_ids == [t.task_id for t in d.topological_sort()
                             if not t.task_id.endswith("__compensate")]
    assert [t.task_id for t in sdag.compensations] == ["load__compensate"]
    assert sdag.compensations[0].compensates == "load"
    load = sdag.task_dict["load"]
    assert load.priority_weight == 5 and load.trigger_rule == "all_done"
    assert sdag.task_dict["extract"].execution_timeout == timedelta(seconds=90)
    assert sdag.task_dict["extract"].retry_delay == timedelta(minutes=1)
    assert set(sdag.task_dict["load"].upstream) == {"transform.clean"}
    assert sdag.params["n"]["type"] == "integer"


def test_interval_and_manual_schedules() -> None:
    assert serialize_dag(DAG("every", schedule=timedelta(hours=6)))["schedule"] == {
        "interval": 21600.0}
    assert serialize_dag(DAG("manual"))["schedule"] is None
    assert serialize_dag(DAG("preset", schedule="@daily"))["schedule"] == "@daily"


def test_the_same_dag_serializes_identically() -> None:
    first = json.dumps(serialize_dag(build_etl()), sort_keys=True)
    second = json.dumps(serialize_dag(build_etl()), sort_keys=True)
    assert first == second


def test_the_same_file_gives_the_same_serialization(tmp_path: Path) -> None:
    source = (
        "from datetime import datetime\n"
        "from scheduler import DAG\n"
        "from scheduler.operators import EmptyOperator\n"
        "with DAG('f', start_date=datetime(2024, 1, 1)) as dag:\n"
        "    [EmptyOperator(task_id=f't{i}') for i in range(5)] >> EmptyOperator(task_id='z')\n"
    )
    path = tmp_path / "f.py"
    path.write_text(source)

    def load() -> dict[str, Any]:
        namespace: dict[str, Any] = {}
        exec(compile(source, str(path), "exec"), namespace)
        return serialize_dag(namespace["dag"])

    first, second = load(), load()
    assert first == second and first["fileloc"] == str(path)
    assert first["tasks"][-1]["upstream"] == ["t0", "t1", "t2", "t3", "t4"]


def test_a_cyclic_dag_cannot_be_serialized() -> None:
    with DAG("cyclic") as d:
        a, b = EmptyOperator(task_id="a"), EmptyOperator(task_id="b")
        a >> b >> a
    with pytest.raises(CycleError):
        serialize_dag(d)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=12).flatmap(
    lambda n: st.tuples(st.just(n), st.sets(st.tuples(st.integers(0, n - 1),
                                                      st.integers(0, n - 1))))))
def test_any_acyclic_wiring_serializes_in_dependency_order(case: tuple[int, set[Any]]) -> None:
    n, pairs = case
    edges = {(min(a, b), max(a, b)) for a, b in pairs if a != b}  # forward edges only: acyclic
    with DAG("generated") as d:
        ops = [EmptyOperator(task_id=f"t{i}") for i in range(n)]
        for a, b in sorted(edges, reverse=True):
            ops[a] >> ops[b]
    data = serialize_dag(d)
    position = {t["task_id"]: i for i, t in enumerate(data["tasks"])}
    assert len(position) == n
    for a, b in edges:
        assert position[f"t{a}"] < position[f"t{b}"]
    assert data == serialize_dag(d)

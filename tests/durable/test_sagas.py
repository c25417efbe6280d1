"""Sagas: a failed run undoes its succeeded steps, newest first, and ends compensated — or
failed, loudly, when an undo fails; `runs compensate` retries by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from scheduler.core.serialized import SerializedDag, SerializedTask
from scheduler.core.states import RunState, TaskState
from scheduler.executors.sequential import SequentialExecutor
from scheduler.loop import Scheduler, trigger_run
from scheduler.parsing.processor import parse_dags_folder
from scheduler.sagas import needed, outcome, ready
from scheduler.store import commands
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun
from scheduler.store.resources import set_pool
from tests.e2e.procs import hw, hw_json

S, N, F = TaskState.SUCCESS, TaskState.NONE, TaskState.FAILED
# a -> b -> d and a -> c -> d (a diamond), each with a compensation.
DIAMOND = SerializedDag.from_dict({
    "dag_id": "diamond", "fileloc": "", "schedule": None,
    "tasks": [
        {"task_id": "a", "downstream": ["b", "c"], "compensate": "a__compensate"},
        {"task_id": "b", "upstream": ["a"], "downstream": ["d"], "compensate": "b__compensate"},
        {"task_id": "c", "upstream": ["a"], "downstream": ["d"], "compensate": "c__compensate"},
        {"task_id": "d", "upstream": ["b", "c"], "compensate": "d__compensate"},
        *({"task_id": f"{t}__compensate", "compensates": t} for t in "abcd"),
    ],
})


def test_only_succeeded_tasks_are_compensated() -> None:
    got = needed(DIAMOND, {"a": S, "b": S, "c": F, "d": TaskState.UPSTREAM_FAILED})
    assert [c.task_id for c in got] == ["a__compensate", "b__compensate"]


def test_compensations_run_in_reverse_dependency_order() -> None:
    comps = {"a__compensate": N, "b__compensate": N, "c__compensate": N}
    assert ready(DIAMOND, comps) == ["c__compensate", "b__compensate"]
    comps["b__compensate"] = S
    assert ready(DIAMOND, comps) == ["c__compensate"]
    comps["c__compensate"] = F  # a failed undo does not stop the others
    assert ready(DIAMOND, comps) == ["a__compensate"]
    assert outcome(comps) is None
    comps["a__compensate"] = S
    assert outcome(comps) == RunState.FAILED
    assert outcome({"a__compensate": S, "b__compensate": S}) == RunState.COMPENSATED


def _saga_dag(write_dag, ledger: Path, fail_compensation: str = "") -> None:
    write_dag("saga.py", f"""
        import json, os
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import PythonOperator

        def step(name):
            def run(**_):
                with open({str(ledger)!r}, "a") as fh:
                    fh.write(name + "\\n")
                if name == "ship":
                    raise RuntimeError("carrier is down")
            return run

        def undo(name):
            def run(**_):
                if name == {fail_compensation!r} and not os.path.exists({str(ledger)!r} + ".fixed"):
                    raise RuntimeError("refund gateway is down")
                with open({str(ledger)!r}, "a") as fh:
                    fh.write("undo_" + name + "\\n")
            return run

        with DAG("saga", schedule=None, start_date=datetime(2024, 1, 1)):
            charge = PythonOperator(task_id="charge", python_callable=step("charge"),
                                    compensate=undo("charge"))
            reserve = PythonOperator(task_id="reserve", python_callable=step("reserve"),
                                     compensate=undo("reserve"))
            label = PythonOperator(task_id="label", python_callable=step("label"),
                                   compensate=undo("label"))
            ship = PythonOperator(task_id="ship", python_callable=step("ship"),
                                  compensate=undo("ship"))
            charge >> reserve >> label >> ship
    """)


@pytest.mark.slow
def test_a_failing_step_compensates_the_earlier_steps_in_reverse_order(
        env, home: Path, write_dag) -> None:
    ledger = home / "ledger.txt"
    _saga_dag(write_dag, ledger)
    proc = hw(env, "dags", "test", "saga", "--output", "json", check=False)
    assert proc.returncode == 1  # only success exits 0
    result = json.loads(proc.stdout)
    assert result["state"] == "compensated"
    assert ledger.read_text().split() == [
        "charge", "reserve", "label", "ship", "undo_label", "undo_reserve", "undo_charge"]
    states = {t["task_id"]: t["state"] for t in result["task_instances"]}
    assert states["ship"] == "failed" and "ship__compensate" not in states
    assert all(states[f"{t}__compensate"] == "success" for t in ("charge", "reserve", "label"))
    history = hw_json(env, "runs", "history", "saga", result["run_id"])
    run_moves = [(e["from_state"], e["to_state"]) for e in history if e["kind"] == "run"]
    assert run_moves[-2:] == [("running", "compensating"), ("compensating", "compensated")]


@pytest.mark.slow
def test_a_failing_compensation_fails_the_run_loudly_and_can_be_retried_by_hand(
        env, home: Path, write_dag, settings, engine) -> None:
    from scheduler.runner import drive_runs
    from scheduler.store import queries
    from scheduler.store.db import session_scope

    ledger = home / "ledger.txt"
    _saga_dag(write_dag, ledger, fail_compensation="reserve")
    result = json.loads(hw(env, "dags", "test", "saga", "-o", "json", check=False).stdout)
    assert result["state"] == "failed"
    # The other compensations still ran: as much as possible is undone.
    assert ledger.read_text().split()[-2:] == ["undo_label", "undo_charge"]
    history = hw_json(env, "runs", "history", "saga", result["run_id"])
    assert "COMPENSATION FAILED: reserve__compensate" in history[-1]["reason"]

    (home / "ledger.txt.fixed").touch()
    out = hw(env, "runs", "compensate", "saga", result["run_id"]).stdout
    assert "1 compensation" in out
    with session_scope(engine, readonly=True) as session:
        run_pk = queries.get_run(session, "saga", result["run_id"]).id
    assert drive_runs(settings, engine, [run_pk]) == {run_pk: RunState.COMPENSATED}
    assert ledger.read_text().split()[-1] == "undo_reserve"
    assert ledger.read_text().split().count("undo_charge") == 1
    again = hw(env, "runs", "compensate", "saga", result["run_id"], check=False)
    assert again.returncode != 0 and "only a failed run" in again.stderr


@pytest.mark.slow
def test_the_order_fulfillment_example_runs_and_compensates(env) -> None:
    env = {**env, "HEADWATER__CORE__DAGS_FOLDER": str(Path(__file__).parents[2] / "dags")}
    ok = hw_json(env, "dags", "test", "order_fulfillment", "--signal",
                 'warehouse_ready={"packer": "ann"}', "--signal", "picked_up={}")
    assert ok["state"] == "success"
    failed = json.loads(hw(env, "dags", "test", "order_fulfillment", "-o", "json", "--conf",
                           '{"fail_at": "create_shipping_label"}', check=False).stdout)
    assert failed["state"] == "compensated"
    states = {t["task_id"]: t["state"] for t in failed["task_instances"]}
    assert states["charge_payment__compensate"] == "success"
    assert states["reserve_inventory__compensate"] == "success"


class _Sink(SequentialExecutor):
    """An executor that takes workloads and runs nothing: the test plays the workers."""

    def free_slots(self) -> int:
        return 16

    def wait(self, timeout: float, extra=()) -> list:
        return []


def _end_attempt(engine, workload, outcome: TaskState) -> None:
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        commands.start_attempt(session, ti_id=workload.ti_id, claim=workload.claim,
                               hostname="test", pid=1, log_path="", now=now)
    with session_scope(engine) as session:
        commands.finish_attempt(session, ti_id=workload.ti_id, try_number=workload.try_number,
                                outcome=outcome, task=SerializedTask(task_id=workload.task_id),
                                xcoms={}, error=None, now=now, no_retry=True)


def test_compensations_wait_for_a_slot_of_their_pool(engine, settings, write_dag) -> None:
    write_dag("refunds.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import PythonOperator

        def noop():
            pass

        with DAG("refunds", schedule=None, start_date=datetime(2024, 1, 1)):
            charges = [
                PythonOperator(task_id=f"charge_{i}", python_callable=noop,
                               compensate=PythonOperator(task_id=f"refund_{i}",
                                                         python_callable=noop, pool="payments"))
                for i in range(3)]
            charges >> PythonOperator(task_id="ship", python_callable=noop)
    """)
    parse_dags_folder(engine, settings)
    with session_scope(engine) as session:
        set_pool(session, "payments", 1)  # the payment API takes one call at a time
        trigger_run(session, dag_id="refunds", now=datetime.now(UTC), run_id="r1")
    executor = _Sink(settings)
    loop = Scheduler(settings, engine, executor, parse=False)
    loop.start()
    queued: list = []

    def step() -> list:
        loop._told = True  # as if woken: every part of the step looks
        loop.step()
        new, executor._pending = executor._pending, []
        queued.extend(new)
        return new

    try:
        for workload in step():  # the three charges
            _end_attempt(engine, workload, TaskState.SUCCESS)
        [ship] = step()
        _end_attempt(engine, ship, TaskState.FAILED)
        refunds = step() + step()  # the run fails, then compensates
        assert len(refunds) == 1, "one slot in the payments pool: one refund at a time"
        assert step() == []  # the pool is full while it runs
        _end_attempt(engine, refunds[0], TaskState.SUCCESS)
        [second] = step()
        _end_attempt(engine, second, TaskState.SUCCESS)
        [third] = step()
        _end_attempt(engine, third, TaskState.SUCCESS)
        step()
        assert {w.task_id for w in queued if w.task_id.startswith("refund")} == {
            "refund_0", "refund_1", "refund_2"}
    finally:
        loop.stop()
    with session_scope(engine, readonly=True) as session:
        [run] = session.scalars(select(DagRun).where(DagRun.dag_id == "refunds")).all()
        assert run.state == RunState.COMPENSATED.value

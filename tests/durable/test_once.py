"""``scheduler.durable.once``: a side effect recorded in the store happens once per task
instance, however many attempts it takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.context import CurrentTask, current_task
from scheduler.durable import NotInTask, once
from scheduler.store.db import session_scope
from tests.e2e.procs import hw, hw_json


@pytest.fixture
def in_task(engine):
    token = current_task.set(CurrentTask("d/r/t", 1, 1, lambda: session_scope(engine)))
    yield
    current_task.reset(token)


def test_once_runs_the_function_the_first_time_only_and_returns_the_recorded_result(
        in_task) -> None:
    calls: list[int] = []

    @once("charge")
    def charge(amount: int) -> dict[str, int]:
        calls.append(amount)
        return {"charged": amount}

    assert charge(5) == {"charged": 5}
    assert charge(7) == {"charged": 5}
    assert calls == [5]


def test_names_and_keys_scope_the_record(in_task) -> None:
    calls: list[str] = []
    assert once("a")(lambda: calls.append("a") or 1)() == 1
    assert once("b")(lambda: calls.append("b") or 2)() == 2
    assert once("a", key="order-9")(lambda: calls.append("a9") or 3)() == 3
    assert once("a", key="order-9")(lambda: calls.append("again") or 4)() == 3
    assert calls == ["a", "b", "a9"]


def test_a_failed_call_records_nothing_and_a_non_json_result_is_refused(in_task) -> None:
    attempts: list[int] = []

    @once("flaky")
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("gateway down")
        return 42

    with pytest.raises(ConnectionError):
        flaky()
    assert flaky() == 42
    with pytest.raises(TypeError, match="JSON"):
        once("obj")(lambda: object())()


def test_once_outside_a_task_says_where_it_works() -> None:
    with pytest.raises(NotInTask, match="inside a task"):
        once("x")(lambda: 1)()


@pytest.mark.slow
def test_a_task_that_charges_then_crashes_leaves_one_ledger_entry_after_its_retry(
        env, home: Path, write_dag) -> None:
    ledger = home / "ledger.jsonl"
    write_dag("pay.py", f"""
        import json, os, signal
        from datetime import datetime, timedelta
        from scheduler import DAG
        from scheduler.durable import once
        from scheduler.operators import PythonOperator

        def pay(ti, **_):
            @once("charge")
            def charge():
                with open({str(ledger)!r}, "a") as fh:
                    fh.write(json.dumps({{"try": ti.try_number, "amount": 10}}) + "\\n")
                return {{"charge_id": "ch-" + str(ti.try_number)}}

            result = charge()
            if ti.try_number == 1:
                os.kill(os.getpid(), signal.SIGKILL)  # the process dies after charging
            return result

        with DAG("pay", schedule=None, start_date=datetime(2024, 1, 1)):
            PythonOperator(task_id="pay", python_callable=pay, retries=1,
                           retry_delay=timedelta(0))
    """)
    result = hw_json(env, "dags", "test", "pay")
    assert result["state"] == "success"
    [ti] = result["task_instances"]
    assert ti["try_number"] == 2
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert entries == [{"try": 1, "amount": 10}]
    xcom = json.loads(hw(env, "xcom", "get", "pay", result["run_id"], "pay").stdout)
    assert xcom == {"charge_id": "ch-1"}

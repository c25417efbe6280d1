"""Signals: a task waits in `deferred` (no slot, no process) for a named signal sent to its
run; the payload is its XCom; early signals are kept; timeouts fail or skip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from scheduler.core.serialized import SerializedDag
from scheduler.core.states import TaskState
from scheduler.signals import RunFinished, deliver_signals, pending_signals, send_signal
from scheduler.store import commands, queries
from scheduler.store.dags import record_dag
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, TaskInstance
from tests.e2e.procs import hw, hw_json

T0 = datetime(2024, 5, 1, tzinfo=UTC)
DAG = {"dag_id": "approve", "fileloc": "/d.py", "schedule": None,
       "tasks": [{"task_id": "wait", "operator": "SignalSensor"}]}


@pytest.fixture
def run_pk(engine) -> int:
    with session_scope(engine) as session:
        version = record_dag(session, DAG, "source", now=T0, paused_by_default=False)
        run = commands.create_run(
            session, dag=SerializedDag.from_dict(DAG), version_id=version.id, run_id="r1",
            run_type="manual", logical_date=T0, data_interval=None, run_after=T0, conf=None,
            now=T0, actor="test")
        session.flush()
        return run.id


def _defer(engine, run_pk: int, *, timeout_at: datetime | None = None,
           soft_fail: bool = False) -> int:
    """Take the run's task through an attempt that defers on signal `go`."""
    with session_scope(engine) as session:
        ti = session.scalars(select(TaskInstance).where(TaskInstance.run_pk == run_pk)).one()
        commands.set_task_state(session, ti, TaskState.SCHEDULED, now=T0, reason="t", actor="t")
        [w] = commands.queue_task_instances(session, [ti], version_id_of={run_pk: 1},
                                            timeout_of={}, job_id=None, now=T0)
        commands.start_attempt(session, ti_id=w.ti_id, claim=w.claim, hostname="h", pid=1,
                               log_path="", now=T0)
        commands.defer_attempt(session, ti_id=w.ti_id, try_number=1, signal_name="go",
                               timeout_at=timeout_at, soft_fail=soft_fail, now=T0)
        return w.ti_id


def test_a_signal_sent_before_the_task_waits_is_kept_and_delivered(engine, run_pk) -> None:
    with session_scope(engine) as session:
        sig = send_signal(session, dag_id="approve", run_id="r1", name="go",
                          payload={"ok": True}, actor="ann", now=T0)
        assert sig.consumed_by_ti_id is None
        assert [p["kind"] for p in pending_signals(session)] == ["sent"]
    ti_id = _defer(engine, run_pk)
    with session_scope(engine) as session:
        assert deliver_signals(session, T0 + timedelta(seconds=1)) == 1
    with session_scope(engine, readonly=True) as session:
        ti = session.get(TaskInstance, ti_id)
        assert ti is not None and ti.state == "success"
        assert queries.get_xcom(session, ti) == {"ok": True}
        assert pending_signals(session) == []


def test_a_signal_to_a_waiting_task_is_delivered_at_once_by_its_sender(engine, run_pk) -> None:
    ti_id = _defer(engine, run_pk)
    with session_scope(engine, readonly=True) as session:
        [waiting] = pending_signals(session)
        assert (waiting["kind"], waiting["task_id"], waiting["name"]) == ("waiting", "wait", "go")
    with session_scope(engine) as session:
        send_signal(session, dag_id="approve", run_id="r1", name="go", payload=[1, 2],
                    actor="ann", now=T0)
    with session_scope(engine, readonly=True) as session:
        ti = session.get(TaskInstance, ti_id)
        assert ti is not None and ti.state == "success"
        run = session.get(DagRun, run_pk)
        [event] = [e for e in queries.run_events(session, run) if e.to_state == "success"]
        assert event.actor == "ann" and "signal 'go'" in (event.reason or "")


@pytest.mark.parametrize(("soft_fail", "end"), [(False, "failed"), (True, "skipped")])
def test_a_wait_past_its_timeout_fails_or_with_soft_fail_skips(
        engine, run_pk, soft_fail: bool, end: str) -> None:
    ti_id = _defer(engine, run_pk, timeout_at=T0 + timedelta(hours=1), soft_fail=soft_fail)
    with session_scope(engine) as session:
        assert deliver_signals(session, T0 + timedelta(minutes=59)) == 0
        assert deliver_signals(session, T0 + timedelta(hours=1)) == 1
    with session_scope(engine, readonly=True) as session:
        ti = session.get(TaskInstance, ti_id)
        assert ti is not None and ti.state == end


def test_a_signal_to_a_finished_run_is_refused(engine, run_pk) -> None:
    with session_scope(engine) as session:
        run = session.get(DagRun, run_pk)
        run.state = "success"
    with session_scope(engine) as session, pytest.raises(RunFinished, match="in flight"):
        send_signal(session, dag_id="approve", run_id="r1", name="go", payload=None,
                    actor="ann", now=T0)


def _approval_dag(write_dag, timeout: float | None = None, soft_fail: bool = False) -> None:
    write_dag("approval.py", f"""
        from datetime import datetime
        from scheduler import DAG, task
        from scheduler.sensors.signal import SignalSensor, wait_for_signal

        with DAG("approval", schedule=None, start_date=datetime(2024, 1, 1)):
            approved = SignalSensor(task_id="approved", signal_name="approval",
                                    timeout={timeout!r}, soft_fail={soft_fail!r})

            @task
            def act(decision):
                return "shipped" if decision["ok"] else "held"

            act(approved.output) >> wait_for_signal("done", timeout={timeout!r},
                                                    soft_fail={soft_fail!r})
    """)


@pytest.mark.slow
def test_dags_test_delivers_signals_given_up_front(env, write_dag) -> None:
    _approval_dag(write_dag)
    result = hw_json(env, "dags", "test", "approval", "--signal", 'approval={"ok": true}',
                     "--signal", "done=null")
    assert result["state"] == "success"
    assert json.loads(hw(env, "xcom", "get", "approval", result["run_id"], "act").stdout) == (
        "shipped")
    history = hw_json(env, "runs", "history", "approval", result["run_id"])
    deferred = [e for e in history if e["to_state"] == "deferred"]
    assert [e["task_id"] for e in deferred] == ["approved", "wait_for_done"]


@pytest.mark.slow
@pytest.mark.parametrize(("soft_fail", "run_state"), [(False, "failed"), (True, "success")])
def test_a_signal_that_never_comes_times_out(env, write_dag, soft_fail, run_state) -> None:
    _approval_dag(write_dag, timeout=0.5, soft_fail=soft_fail)
    proc = hw(env, "dags", "test", "approval", "-o", "json", "--signal", 'approval={"ok": 0}',
              check=False)
    result = json.loads(proc.stdout)
    assert result["state"] == run_state
    states = {t["task_id"]: t["state"] for t in result["task_instances"]}
    assert states["wait_for_done"] == ("skipped" if soft_fail else "failed")


@pytest.mark.slow
def test_signals_cli_sends_and_lists(env, write_dag, home: Path) -> None:
    _approval_dag(write_dag)
    hw(env, "dags", "trigger", "approval", "--run-id", "r1")
    sent = hw_json(env, "signals", "send", "approval", "r1", "approval", "--payload",
                   '{"ok": true}', "--actor", "ann")
    assert sent["delivered"] is False  # no scheduler: nothing waits yet, the signal is kept
    [pending] = hw_json(env, "signals", "list")
    assert (pending["kind"], pending["name"], pending["sent_by"]) == ("sent", "approval", "ann")
    bad = hw(env, "signals", "send", "approval", "r1", "x", "--payload", "{nope", check=False)
    assert bad.returncode != 0 and "JSON" in bad.stderr


def test_the_loop_wakes_when_a_wait_times_out_not_at_its_next_idle_tick(
        engine, settings, run_pk) -> None:
    from scheduler.core.states import RunState
    from scheduler.executors.sequential import SequentialExecutor
    from scheduler.loop import Scheduler

    with session_scope(engine) as session:
        run = session.get(DagRun, run_pk)
        assert run is not None
        commands.set_run_state(session, run, RunState.RUNNING, now=T0, reason="t", actor="t")
    ti_id = _defer(engine, run_pk, timeout_at=T0 + timedelta(milliseconds=300))
    now = [T0 + timedelta(milliseconds=100)]
    loop = Scheduler(settings, engine, SequentialExecutor(settings), parse=False,
                     clock=lambda: now[0])
    loop.start()
    try:
        assert loop.step().next_wake <= 0.2  # the wait ends 0.2 s from now
        now[0] = T0 + timedelta(milliseconds=300)
        loop.step()
    finally:
        loop.stop()
    with session_scope(engine, readonly=True) as session:
        ti = session.get(TaskInstance, ti_id)
        assert ti is not None and ti.state == "failed"

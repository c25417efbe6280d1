"""The store's state-changing commands: transitions checked, events appended, claims honoured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from scheduler.core.serialized import SerializedDag
from scheduler.core.states import IllegalTransition, RunState, TaskState
from scheduler.store import commands, queries
from scheduler.store.dags import record_dag
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, Event, TaskInstance, XCom

T0 = datetime(2024, 5, 1, tzinfo=UTC)
DAG = {
    "dag_id": "d", "fileloc": "/dags/d.py", "schedule": None, "timezone": "UTC",
    "tasks": [
        {"task_id": "a", "upstream": [], "downstream": ["b"], "retries": 1, "retry_delay": 10.0},
        {"task_id": "b", "upstream": ["a"], "downstream": []},
    ],
}


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


def _ti(session, run_pk: int, task_id: str) -> TaskInstance:
    return session.scalars(select(TaskInstance).where(
        TaskInstance.run_pk == run_pk, TaskInstance.task_id == task_id)).one()


def _queue(engine, run_pk: int, task_id: str) -> commands.Workload:
    with session_scope(engine) as session:
        ti = _ti(session, run_pk, task_id)
        commands.set_task_state(session, ti, TaskState.SCHEDULED, now=T0, reason="t", actor="t")
        [workload] = commands.queue_task_instances(
            session, [ti], version_id_of={run_pk: 1}, timeout_of={}, job_id=None, now=T0)
        return workload


def replay(session, run_pk: int) -> tuple[str | None, dict[str, str]]:
    """Rebuild the run's and its task instances' states from the event history alone."""
    run_state: str | None = None
    ti_states: dict[str, str] = {}
    for ev in session.scalars(select(Event).where(Event.run_pk == run_pk).order_by(Event.id)):
        if ev.kind == "run":
            assert ev.from_state == run_state
            run_state = ev.to_state
        else:
            assert ev.from_state == ti_states.get(ev.task_id, "none")
            ti_states[ev.task_id] = ev.to_state
    return run_state, ti_states


def test_a_full_attempt_cycle_is_replayable_from_events(engine, run_pk) -> None:
    with session_scope(engine) as session:
        run = session.get(DagRun, run_pk)
        commands.set_run_state(session, run, RunState.RUNNING, now=T0, reason="t", actor="t")
    w = _queue(engine, run_pk, "a")
    with session_scope(engine) as session:
        assert commands.start_attempt(session, ti_id=w.ti_id, claim=w.claim, hostname="h",
                                      pid=1, log_path="/l", now=T0) is not None
        state = commands.finish_attempt(
            session, ti_id=w.ti_id, try_number=1, outcome=TaskState.FAILED,
            task=SerializedDag.from_dict(DAG).task_dict["a"], xcoms={}, error="boom",
            now=T0 + timedelta(seconds=1))
    assert state == TaskState.UP_FOR_RETRY
    with session_scope(engine) as session:
        ti = _ti(session, run_pk, "a")
        assert ti.next_retry_at == T0 + timedelta(seconds=11)
        commands.set_task_state(session, ti, TaskState.SCHEDULED, now=T0, reason="t", actor="t")
        [w2] = commands.queue_task_instances(session, [ti], version_id_of={run_pk: 1},
                                             timeout_of={}, job_id=None, now=T0)
    assert w2.try_number == 2
    with session_scope(engine) as session:
        commands.start_attempt(session, ti_id=w2.ti_id, claim=w2.claim, hostname="h", pid=1,
                               log_path="/l", now=T0)
        commands.finish_attempt(session, ti_id=w2.ti_id, try_number=2,
                                outcome=TaskState.SUCCESS,
                                task=SerializedDag.from_dict(DAG).task_dict["a"],
                                xcoms={"return_value": {"n": 1}}, error=None, now=T0)
    with session_scope(engine, readonly=True) as session:
        run = session.get(DagRun, run_pk)
        run_state, ti_states = replay(session, run_pk)
        assert run_state == run.state == "running"
        stored = {t.task_id: t.state for t in queries.task_instances(session, run)}
        replayed = {**{k: "none" for k in stored}, **ti_states}
        assert replayed == stored == {"a": "success", "b": "none"}
        assert queries.get_xcom(session, _ti(session, run_pk, "a")) == {"n": 1}
        assert [a.state for a in queries.attempts(session, _ti(session, run_pk, "a"))] == [
            "failed", "success"]


def test_a_stale_claim_cannot_start_the_attempt(engine, run_pk) -> None:
    w = _queue(engine, run_pk, "a")
    with session_scope(engine) as session:
        commands.requeue_lost(session, _ti(session, run_pk, "a"), now=T0, reason="lost")
    with session_scope(engine) as session:
        assert commands.start_attempt(session, ti_id=w.ti_id, claim=w.claim, hostname="h",
                                      pid=1, log_path="/l", now=T0) is None
        assert _ti(session, run_pk, "a").state == "scheduled"
        assert _ti(session, run_pk, "a").try_number == 0


def test_a_late_outcome_of_an_attempt_declared_dead_is_discarded(engine, run_pk) -> None:
    w = _queue(engine, run_pk, "a")
    task = SerializedDag.from_dict(DAG).task_dict["a"]
    with session_scope(engine) as session:
        commands.start_attempt(session, ti_id=w.ti_id, claim=w.claim, hostname="h", pid=1,
                               log_path="/l", now=T0)
    with session_scope(engine) as session:
        assert commands.fail_zombie(session, _ti(session, run_pk, "a"), task, now=T0,
                                    reason="zombie") == TaskState.UP_FOR_RETRY
    with session_scope(engine) as session:
        assert commands.finish_attempt(
            session, ti_id=w.ti_id, try_number=1, outcome=TaskState.SUCCESS, task=task,
            xcoms={"return_value": 1}, error=None, now=T0) is None
        assert session.scalars(select(XCom)).all() == []


def test_illegal_transitions_are_refused(engine, run_pk) -> None:
    with session_scope(engine) as session:
        ti = _ti(session, run_pk, "b")
        with pytest.raises(IllegalTransition):
            commands.set_task_state(session, ti, TaskState.RUNNING, now=T0, reason="t",
                                    actor="t")


def test_clearing_gives_the_task_its_retries_again(engine, run_pk) -> None:
    task = SerializedDag.from_dict(DAG).task_dict["a"]
    for try_number in (1, 2):
        w = _queue(engine, run_pk, "a")
        with session_scope(engine) as session:
            commands.start_attempt(session, ti_id=w.ti_id, claim=w.claim, hostname="h", pid=1,
                                   log_path="/l", now=T0)
            end = commands.finish_attempt(session, ti_id=w.ti_id, try_number=try_number,
                                          outcome=TaskState.FAILED, task=task, xcoms={},
                                          error="x", now=T0)
    assert end == TaskState.FAILED
    with session_scope(engine) as session:
        run = session.get(DagRun, run_pk)
        assert commands.clear_task_instances(session, run, [_ti(session, run_pk, "a")],
                                             SerializedDag.from_dict(DAG), now=T0,
                                             actor="user") == 1
    w = _queue(engine, run_pk, "a")
    assert w.try_number == 3
    with session_scope(engine) as session:
        commands.start_attempt(session, ti_id=w.ti_id, claim=w.claim, hostname="h", pid=1,
                               log_path="/l", now=T0)
        assert commands.finish_attempt(session, ti_id=w.ti_id, try_number=3,
                                       outcome=TaskState.FAILED, task=task, xcoms={},
                                       error="x", now=T0) == TaskState.UP_FOR_RETRY

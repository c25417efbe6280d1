"""The event history is the truth: any sequence of state changes made through the store's
commands can be replayed from the run's events to its stored state (hypothesis drives them)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from scheduler.core.serialized import SerializedDag
from scheduler.core.states import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    RunState,
    TaskState,
)
from scheduler.store import commands
from scheduler.store.dags import record_dag
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, Event, Signal, TaskInstance

T0 = datetime(2024, 5, 1, tzinfo=UTC)
DAG = {
    "dag_id": "replayed", "fileloc": "/dags/r.py", "schedule": None, "timezone": "UTC",
    "tasks": [
        {"task_id": "a", "upstream": [], "downstream": ["b"], "retries": 2, "retry_delay": 1.0,
         "compensate": "a__compensate"},
        {"task_id": "b", "upstream": ["a"], "downstream": ["c"], "retries": 0},
        {"task_id": "c", "upstream": ["b"], "downstream": [], "retries": 1},
        {"task_id": "a__compensate", "compensates": "a", "upstream": [], "downstream": []},
    ],
}
SDAG = SerializedDag.from_dict(DAG)
TASKS = {**SDAG.task_dict, **{c.task_id: c for c in SDAG.compensations}}
OPS = ["set_task", "set_run", "queue", "start", "finish", "zombie", "requeue", "clear",
       "defer", "signal", "timeout", "compensations"]
# What may happen next to a task instance in each state, so random sequences reach every
# command instead of mostly missing their preconditions.
LIFECYCLE = {
    TaskState.NONE: ["schedule", "schedule", "set_task"],
    TaskState.SCHEDULED: ["queue"],
    TaskState.QUEUED: ["start", "start", "requeue"],
    TaskState.RUNNING: ["finish", "finish", "zombie", "defer", "clear"],
    TaskState.DEFERRED: ["signal", "timeout", "clear"],
    TaskState.UP_FOR_RETRY: ["schedule", "set_task"],
}
_run_ids = itertools.count()


def replay(session, run_pk: int) -> tuple[str | None, dict[int, str]]:
    """The run's state and each task instance's, rebuilt from the events alone; checks that
    every event starts from the state the previous one left."""
    run_state: str | None = None
    states: dict[int, str] = {}
    for ev in session.scalars(select(Event).where(Event.run_pk == run_pk).order_by(Event.id)):
        if ev.kind == "run":
            assert ev.from_state == run_state, ev.reason
            run_state = ev.to_state
        else:
            assert ev.ti_id is not None
            assert ev.from_state == states.get(ev.ti_id, "none"), ev.reason
            states[ev.ti_id] = ev.to_state
    return run_state, states


def _apply(session, run: DagRun, op: str, pick: int, choice: int, now: datetime) -> None:
    """One command of the store, on a task instance chosen by ``pick`` when it applies."""
    tis = sorted(session.scalars(select(TaskInstance).where(TaskInstance.run_pk == run.id)),
                 key=lambda t: t.id)
    ti = tis[pick % len(tis)]
    task = TASKS[ti.task_id]
    state = TaskState(ti.state)
    if op == "lifecycle":  # the next step of an attempt's life, when the state has one
        op = LIFECYCLE.get(state, ["set_task"])[choice % len(LIFECYCLE.get(state, ["set_task"]))]
    if op == "set_task":
        targets = sorted(TASK_TRANSITIONS[state])
        commands.set_task_state(session, ti, targets[choice % len(targets)], now=now,
                                reason="hypothesis", actor="test")
    elif op == "schedule" and state in (TaskState.NONE, TaskState.UP_FOR_RETRY):
        commands.set_task_state(session, ti, TaskState.SCHEDULED, now=now, reason="ready",
                                actor="test")
    elif op == "set_run":
        targets = sorted(RUN_TRANSITIONS[RunState(run.state)])
        commands.set_run_state(session, run, targets[choice % len(targets)], now=now,
                               reason="hypothesis", actor="test")
    elif op == "queue" and state == TaskState.SCHEDULED:
        commands.queue_task_instances(session, [ti], version_id_of={run.id: run.version_id},
                                      timeout_of={}, job_id=None, now=now)
    elif op == "start" and state == TaskState.QUEUED:
        # Moved to queued by hand (set_task), it has no claim: no worker can start it.
        claimed = ti.claim is not None
        started = commands.start_attempt(session, ti_id=ti.id, claim=ti.claim or "",
                                         hostname="h", pid=1, log_path="", now=now)
        assert (started is not None) == claimed
    elif op == "finish" and state == TaskState.RUNNING:
        outcome = [TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED][choice % 3]
        commands.finish_attempt(session, ti_id=ti.id, try_number=ti.try_number,
                                outcome=outcome, task=task, xcoms={"return_value": choice},
                                error="boom", now=now)
    elif op == "zombie" and state == TaskState.RUNNING:
        commands.fail_zombie(session, ti, task, now=now, reason="zombie")
    elif op == "requeue" and state == TaskState.QUEUED:
        commands.requeue_lost(session, ti, now=now, reason="lost")
    elif op == "clear":
        commands.clear_task_instances(session, run, [ti], SDAG, now=now, actor="test")
    elif op == "defer" and state == TaskState.RUNNING:
        commands.defer_attempt(session, ti_id=ti.id, try_number=ti.try_number,
                               signal_name="go", timeout_at=now + timedelta(seconds=choice),
                               soft_fail=bool(choice % 2), now=now)
    elif op == "signal" and state == TaskState.DEFERRED:
        sig = Signal(run_pk=run.id, dag_id=run.dag_id, run_id=run.run_id, name="go",
                     payload={"n": choice}, sent_at=now, sent_by="test")
        session.add(sig)
        commands.resume_with_signal(session, ti, sig, now=now, actor="test")
    elif op == "timeout" and state == TaskState.DEFERRED:
        commands.end_deferral_on_timeout(session, ti, soft_fail=bool(choice % 2), now=now)
    elif op == "compensations":
        commands.add_compensation_instances(session, run, SDAG.compensations)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from([*OPS, *["lifecycle"] * 12]),
                                st.integers(0, 3), st.integers(0, 50)),
                      min_size=5, max_size=60))
def test_replaying_the_events_of_any_command_sequence_gives_the_stored_state(
        engine, steps) -> None:
    with session_scope(engine) as session:
        version = record_dag(session, DAG, "source", now=T0, paused_by_default=False)
        run = commands.create_run(
            session, dag=SDAG, version_id=version.id, run_id=f"r{next(_run_ids)}",
            run_type="manual", logical_date=T0, data_interval=None, run_after=T0, conf=None,
            now=T0, actor="test")
        session.flush()
        run_pk = run.id
    for i, (op, pick, choice) in enumerate(steps):
        with session_scope(engine) as session:
            run = session.get(DagRun, run_pk)
            assert run is not None
            _apply(session, run, op, pick, choice, T0 + timedelta(seconds=i))
    with session_scope(engine, readonly=True) as session:
        run = session.get(DagRun, run_pk)
        assert run is not None
        run_state, replayed = replay(session, run_pk)
        stored = {ti.id: ti.state for ti in session.scalars(
            select(TaskInstance).where(TaskInstance.run_pk == run_pk))}
        assert run_state == run.state
        assert {tid: replayed.get(tid, "none") for tid in stored} == stored
        assert set(replayed) <= set(stored)

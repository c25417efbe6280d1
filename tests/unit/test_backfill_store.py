"""Backfill against a real (temporary SQLite) store: which runs it creates, claims, reuses and
clears, and how a scheduler adopts the runs of a backfill that died."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from scheduler.backfill import BackfillError, plan_backfill, prepare_runs, start_job
from scheduler.core.states import RunState, TaskState
from scheduler.errors import NotFound
from scheduler.executors import make_executor
from scheduler.loop import Scheduler
from scheduler.parsing.processor import parse_dags_folder
from scheduler.store import commands
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, DagVersion, Job, TaskInstance

NOW = datetime(2024, 6, 1, tzinfo=UTC)
STALE = timedelta(seconds=30)

DAILY = """
    from datetime import datetime
    from scheduler import DAG
    from scheduler.operators import EmptyOperator

    with DAG("daily", schedule="@daily", start_date=datetime(2024, 1, 1),
             is_paused_upon_creation=True):
        EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
"""


def d(day: int) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC)


@pytest.fixture
def daily(engine, settings, write_dag) -> str:
    write_dag("daily.py", DAILY)
    parse_dags_folder(engine, settings)
    return "daily"


def _prepare(engine, *, start: datetime, end: datetime, job_id: int | None,
             rerun_failed: bool = False):
    with session_scope(engine) as session:
        plan = plan_backfill(session, "daily", start, end)
        return prepare_runs(session, "daily", plan, job_id=job_id, rerun_failed=rerun_failed,
                            now=NOW, stale_after=STALE)


def _runs(engine) -> list[DagRun]:
    with session_scope(engine, readonly=True) as session:
        runs = list(session.scalars(select(DagRun).order_by(DagRun.logical_date)))
        session.expunge_all()
        return runs


def test_runs_are_created_claimed_and_pinned_and_a_second_backfill_creates_none(
        engine, daily) -> None:
    job = start_job(engine, now=NOW)
    first = _prepare(engine, start=d(1), end=d(3), job_id=job)
    assert (first.created, first.reused) == (3, 0)
    runs = _runs(engine)
    assert [r.run_id for r in runs] == [f"backfill__2024-01-0{i}T00:00:00+00:00"
                                        for i in (1, 2, 3)]
    assert {r.run_type for r in runs} == {"backfill"}
    assert {r.claimed_by_job_id for r in runs} == {job}
    assert {r.state for r in runs} == {"queued"}
    with session_scope(engine, readonly=True) as session:
        latest = session.scalars(select(DagVersion.id)).one()
    assert {r.version_id for r in runs} == {latest}
    again = _prepare(engine, start=d(1), end=d(3), job_id=job)
    assert (again.created, again.reused) == (0, 3)
    assert sorted(again.run_pks) == sorted(first.run_pks)
    assert len(_runs(engine)) == 3


def test_finished_runs_are_left_alone_and_only_missing_dates_are_created(engine, daily) -> None:
    job = start_job(engine, now=NOW)
    _prepare(engine, start=d(1), end=d(2), job_id=job)
    with session_scope(engine) as session:
        for run in session.scalars(select(DagRun)):
            commands.set_run_state(session, run, RunState.RUNNING, now=NOW, reason="t",
                                   actor="test")
            commands.set_run_state(session, run, RunState.SUCCESS, now=NOW, reason="t",
                                   actor="test")
    with session_scope(engine, readonly=True) as session:
        assert [p.exists for p in plan_backfill(session, "daily", d(1), d(3))] == [
            True, True, False]
    wider = _prepare(engine, start=d(1), end=d(3), job_id=job)
    assert (wider.created, wider.reused, len(wider.run_pks)) == (1, 0, 1)


def test_a_run_claimed_by_a_live_backfill_is_refused_and_a_dead_ones_taken_over(
        engine, daily) -> None:
    other = start_job(engine, now=datetime.now(UTC))  # this very process: alive
    _prepare(engine, start=d(1), end=d(2), job_id=other)
    mine = start_job(engine, now=datetime.now(UTC))
    with pytest.raises(BackfillError, match="being driven by backfill job"):
        _prepare(engine, start=d(1), end=d(2), job_id=mine)
    with session_scope(engine) as session:
        job = session.get(Job, other)
        assert job is not None
        job.pid = _dead_pid()
    taken = _prepare(engine, start=d(1), end=d(2), job_id=mine)
    assert taken.reused == 2
    assert {r.claimed_by_job_id for r in _runs(engine)} == {mine}


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_rerun_failed_clears_failed_tasks_and_moves_the_run_to_the_latest_version(
        engine, settings, write_dag, daily) -> None:
    _prepare(engine, start=d(1), end=d(1), job_id=None)
    with session_scope(engine) as session:
        run = session.scalars(select(DagRun)).one()
        commands.set_run_state(session, run, RunState.RUNNING, now=NOW, reason="t", actor="t")
        for ti in session.scalars(select(TaskInstance)):
            to = TaskState.FAILED if ti.task_id == "a" else TaskState.UPSTREAM_FAILED
            if to == TaskState.FAILED:
                for step in (TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING):
                    commands.set_task_state(session, ti, step, now=NOW, reason="t", actor="t")
                ti.try_number = 1
            commands.set_task_state(session, ti, to, now=NOW, reason="t", actor="t")
        commands.set_run_state(session, run, RunState.FAILED, now=NOW, reason="t", actor="t")
        old_version = run.version_id
    # The user fixes the file (same tasks, new content): the rerun takes the new version.
    write_dag("daily.py", DAILY + "    # fixed\n")
    parse_dags_folder(engine, settings)
    plain = _prepare(engine, start=d(1), end=d(1), job_id=None)
    assert (plain.rerun, plain.run_pks) == (0, [])
    rerun = _prepare(engine, start=d(1), end=d(1), job_id=None, rerun_failed=True)
    assert (rerun.rerun, rerun.reused, len(rerun.run_pks)) == (1, 0, 1)
    with session_scope(engine, readonly=True) as session:
        run = session.scalars(select(DagRun)).one()
        assert run.state == "queued" and run.version_id != old_version
        states = {ti.task_id: (ti.state, ti.try_number)
                  for ti in session.scalars(select(TaskInstance))}
    assert states == {"a": ("none", 1), "b": ("none", 0)}


def test_a_manual_only_dag_and_a_reversed_range_are_refused_with_advice(
        engine, settings, write_dag, daily) -> None:
    write_dag("manual.py", DAILY.replace('"daily", schedule="@daily"',
                                         '"manual", schedule=None'))
    parse_dags_folder(engine, settings)
    with session_scope(engine, readonly=True) as session:
        with pytest.raises(BackfillError, match="dags trigger"):
            plan_backfill(session, "manual", d(1), d(2))
        with pytest.raises(BackfillError, match="swap them"):
            plan_backfill(session, "daily", d(2), d(1))
        with pytest.raises(NotFound):
            plan_backfill(session, "nope", d(1), d(2))


def test_a_scheduler_adopts_the_unfinished_runs_of_a_dead_backfill(
        engine, settings, daily) -> None:
    job = start_job(engine, now=datetime.now(UTC))
    _prepare(engine, start=d(1), end=d(2), job_id=job)
    loop = Scheduler(settings, engine, make_executor(settings, "sequential"), parse=False)
    loop.start()
    try:
        loop._housekeeping(datetime.now(UTC), force=True)
        assert {r.claimed_by_job_id for r in _runs(engine)} == {job}, "alive: left alone"
        with session_scope(engine) as session:
            row = session.get(Job, job)
            assert row is not None
            row.pid = _dead_pid()
        loop._housekeeping(datetime.now(UTC), force=True)
        assert {r.claimed_by_job_id for r in _runs(engine)} == {None}
    finally:
        loop.stop()

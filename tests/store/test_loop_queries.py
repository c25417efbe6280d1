"""The scheduling loop's cost in SQL statements does not grow with the number of runs (no N+1
on the hot path)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event

from scheduler.core.serialized import SerializedDag
from scheduler.core.states import RunState
from scheduler.executors.sequential import SequentialExecutor
from scheduler.loop import Scheduler
from scheduler.store import commands
from scheduler.store.dags import record_dag
from scheduler.store.db import session_scope

T0 = datetime(2024, 5, 1, tzinfo=UTC)
DAG = {
    "dag_id": "wide", "fileloc": "/dags/wide.py", "schedule": None, "timezone": "UTC",
    "tasks": [{"task_id": f"t{i}", "upstream": [] if i < 5 else [f"t{i - 5}"],
               "downstream": [f"t{i + 5}"] if i < 5 else []} for i in range(10)],
}


def _make_runs(engine, first: int, count: int) -> None:
    with session_scope(engine) as session:
        version = record_dag(session, DAG, "source", now=T0, paused_by_default=False)
        for i in range(first, first + count):
            run = commands.create_run(
                session, dag=SerializedDag.from_dict(DAG), version_id=version.id,
                run_id=f"r{i}", run_type="manual", logical_date=T0 + timedelta(hours=i),
                data_interval=None, run_after=T0, conf=None, now=T0, actor="test")
            session.flush()
            commands.set_run_state(session, run, RunState.RUNNING, now=T0, reason="t",
                                   actor="test")


def _statements_of_one_decision(engine, loop: Scheduler) -> int:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(engine, readonly=True) as session:
            plan = loop._plan(session, T0)
        assert plan is not None
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len([s for s in statements if not s.startswith(("BEGIN", "PRAGMA"))])


def test_deciding_twenty_runs_takes_as_many_statements_as_deciding_three(
        engine, settings) -> None:
    loop = Scheduler(settings, engine, SequentialExecutor(settings), parse=False)
    _make_runs(engine, 0, 3)
    _statements_of_one_decision(engine, loop)  # warm the loop's version cache
    few = _statements_of_one_decision(engine, loop)
    _make_runs(engine, 3, 17)
    many = _statements_of_one_decision(engine, loop)
    assert many == few
    assert few <= 8


def _statements_of_a_step(engine, loop: Scheduler) -> list[tuple[str, str]]:
    """(SQL, its parameters as text) of each statement one step of ``loop`` executes."""
    statements: list[tuple[str, str]] = []

    def record(_conn, _cursor, statement, parameters, *_args) -> None:
        statements.append((statement, str(parameters)))

    event.listen(engine, "before_cursor_execute", record)
    try:
        loop.step()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return statements


def _looks_for(statements: list[tuple[str, str]]) -> set[str]:
    """What the loop looked for besides the running runs: runs a schedule owes, queued runs
    to start, deferred task instances to deliver signals to, compensating runs."""
    found = set()
    for sql, params in statements:
        if "next_run_after" in sql:
            found.add("runs owed")
        if "FROM dag_run" in sql and "'queued'" in params:
            found.add("queued runs")
        if "'deferred'" in params:
            found.add("signals")
        if "'compensating'" in params:
            found.add("sagas")
    return found


def test_a_step_with_nothing_new_does_not_look_for_runs_signals_or_sagas(
        engine, settings) -> None:
    now = [T0]
    loop = Scheduler(settings, engine, SequentialExecutor(settings), parse=False,
                     clock=lambda: now[0])
    _make_runs(engine, 0, 3)
    loop.start()
    try:
        everything = {"runs owed", "queued runs", "signals", "sagas"}
        assert _looks_for(_statements_of_a_step(engine, loop)) == everything
        # The same instant, nothing told, no run ended (an attempt's end wakes the loop so):
        # only the running runs are read.
        quiet = _statements_of_a_step(engine, loop)
        assert _looks_for(quiet) == set()
        assert quiet, "the running runs are still decided"
        # Once a second the loop looks at everything again, for changes nobody told it.
        now[0] = T0 + timedelta(seconds=1)
        assert _looks_for(_statements_of_a_step(engine, loop)) == everything
    finally:
        loop.stop()


class _Holding(SequentialExecutor):
    """An executor that says it still holds other work of a run (or not), with no free slot."""

    def __init__(self, settings, holds: bool) -> None:
        super().__init__(settings)
        self.holds = holds

    def holds_other_of_run(self, dag_id: str, run_id: str, ti_id: int) -> bool:
        return self.holds

    def free_slots(self) -> int:
        return 0


def test_only_events_that_can_change_a_decision_wake_the_loop(engine, settings) -> None:
    from scheduler.executors.base import ExecutorEvent

    _make_runs(engine, 0, 1)
    executor = _Holding(settings, holds=True)
    loop = Scheduler(settings, engine, executor, parse=False)
    _statements_of_one_decision(engine, loop)  # the loop now holds the DAG's version
    [version_id] = loop._versions

    def ended(task_id: str, state: str = "success") -> ExecutorEvent:
        w = commands.Workload(ti_id=1, dag_id="wide", run_id="r0", task_id=task_id,
                              map_index=-1, try_number=1, version_id=version_id, claim="c")
        return ExecutorEvent("recorded", 1, 1, state, w)

    # A leaf's success while its run has other work here: nothing waits for it, the run goes on.
    assert not loop._needs_step(ended("t7"))
    # Its downstream may be ready now; a failure may retry or decide the run.
    assert loop._needs_step(ended("t2"))
    assert loop._needs_step(ended("t7", "failed"))
    assert loop._needs_step(ExecutorEvent("recorded", 1, 1))  # not known to this executor
    assert loop._needs_step(ExecutorEvent("lost", 1, 1))
    # The run's last work: it may have ended.
    executor.holds = False
    assert loop._needs_step(ended("t7"))
    # A free worker matters only to task instances waiting for one, if a slot is free.
    loop._starved = False
    assert not loop._needs_step(ExecutorEvent("done", 1, 1))

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

"""Driving chosen runs to their end from the caller's process, without a scheduler service:
``headwater dags test`` today, backfill later. Uses the same loop as the scheduler, restricted to
those runs."""

from __future__ import annotations

from collections.abc import Callable, Collection

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from scheduler.config import Settings
from scheduler.core.states import FINISHED_RUN_STATES, RunState
from scheduler.executors import make_executor
from scheduler.loop import Scheduler
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun


def unfinished(engine: Engine, run_pks: Collection[int]) -> int:
    with session_scope(engine, readonly=True) as session:
        return session.scalar(
            select(func.count()).where(
                DagRun.id.in_(list(run_pks)),
                DagRun.state.not_in([s.value for s in FINISHED_RUN_STATES]),
            )
        ) or 0


def drive_runs(
    settings: Settings,
    engine: Engine,
    run_pks: Collection[int],
    *,
    executor: str = "sequential",
    on_step: Callable[[], None] | None = None,
) -> dict[int, RunState]:
    """Run the loop over ``run_pks`` until each has finished; return their end states."""
    loop = Scheduler(settings, engine, make_executor(settings, executor), run_pks=run_pks,
                     parse=False, job_kind="runner")
    loop.start()

    def done() -> bool:
        if on_step:
            on_step()
        return unfinished(engine, run_pks) == 0

    try:
        loop.run(until=done)
    finally:
        loop.stop(graceful=True)
    with session_scope(engine, readonly=True) as session:
        rows = session.execute(
            select(DagRun.id, DagRun.state).where(DagRun.id.in_(list(run_pks)))).all()
    return {pk: RunState(state) for pk, state in rows}

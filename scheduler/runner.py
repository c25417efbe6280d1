"""Driving chosen runs to their end from the caller's process, without a scheduler service:
``headwater dags test`` today, backfill later. Uses the same loop as the scheduler, restricted to
those runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from scheduler.config import Settings
from scheduler.core.states import FINISHED_RUN_STATES, RunState
from scheduler.executors import make_executor
from scheduler.loop import IDLE_WAKE_SECONDS, Scheduler
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
    job_id: int | None = None,
    job_kind: str = "runner",
    max_active_runs: int | None = None,
    newest_first: bool = False,
) -> dict[int, RunState]:
    """Run the loop over ``run_pks`` until each has finished; return their end states.

    ``on_step`` is called after every step of the loop (keep it cheap). ``job_id`` is an
    existing Job row of this process to heartbeat (a backfill claims its runs with it first);
    None creates one of ``job_kind``. ``max_active_runs`` overrides the DAGs' limit, counted
    over these runs only; ``newest_first`` starts the newest queued run first.
    """
    loop = Scheduler(settings, engine, make_executor(settings, executor), run_pks=run_pks,
                     parse=False, job_kind=job_kind, job_id=job_id,
                     max_active_runs=max_active_runs, newest_first=newest_first)
    loop.start()
    left: int | None = None
    look_again_at = 0.0

    def done() -> bool:
        nonlocal left, look_again_at
        if on_step:
            on_step()
        # Count the unfinished runs only when a step ended one (or all had ended), and on the
        # loop's slow timer for runs ended elsewhere (a user marking one): most steps end none.
        mono = time.monotonic()
        if left is None or left == 0 or loop.last_step.finished_runs or mono >= look_again_at:
            left = unfinished(engine, run_pks)
            look_again_at = mono + IDLE_WAKE_SECONDS
        # Also wait for what the executor still holds (a finished run's DAG callback).
        return left == 0 and not loop.executor.running()

    try:
        loop.run(until=done)
    finally:
        loop.stop(graceful=True)
    with session_scope(engine, readonly=True) as session:
        rows = session.execute(
            select(DagRun.id, DagRun.state).where(DagRun.id.in_(list(run_pks)))).all()
    return {pk: RunState(state) for pk, state in rows}

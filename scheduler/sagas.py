"""Saga compensation: undoing the succeeded steps of a failed run.

A task declared with ``compensate=`` has a compensation task (``<task_id>__compensate``, or the
task given) kept apart from the run's normal tasks (``SerializedDag.compensations``). When a run
ends ``failed`` and some of its tasks with a compensation had succeeded, the run goes
``compensating`` instead: a task instance is created for each of those compensations, and they
run in reverse dependency order — the compensation of task T starts once the compensations of
every task downstream of T (transitively) have finished — each with its own retries, logs and
events. The run ends ``compensated`` when all succeeded, or ``failed`` (logged as an error, with
the failed compensations named in the run's event) when any failed; the others still run, so as
much as possible is undone. ``headwater runs compensate`` starts (or retries) this by hand for a
failed run.

The decisions (:func:`needed`, :func:`ready`, :func:`outcome`) are pure functions of the
serialized DAG and states; :func:`advance_sagas` is the loop's I/O shell around them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from scheduler.core.serialized import SerializedDag, SerializedTask
from scheduler.core.states import FINISHED_TASK_STATES, RunState, TaskState
from scheduler.errors import HeadwaterError
from scheduler.store import commands
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, DagVersion, TaskInstance

log = logging.getLogger("headwater.sagas")

VersionLookup = Callable[[Session, int], SerializedDag]
#: Picks which scheduled task instances to queue now (ids), given their runs by primary key.
Chooser = Callable[[Session, Sequence[TaskInstance], Mapping[int, DagRun]], list[int]]


class NothingToCompensate(HeadwaterError):  # noqa: N818 - names the situation
    """``runs compensate`` on a run that cannot or need not be compensated."""


# -- pure decisions -----------------------------------------------------------------------------


def compensation_of(dag: SerializedDag) -> dict[str, SerializedTask]:
    """Task id -> the compensation task that undoes it."""
    return {c.compensates: c for c in dag.compensations if c.compensates}


def needed(dag: SerializedDag, states: Mapping[str, TaskState]) -> list[SerializedTask]:
    """The compensations to run for a failed run whose task states are ``states``: those of
    the tasks that ended ``success``, in the DAG's topological order of the tasks they undo."""
    comps = compensation_of(dag)
    return [comps[t.task_id] for t in dag.tasks
            if t.task_id in comps and states.get(t.task_id) == TaskState.SUCCESS]


def _descendants(dag: SerializedDag, task_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(dag.task_dict[task_id].downstream) if task_id in dag.task_dict else []
    while stack:
        tid = stack.pop()
        if tid not in seen:
            seen.add(tid)
            stack.extend(dag.task_dict[tid].downstream if tid in dag.task_dict else ())
    return seen


def ready(dag: SerializedDag, comp_states: Mapping[str, TaskState]) -> list[str]:
    """Compensation task ids (keys of ``comp_states``, their states in this run) in state
    ``none`` that may start: every compensation of a task downstream of the task they undo has
    finished (whatever its outcome). In reverse topological order of the tasks undone."""
    by_id = {c.task_id: c for c in dag.compensations}
    undone = {cid: by_id[cid].compensates for cid in comp_states if cid in by_id}
    out = []
    for cid, state in comp_states.items():
        target = undone.get(cid)
        if state != TaskState.NONE or target is None:
            continue
        below = _descendants(dag, target)
        if all(comp_states[other] in FINISHED_TASK_STATES
               for other, t in undone.items() if other != cid and t in below):
            out.append(cid)
    order = {t.task_id: i for i, t in enumerate(dag.tasks)}
    return sorted(out, key=lambda cid: -order.get(undone[cid] or "", 0))


def outcome(comp_states: Mapping[str, TaskState]) -> RunState | None:
    """``compensated`` once every compensation succeeded (or was skipped), ``failed`` once all
    finished and any failed, None while any is unfinished."""
    if any(s not in FINISHED_TASK_STATES for s in comp_states.values()):
        return None
    if any(s in (TaskState.FAILED, TaskState.UPSTREAM_FAILED) for s in comp_states.values()):
        return RunState.FAILED
    return RunState.COMPENSATED


# -- the store side -----------------------------------------------------------------------------


def begin_compensation(
    session: Session, run: DagRun, dag: SerializedDag, tis: Sequence[TaskInstance], *,
    now: datetime, reason: str, actor: str = commands.SCHEDULER,
) -> bool:
    """If ``run`` (running or failed) has succeeded tasks with compensations, create their task
    instances and move the run to ``compensating``; returns whether it did. The caller owns
    the transaction."""
    states = {ti.task_id: TaskState(ti.state) for ti in tis if ti.map_index <= 0}
    todo = needed(dag, states)
    if not todo:
        return False
    commands.add_compensation_instances(session, run, todo)
    commands.set_run_state(
        session, run, RunState.COMPENSATING, now=now, actor=actor,
        reason=f"{reason}; compensating {len(todo)} succeeded task(s): "
               + ", ".join(c.compensates or "" for c in reversed(todo)))
    return True


def request_compensation(session: Session, run: DagRun, *, actor: str, now: datetime) -> int:
    """Compensate a ``failed`` run by hand (``headwater runs compensate``): the compensations
    of its succeeded tasks that have not succeeded yet run (again); the run goes
    ``compensating``. Returns how many compensations will run. Raises
    :class:`NothingToCompensate` when the run is not failed or has nothing to undo."""
    if run.state != RunState.FAILED.value:
        raise NothingToCompensate(
            f"run {run.run_id!r} of {run.dag_id!r} is {run.state}; only a failed run can be "
            "compensated (wait for it to end, or mark a task failed first)")
    version = session.get(DagVersion, run.version_id)
    assert version is not None
    dag = SerializedDag.from_dict(version.serialized)
    tis = list(session.scalars(select(TaskInstance).where(TaskInstance.run_pk == run.id)))
    states = {ti.task_id: TaskState(ti.state) for ti in tis if ti.map_index <= 0}
    todo = needed(dag, states)
    comp_ids = {c.task_id for c in todo}
    again = [ti for ti in tis if ti.task_id in comp_ids and ti.state != TaskState.SUCCESS.value]
    fresh = [c for c in todo if c.task_id not in states]
    if not again and not fresh:
        raise NothingToCompensate(
            f"run {run.run_id!r} of {run.dag_id!r} has nothing to compensate: no succeeded "
            "task with compensate=, or every compensation already succeeded")
    for ti in again:
        commands.set_task_state(session, ti, TaskState.NONE, now=now, actor=actor,
                                reason=f"compensation requested by {actor}")
        task = next(c for c in todo if c.task_id == ti.task_id)
        ti.max_tries = ti.try_number + task.retries
    commands.add_compensation_instances(session, run, fresh)
    commands.set_run_state(session, run, RunState.COMPENSATING, now=now, actor=actor,
                           reason=f"compensation requested by {actor}")
    return len(again) + len(fresh)


@dataclass
class SagaStep:
    """What :func:`advance_sagas` did: the workloads to hand to the executor, how many runs
    were compensating when it looked, and how many of them it ended."""

    workloads: list[commands.Workload] = field(default_factory=list)
    compensating: int = 0
    ended: int = 0


def advance_sagas(
    engine: Engine,
    version: VersionLookup,
    now: datetime,
    *,
    run_filter: Sequence[Any] = (),
    choose: Chooser,
    job_id: int | None = None,
) -> SagaStep:
    """One loop step for every ``compensating`` run: schedule the compensations that may
    start (and retries that are due), end runs whose compensations all finished, and queue
    the scheduled compensations ``choose`` picks (the loop's choice for any task: within the
    executor's free slots, pools and ``max_active_tasks``). Takes the write lock only when
    some run is compensating."""
    step = SagaStep()
    with session_scope(engine, readonly=True) as session:
        if session.scalar(select(DagRun.id).where(
                DagRun.state == RunState.COMPENSATING.value, *run_filter).limit(1)) is None:
            return step
    workloads = step.workloads
    with session_scope(engine) as session:
        runs = session.scalars(select(DagRun).where(
            DagRun.state == RunState.COMPENSATING.value, *run_filter)
            .order_by(DagRun.logical_date, DagRun.id)).all()
        step.compensating = len(runs)
        scheduled: list[TaskInstance] = []  # across runs, oldest run first
        timeouts: dict[int, float | None] = {}
        for run in runs:
            dag = version(session, run.version_id)
            comp_ids = {c.task_id for c in dag.compensations}
            tis = {ti.task_id: ti for ti in session.scalars(select(TaskInstance).where(
                TaskInstance.run_pk == run.id, TaskInstance.task_id.in_(comp_ids)))}
            for ti in tis.values():
                if ti.state == TaskState.UP_FOR_RETRY.value and (
                        ti.next_retry_at is None or ti.next_retry_at <= now):
                    commands.set_task_state(session, ti, TaskState.SCHEDULED, now=now,
                                            reason="retry due", actor=commands.SCHEDULER)
            states = {tid: TaskState(ti.state) for tid, ti in tis.items()}
            for cid in ready(dag, states):
                commands.set_task_state(
                    session, tis[cid], TaskState.SCHEDULED, now=now, actor=commands.SCHEDULER,
                    reason="compensations of the tasks downstream have finished")
                states[cid] = TaskState.SCHEDULED
            end = outcome(states)
            if end == RunState.FAILED:
                bad = sorted(t for t, s in states.items() if s != TaskState.SUCCESS)
                reason = ("COMPENSATION FAILED: " + ", ".join(bad) + " did not succeed; the "
                          "effects they undo may still be in place and need a person's "
                          "attention (retry with `headwater runs compensate`)")
                log.error("run %s of %s: %s", run.run_id, run.dag_id, reason)
                commands.set_run_state(session, run, end, now=now, reason=reason,
                                       actor=commands.SCHEDULER)
                step.ended += 1
                continue
            if end == RunState.COMPENSATED:
                commands.set_run_state(session, run, end, now=now, actor=commands.SCHEDULER,
                                       reason="every compensation succeeded")
                step.ended += 1
                continue
            by_id = {c.task_id: c for c in dag.compensations}
            for task_id, state in states.items():
                if state == TaskState.SCHEDULED:
                    ti = tis[task_id]
                    scheduled.append(ti)
                    limit = by_id[task_id].execution_timeout
                    timeouts[ti.id] = limit.total_seconds() if limit else None
        if scheduled:
            run_by_pk = {run.id: run for run in runs}
            chosen = set(choose(session, scheduled, run_by_pk))
            to_queue = [ti for ti in scheduled if ti.id in chosen]
            if to_queue:
                workloads += commands.queue_task_instances(
                    session, to_queue,
                    version_id_of={ti.run_pk: run_by_pk[ti.run_pk].version_id
                                   for ti in to_queue},
                    timeout_of=timeouts, job_id=job_id, now=now)
    return step

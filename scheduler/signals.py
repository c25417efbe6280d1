"""Signals: named messages with a JSON payload, sent to a run (human approval, a webhook).

A task waits for one with ``SignalSensor`` / ``wait_for_signal``: its attempt raises
:class:`~scheduler.errors.DeferToSignal` and the worker parks it in ``deferred`` (no worker
slot, no process). A signal is addressed to a run; it is delivered to a task instance of that
run deferred on that name — at once when :func:`send_signal` finds one waiting, otherwise by
:func:`deliver_signals`, which the scheduling loop calls every step — or kept until one waits.
Delivery consumes the signal (one signal, one waiting task instance, oldest first), stores its
payload as the task's ``return_value`` XCom and ends the task instance ``success``; all through
the store's commands, so each is an event of the run's history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.core.states import FINISHED_RUN_STATES, RunState, TaskState
from scheduler.errors import HeadwaterError, NotFound
from scheduler.store import commands
from scheduler.store.models import DagRun, Signal, TaskInstance

log = logging.getLogger("headwater.signals")


class RunFinished(HeadwaterError):  # noqa: N818 - names the situation
    """A signal was sent to a run that has already ended."""


def _run(session: Session, dag_id: str, run_id: str) -> DagRun:
    run = session.scalars(select(DagRun).where(
        DagRun.dag_id == dag_id, DagRun.run_id == run_id)).first()
    if run is None:
        raise NotFound(f"no run {run_id!r} of DAG {dag_id!r}; `headwater dags list-runs "
                       f"{dag_id}` lists its runs")
    return run


def send_signal(
    session: Session,
    *,
    dag_id: str,
    run_id: str,
    name: str,
    payload: Any,
    actor: str,
    now: datetime,
) -> Signal:
    """Send signal ``name`` with ``payload`` (JSON data) to a run, as ``actor`` (a user name,
    an API token's name, ``cli``). Delivered at once to a task instance of the run waiting for
    it, else kept for the first one that waits. Returns the stored signal (``consumed_by_ti_id``
    tells whether it was delivered). Raises :class:`NotFound` for an unknown run and
    :class:`RunFinished` for a run that has ended."""
    if not name:
        raise ValueError("a signal needs a name, e.g. `approval`")
    run = _run(session, dag_id, run_id)
    if RunState(run.state) in FINISHED_RUN_STATES:
        raise RunFinished(f"run {run_id!r} of {dag_id!r} has ended ({run.state}); signals go to "
                          "runs in flight")
    signal = Signal(run_pk=run.id, dag_id=dag_id, run_id=run_id, name=name, payload=payload,
                    sent_at=now, sent_by=actor)
    session.add(signal)
    session.flush()
    waiting = session.scalars(
        select(TaskInstance).where(
            TaskInstance.run_pk == run.id, TaskInstance.state == TaskState.DEFERRED.value,
            TaskInstance.defer_signal == name)
        .order_by(TaskInstance.id).limit(1)).first()
    if waiting is not None:
        commands.resume_with_signal(session, waiting, signal, now=now, actor=actor)
    return signal


def pending_signals(session: Session) -> list[dict[str, Any]]:
    """What is waiting: task instances deferred on a signal (``kind`` ``"waiting"``) and
    signals sent but not delivered yet (``kind`` ``"sent"``), oldest first. Each dict has
    ``kind, dag_id, run_id, name, task_id, map_index, since, timeout_at, sent_by, payload``
    (fields that do not apply are None)."""
    rows: list[dict[str, Any]] = []
    for ti in session.scalars(select(TaskInstance).where(
            TaskInstance.state == TaskState.DEFERRED.value,
            TaskInstance.defer_signal.is_not(None)).order_by(TaskInstance.id)):
        rows.append({"kind": "waiting", "dag_id": ti.dag_id, "run_id": ti.run_id,
                     "name": ti.defer_signal, "task_id": ti.task_id, "map_index": ti.map_index,
                     "since": ti.start_date, "timeout_at": ti.defer_timeout_at,
                     "sent_by": None, "payload": None})
    for sig in session.scalars(select(Signal).where(Signal.consumed_at.is_(None))
                               .order_by(Signal.id)):
        rows.append({"kind": "sent", "dag_id": sig.dag_id, "run_id": sig.run_id,
                     "name": sig.name, "task_id": None, "map_index": None,
                     "since": sig.sent_at, "timeout_at": None, "sent_by": sig.sent_by,
                     "payload": sig.payload})
    return rows


def _soft_fail(session: Session, ti: TaskInstance) -> bool:
    """Whether the current deferral of ``ti`` skips on timeout."""
    return bool(ti.defer_soft_fail)


def deliver_signals(session: Session, now: datetime, *, run_filter: Sequence[Any] = ()) -> int:
    """Deliver kept signals to the task instances now waiting for them, and end the waits
    whose timeout has passed (``failed``, or ``skipped`` with ``soft_fail``). ``run_filter``:
    extra SQL clauses on :class:`DagRun` restricting the runs looked at. Returns how many task
    instances changed state. The caller owns the transaction."""
    deferred = session.scalars(
        select(TaskInstance).join(DagRun, DagRun.id == TaskInstance.run_pk).where(
            TaskInstance.state == TaskState.DEFERRED.value,
            TaskInstance.defer_signal.is_not(None), *run_filter)
        .order_by(TaskInstance.id)).all()
    if not deferred:
        return 0
    kept: dict[tuple[int, str], list[Signal]] = {}
    for sig in session.scalars(select(Signal).where(
            Signal.consumed_at.is_(None),
            Signal.run_pk.in_({ti.run_pk for ti in deferred})).order_by(Signal.id)):
        kept.setdefault((sig.run_pk, sig.name), []).append(sig)
    changed = 0
    for ti in deferred:
        assert ti.defer_signal is not None
        queue = kept.get((ti.run_pk, ti.defer_signal))
        if queue:
            sig = queue.pop(0)
            commands.resume_with_signal(session, ti, sig, now=now, actor=commands.SCHEDULER)
            changed += 1
        elif ti.defer_timeout_at is not None and ti.defer_timeout_at <= now:
            end = commands.end_deferral_on_timeout(session, ti, soft_fail=_soft_fail(session, ti),
                                                   now=now)
            log.warning("%s.%s of run %s: signal %r timed out; %s", ti.dag_id, ti.task_id,
                        ti.run_id, ti.defer_signal, end.value)
            changed += 1
    return changed


def next_timeout(session: Session, *, run_filter: Sequence[Any] = ()) -> datetime | None:
    """The earliest time a deferred task instance's wait ends, for the loop's wake-up (among
    the runs ``run_filter`` selects, as clauses on DagRun)."""
    stmt = select(TaskInstance.defer_timeout_at).where(
        TaskInstance.state == TaskState.DEFERRED.value,
        TaskInstance.defer_timeout_at.is_not(None))
    if run_filter:
        stmt = stmt.join(DagRun, DagRun.id == TaskInstance.run_pk).where(*run_filter)
    return session.scalar(stmt.order_by(TaskInstance.defer_timeout_at).limit(1))


def deliver_due(engine: Any, now: datetime, *, run_filter: Sequence[Any] = ()) -> int:
    """:func:`deliver_signals` in its own transaction, taking the write lock only when some
    task instance is deferred on a signal (most loop steps have none)."""
    from scheduler.store.db import session_scope

    with session_scope(engine, readonly=True) as session:
        if session.scalar(select(TaskInstance.id).where(
                TaskInstance.state == TaskState.DEFERRED.value,
                TaskInstance.defer_signal.is_not(None)).limit(1)) is None:
            return 0
    with session_scope(engine) as session:
        return deliver_signals(session, now, run_filter=run_filter)

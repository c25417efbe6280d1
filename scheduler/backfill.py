"""Backfill: create the runs a DAG's schedule has in a date range and drive them to the end.

A backfill is a Job of its own. It creates the missing runs (run_type ``backfill``, run id
``backfill__<logical date>``, pinned to the DAG's latest version) and claims every unfinished
run of the range with ``DagRun.claimed_by_job_id`` in the same transaction, so a live
scheduler never touches them (its ``_run_filter``); then it runs the loop restricted to those
runs in this process. If the backfill process dies, its Job is found dead and a live scheduler
releases and adopts its runs; running the same backfill again claims them back and carries on.
Task instances are never run twice: each attempt starts only with the claim token of the
scheduler that queued it, and queued work of a dead job is handed back before it is queued
again.

Layering: :func:`planned_runs` and :func:`upcoming_runs` are pure; :func:`plan_backfill`,
:func:`prepare_runs` and :func:`next_runs` read and write the store with the caller's session;
:func:`run_backfill` is the I/O shell the CLI calls.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from scheduler.config import Settings
from scheduler.core.serialized import SerializedDag
from scheduler.core.states import FINISHED_RUN_STATES, RunState, TaskState
from scheduler.core.timetable import (
    DataInterval,
    NullTimetable,
    RunInfo,
    Timetable,
    make_timetable,
    to_utc,
)
from scheduler.errors import HeadwaterError, NotFound
from scheduler.store import commands
from scheduler.store.db import session_scope
from scheduler.store.models import DagModel, DagRun, DagVersion, Job, TaskInstance

BACKFILL = "backfill"
#: Task states that ``--rerun-failed`` clears in a failed run.
RERUN_STATES = (TaskState.FAILED.value, TaskState.UPSTREAM_FAILED.value)
_UNFINISHED = (RunState.QUEUED.value, RunState.RUNNING.value)


class BackfillError(HeadwaterError):
    """A backfill that cannot be done as asked; the message says what to do instead."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def backfill_run_id(logical_date: datetime) -> str:
    """The run id of the backfill run at ``logical_date``: ``backfill__<ISO 8601 in UTC>``."""
    return f"{BACKFILL}__{to_utc(logical_date).isoformat()}"


# -- planning (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExistingRun:
    """A run already in the store at one of the range's logical dates."""

    pk: int
    run_id: str
    state: str
    claimed_by_job_id: int | None = None


@dataclass(frozen=True)
class PlannedRun:
    """One run the schedule has in the range, and the store's run at that date if any."""

    info: RunInfo
    existing: ExistingRun | None = None

    @property
    def logical_date(self) -> datetime:
        return self.info.logical_date

    @property
    def exists(self) -> bool:
        return self.existing is not None

    def as_row(self) -> dict[str, Any]:
        """The ``--dry-run`` row: ``logical_date, data_interval_start, data_interval_end,
        exists`` (plus the existing run's id and state, None when it does not exist)."""
        return {
            "logical_date": self.info.logical_date,
            "data_interval_start": self.info.data_interval.start,
            "data_interval_end": self.info.data_interval.end,
            "exists": self.exists,
            "run_id": self.existing.run_id if self.existing else None,
            "state": self.existing.state if self.existing else None,
        }


def planned_runs(
    timetable: Timetable,
    start: datetime,
    end: datetime,
    *,
    start_date: datetime | None,
    end_date: datetime | None,
    existing: Mapping[datetime, ExistingRun],
    reverse: bool = False,
) -> list[PlannedRun]:
    """The runs ``timetable`` has with logical dates in ``[start, end]`` (both inclusive,
    narrowed by the DAG's ``start_date``/``end_date``), oldest first (newest first with
    ``reverse``), each paired with the run ``existing`` holds at its logical date (keys in
    UTC)."""
    infos = timetable.runs_between(start, end, start_date=start_date, end_date=end_date)
    plan = [PlannedRun(info, existing.get(to_utc(info.logical_date))) for info in infos]
    return plan[::-1] if reverse else plan


def upcoming_runs(
    timetable: Timetable,
    first: RunInfo | None,
    *,
    count: int,
    start_date: datetime | None,
    end_date: datetime | None,
    catchup: bool,
    now: datetime,
) -> list[RunInfo]:
    """The next ``count`` runs the scheduler will create, starting with ``first`` (the store's
    ``next_*`` fields; None: the schedule owes nothing more). Each following run is the one the
    timetable gives when the previous is created, at the later of ``now`` and its
    ``run_after``, which is what the scheduler does."""
    runs: list[RunInfo] = []
    info = first
    while info is not None and len(runs) < count:
        runs.append(info)
        info = timetable.next_run(info.data_interval, start_date=start_date, end_date=end_date,
                                  catchup=catchup, now=max(now, info.run_after))
        if info is not None and info.logical_date <= runs[-1].logical_date:
            break  # a schedule that owes nothing new (e.g. @once)
    return runs


# -- the store -----------------------------------------------------------------------------------


def _latest(session: Session, dag_id: str) -> tuple[DagModel, int, SerializedDag]:
    dag = session.get(DagModel, dag_id)
    if dag is None or dag.latest_version_id is None:
        raise NotFound(f"no DAG {dag_id!r} in the store; `headwater dags list` shows the DAGs "
                       "and the import errors of files that failed")
    version = session.get(DagVersion, dag.latest_version_id)
    assert version is not None, f"DAG {dag_id!r} points at a missing version"
    return dag, version.id, SerializedDag.from_dict(version.serialized)


def _existing_runs(session: Session, dag_id: str, dates: Sequence[datetime]
                   ) -> dict[datetime, ExistingRun]:
    """The store's runs of ``dag_id`` at ``dates``; where several share a logical date, the
    backfill run wins, then the oldest."""
    if not dates:
        return {}
    rows = session.execute(
        select(DagRun.id, DagRun.run_id, DagRun.state, DagRun.claimed_by_job_id,
               DagRun.logical_date, DagRun.run_type)
        .where(DagRun.dag_id == dag_id, DagRun.logical_date >= min(dates),
               DagRun.logical_date <= max(dates))
        .order_by(DagRun.id)
    ).all()
    wanted = {to_utc(d) for d in dates}
    found: dict[datetime, tuple[bool, ExistingRun]] = {}
    for pk, run_id, state, claimed, logical, run_type in rows:
        key = to_utc(logical)
        if key in wanted and (key not in found or (run_type == BACKFILL and not found[key][0])):
            found[key] = (run_type == BACKFILL, ExistingRun(pk, run_id, state, claimed))
    return {key: run for key, (_, run) in found.items()}


def plan_backfill(
    session: Session, dag_id: str, start: datetime, end: datetime, *, reverse: bool = False
) -> list[PlannedRun]:
    """The runs the DAG's schedule (latest version) has in ``[start, end]``, with the runs that
    already exist. Raises NotFound for an unknown DAG, BackfillError for a range that ends
    before it starts or a DAG without a schedule."""
    if to_utc(start) > to_utc(end):
        raise BackfillError(f"--start-date {start.isoformat()} is after --end-date "
                            f"{end.isoformat()}; swap them")
    _, _, sdag = _latest(session, dag_id)
    timetable = make_timetable(sdag.schedule, sdag.timezone)
    if isinstance(timetable, NullTimetable):
        raise BackfillError(f"DAG {dag_id!r} has schedule=None, so there are no runs to "
                            "backfill; create runs with `headwater dags trigger "
                            f"{dag_id} --logical-date DATE` instead")
    infos = timetable.runs_between(start, end, start_date=sdag.start_date,
                                   end_date=sdag.end_date)
    existing = _existing_runs(session, dag_id, [i.logical_date for i in infos])
    return planned_runs(timetable, start, end, start_date=sdag.start_date,
                        end_date=sdag.end_date, existing=existing, reverse=reverse)


def _job_alive(job: Job | None, *, now: datetime, stale_after: timedelta) -> bool:
    from scheduler.loop import HOSTNAME

    if job is None or job.state != "running" or job.latest_heartbeat < now - stale_after:
        return False
    if job.hostname != HOSTNAME:
        return True
    try:
        os.kill(job.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Prepared:
    """What :func:`prepare_runs` did: the runs to drive (in plan order) and how many of them it
    created, reused unfinished, or cleared for a rerun."""

    run_pks: list[int] = field(default_factory=list)
    created: int = 0
    reused: int = 0
    rerun: int = 0


def prepare_runs(
    session: Session,
    dag_id: str,
    plan: Sequence[PlannedRun],
    *,
    job_id: int | None,
    rerun_failed: bool,
    now: datetime,
    stale_after: timedelta,
    actor: str = "backfill",
) -> Prepared:
    """Create the missing runs of ``plan`` and claim every unfinished one for ``job_id`` (None:
    leave them unclaimed for a scheduler service to run).

    Finished runs are left alone, except failed ones with ``rerun_failed``: their failed and
    upstream_failed task instances are cleared (a new try) and the run moves to the DAG's latest
    version when that has the same tasks, so a fixed DAG file takes effect. Raises
    BackfillError when a run is claimed by another backfill that is still alive.
    """
    _, version_id, sdag = _latest(session, dag_id)
    done = Prepared()
    for planned in plan:
        if planned.existing is None:
            run = commands.create_run(
                session, dag=sdag, version_id=version_id,
                run_id=backfill_run_id(planned.logical_date), run_type=BACKFILL,
                logical_date=planned.logical_date, data_interval=planned.info.data_interval,
                run_after=planned.info.run_after, conf=None, now=now, actor=actor)
            run.claimed_by_job_id = job_id
            session.flush()
            done.created += 1
            done.run_pks.append(run.id)
            continue
        found = session.get(DagRun, planned.existing.pk)
        assert found is not None
        run = found
        if run.claimed_by_job_id not in (None, job_id) and run.state in _UNFINISHED:
            owner = session.get(Job, run.claimed_by_job_id)
            if _job_alive(owner, now=now, stale_after=stale_after):
                assert owner is not None
                raise BackfillError(
                    f"run {run.run_id!r} of {dag_id!r} is being driven by backfill job "
                    f"{owner.id} (pid {owner.pid} on {owner.hostname}); wait for it to end or "
                    "stop it, then run this command again")
        rerun = 0
        if rerun_failed and run.state == RunState.FAILED.value:
            rerun = _rerun(session, run, sdag, version_id, now=now, actor=actor)
            done.rerun += rerun
        if run.state in _UNFINISHED:
            run.claimed_by_job_id = job_id
            done.reused += 1 - rerun
            done.run_pks.append(run.id)
    return done


def _rerun(session: Session, run: DagRun, latest: SerializedDag, latest_version_id: int, *,
           now: datetime, actor: str) -> int:
    tis = list(session.scalars(select(TaskInstance).where(
        TaskInstance.run_pk == run.id, TaskInstance.state.in_(RERUN_STATES))))
    if not tis:
        return 0
    pinned = session.get(DagVersion, run.version_id)
    same_tasks = pinned is not None and (
        {t["task_id"] for t in pinned.serialized["tasks"]} == set(latest.task_dict))
    reason = "cleared by backfill --rerun-failed"
    if same_tasks and run.version_id != latest_version_id:
        # A failed run is not in flight: rerunning it takes the DAG file as it is now.
        run.version_id = latest_version_id
        reason += " (moved to the DAG's latest version)"
    dag = latest if run.version_id == latest_version_id else SerializedDag.from_dict(
        pinned.serialized if pinned else {})
    commands.clear_task_instances(session, run, tis, dag, now=now, actor=actor, reason=reason)
    return 1


def start_job(engine: Engine, *, now: datetime) -> int:
    """Record this process as a running backfill Job; returns its id."""
    from scheduler.loop import HOSTNAME

    with session_scope(engine) as session:
        job = Job(kind=BACKFILL, hostname=HOSTNAME, pid=os.getpid(), state="running",
                  start_date=now, latest_heartbeat=now)
        session.add(job)
        session.flush()
        return job.id


# -- progress and the whole backfill ----------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far the backfill's runs are: ``done`` counts every finished run, failed ones too."""

    total: int
    done: int
    failed: int
    running: int


def progress_of(engine: Engine, run_pks: Sequence[int]) -> Progress:
    with session_scope(engine, readonly=True) as session:
        counts = dict(session.execute(
            select(DagRun.state, func.count()).where(DagRun.id.in_(list(run_pks)))
            .group_by(DagRun.state)).all())
    finished = {s.value for s in FINISHED_RUN_STATES}
    return Progress(
        total=len(run_pks),
        done=sum(n for s, n in counts.items() if s in finished),
        failed=sum(n for s, n in counts.items() if s in finished and s != "success"),
        running=counts.get(RunState.RUNNING.value, 0),
    )


@dataclass
class BackfillResult:
    """The runs of the range (plan order) with their states when the backfill ended."""

    dag_id: str
    runs: list[dict[str, Any]]
    created: int
    reused: int
    rerun: int
    waited: bool

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["state"] in ("failed", "compensated")]

    def as_dict(self) -> dict[str, Any]:
        return {"dag_id": self.dag_id, "created": self.created, "reused": self.reused,
                "rerun": self.rerun, "waited": self.waited,
                "succeeded": sum(r["state"] == "success" for r in self.runs),
                "failed": len(self.failed), "runs": self.runs}


def run_backfill(
    settings: Settings,
    engine: Engine,
    dag_id: str,
    start: datetime,
    end: datetime,
    *,
    max_active_runs: int | None = None,
    rerun_failed: bool = False,
    reverse: bool = False,
    wait: bool = True,
    executor: str = "local",
    on_progress: Callable[[Progress], None] | None = None,
    progress_every: float = 0.25,
    clock: Callable[[], datetime] = utcnow,
) -> BackfillResult:
    """Backfill ``dag_id`` over ``[start, end]``: create what is missing, and unless
    ``wait`` is False drive every unfinished run of the range to its end here, at most
    ``max_active_runs`` at once (default: the DAG's). Without ``wait`` the runs are left
    unclaimed for a scheduler service. ``on_progress`` gets a :class:`Progress` at most every
    ``progress_every`` seconds and once at the end. Raises NotFound / BackfillError."""
    from scheduler.runner import drive_runs

    stale_after = timedelta(seconds=settings.scheduler_heartbeat_timeout)
    now = clock()
    job_id = start_job(engine, now=now) if wait else None
    try:
        with session_scope(engine) as session:
            plan = plan_backfill(session, dag_id, start, end, reverse=reverse)
            _, _, sdag = _latest(session, dag_id)
            prepared = prepare_runs(session, dag_id, plan, job_id=job_id,
                                    rerun_failed=rerun_failed, now=now, stale_after=stale_after)
        if wait and prepared.run_pks:
            last = 0.0

            def step() -> None:
                nonlocal last
                if on_progress is not None and time.monotonic() - last >= progress_every:
                    last = time.monotonic()
                    on_progress(progress_of(engine, prepared.run_pks))

            drive_runs(settings, engine, prepared.run_pks, executor=executor, on_step=step,
                       job_id=job_id, max_active_runs=max_active_runs or sdag.max_active_runs,
                       newest_first=reverse)
        elif job_id is not None:
            _end_job(engine, job_id, clock())
    except BaseException:
        if job_id is not None:
            _end_job(engine, job_id, clock())
        raise
    if on_progress is not None and prepared.run_pks:
        on_progress(progress_of(engine, prepared.run_pks))
    return BackfillResult(dag_id=dag_id, runs=_result_rows(engine, dag_id, plan),
                          created=prepared.created, reused=prepared.reused,
                          rerun=prepared.rerun, waited=wait)


def _end_job(engine: Engine, job_id: int, now: datetime) -> None:
    with session_scope(engine) as session:
        job = session.get(Job, job_id)
        if job is not None and job.state == "running":
            job.state, job.end_date = "stopped", now


def _result_rows(engine: Engine, dag_id: str, plan: Sequence[PlannedRun]) -> list[dict[str, Any]]:
    with session_scope(engine, readonly=True) as session:
        existing = _existing_runs(session, dag_id, [p.logical_date for p in plan])
        rows = {r.id: r for r in session.scalars(select(DagRun).where(
            DagRun.id.in_([e.pk for e in existing.values()])))}
    out = []
    for p in plan:
        e = existing.get(to_utc(p.logical_date))
        run = rows.get(e.pk) if e else None
        out.append({
            "run_id": run.run_id if run else None,
            "state": run.state if run else None,
            "run_type": run.run_type if run else None,
            "logical_date": p.info.logical_date,
            "data_interval_start": p.info.data_interval.start,
            "data_interval_end": p.info.data_interval.end,
            "start_date": run.start_date if run else None,
            "end_date": run.end_date if run else None,
        })
    return out


def next_runs(session: Session, dag_id: str, *, count: int, now: datetime
              ) -> tuple[DagModel, list[RunInfo]]:
    """The DAG and the next ``count`` runs its schedule will create (empty when it owes
    nothing more), from the store's ``next_*`` fields and the latest version's timetable."""
    dag, _, sdag = _latest(session, dag_id)
    first = None
    if (dag.next_logical_date is not None and dag.next_data_interval_start is not None
            and dag.next_data_interval_end is not None and dag.next_run_after is not None):
        first = RunInfo(dag.next_logical_date,
                        DataInterval(dag.next_data_interval_start, dag.next_data_interval_end),
                        dag.next_run_after)
    timetable = make_timetable(sdag.schedule, sdag.timezone)
    return dag, upcoming_runs(timetable, first, count=count, start_date=sdag.start_date,
                              end_date=sdag.end_date, catchup=sdag.catchup, now=now)

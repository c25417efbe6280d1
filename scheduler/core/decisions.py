"""The scheduler's decisions, as functions of data.

Everything here takes states, a serialized DAG and a time, and returns what should change; the
loop (the I/O shell) reads the store, calls these, and writes the transitions through the store
commands. Nothing here reads a clock, a database or a random number generator.

Trigger rules follow Airflow's ``TriggerRuleDep`` (2.10 / 3.1), including its skip propagation:
an upstream verdict of ``SKIP`` or ``UPSTREAM_FAILED`` becomes the task's own state, so a skip or a
failure flows down a chain. ``REMOVED`` upstream task instances are ignored (a removed task is no
longer part of the run).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from scheduler.core.serialized import DEFAULT_POOL, SerializedDag, SerializedTask
from scheduler.core.states import (
    FAILED_TASK_STATES,
    FINISHED_TASK_STATES,
    RunState,
    TaskState,
)

#: The trigger rules Headwater understands (Airflow's names).
TRIGGER_RULES: frozenset[str] = frozenset(
    {
        "all_success",
        "all_failed",
        "all_done",
        "all_done_min_one_success",
        "all_done_setup_success",
        "all_skipped",
        "one_success",
        "one_failed",
        "one_done",
        "none_failed",
        "none_failed_min_one_success",
        "none_skipped",
        "always",
    }
)

#: Hard cap on a retry delay, whatever the task asks for (as Airflow's MAX_RETRY_DELAY).
MAX_RETRY_DELAY = timedelta(hours=24)
_OLDEST = datetime.min.replace(tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    """Naive datetimes (as some databases return them) are UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _date_key(value: datetime | None) -> tuple[bool, datetime]:
    """Sort key: oldest first, ``None`` last."""
    return (value is None, _OLDEST if value is None else _aware(value))


class Verdict(StrEnum):
    """What a trigger rule says about a task instance waiting in state ``none``."""

    READY = "ready"  # may be scheduled now
    WAIT = "wait"  # not yet decidable: some upstream is unfinished
    SKIP = "skip"  # will never run: mark it skipped
    UPSTREAM_FAILED = "upstream_failed"  # will never run because of a failure upstream


@dataclass(frozen=True)
class _Counts:
    total: int
    success: int
    skipped: int
    failed: int
    upstream_failed: int

    @property
    def done(self) -> int:
        return self.success + self.skipped + self.failed + self.upstream_failed

    @property
    def all_done(self) -> bool:
        return self.done >= self.total

    @property
    def any_failed(self) -> bool:
        return bool(self.failed or self.upstream_failed)

    @classmethod
    def of(cls, states: Sequence[TaskState]) -> _Counts:
        relevant = [TaskState(s) for s in states if TaskState(s) is not TaskState.REMOVED]
        return cls(
            total=len(relevant),
            success=sum(s is TaskState.SUCCESS for s in relevant),
            skipped=sum(s is TaskState.SKIPPED for s in relevant),
            failed=sum(s is TaskState.FAILED for s in relevant),
            upstream_failed=sum(s is TaskState.UPSTREAM_FAILED for s in relevant),
        )


def _direct_verdict(rule: str, c: _Counts, setups: _Counts) -> Verdict:
    """Airflow's rule table over the direct upstream counts (``setups``: the setup subset)."""
    r, v = rule, Verdict
    if r == "always":
        return v.READY
    if r == "all_success":
        if c.any_failed:
            return v.UPSTREAM_FAILED
        if c.skipped:
            return v.SKIP
        return v.READY if c.success >= c.total else v.WAIT
    if r == "all_failed":
        if c.success or c.skipped:
            return v.SKIP
        return v.READY if c.failed + c.upstream_failed >= c.total else v.WAIT
    if r == "all_done":
        return v.READY if c.all_done else v.WAIT
    if r == "all_done_min_one_success":
        if c.skipped:
            return v.SKIP
        if not c.all_done:
            return v.WAIT
        return v.READY if c.success else v.UPSTREAM_FAILED
    if r == "all_done_setup_success":
        if not c.all_done:
            return v.WAIT
        if setups.total and setups.skipped >= setups.total:
            return v.SKIP
        if setups.total and not setups.success:
            return v.UPSTREAM_FAILED
        return v.READY
    if r == "all_skipped":
        if c.success or c.any_failed:
            return v.SKIP
        return v.READY if c.skipped >= c.total else v.WAIT
    if r == "one_success":
        if c.success:
            return v.READY
        if c.all_done:
            return v.SKIP if c.skipped >= c.total else v.UPSTREAM_FAILED
        return v.WAIT
    if r == "one_failed":
        if c.any_failed:
            return v.READY
        return v.SKIP if c.all_done else v.WAIT
    if r == "one_done":
        if c.success or c.failed:
            return v.READY
        return v.SKIP if c.all_done else v.WAIT
    if r == "none_failed":
        if c.any_failed:
            return v.UPSTREAM_FAILED
        return v.READY if c.success + c.skipped >= c.total else v.WAIT
    if r == "none_failed_min_one_success":
        if c.any_failed:
            return v.UPSTREAM_FAILED
        if c.total and c.skipped >= c.total:
            return v.SKIP
        return v.READY if c.success + c.skipped >= c.total else v.WAIT
    if r == "none_skipped":
        if c.skipped:
            return v.SKIP
        return v.READY if c.all_done else v.WAIT
    raise ValueError(
        f"unknown trigger rule {rule!r}; valid rules: {', '.join(sorted(TRIGGER_RULES))}"
    )


def evaluate_trigger_rule(
    rule: str,
    upstream: Sequence[TaskState],
    *,
    setup_upstream: Sequence[TaskState] = (),
    indirect_setups: Sequence[TaskState] = (),
) -> Verdict:
    """Decide a waiting task instance's fate from its upstream states, as Airflow does.

    ``upstream``: the states of the task's direct upstream task instances (``REMOVED`` ones are
    ignored). ``setup_upstream``: the states of those direct upstreams that are setup tasks (a
    subset of ``upstream``), which ``all_done_setup_success`` (a teardown's rule) looks at.
    ``indirect_setups``: the states of the *relevant* setup tasks upstream of a non-teardown task
    that are not its direct upstreams (see :func:`relevant_indirect_setups`); all of them must
    succeed, a failed one makes the task ``UPSTREAM_FAILED`` and a skipped one ``SKIP``.

    Returns ``READY`` (may run now), ``WAIT`` (undecided), ``SKIP`` or ``UPSTREAM_FAILED``. A
    task without upstream tasks is ``READY``. ``one_success``/``one_failed``/``one_done`` (and
    ``always``) may be ``READY`` while other upstreams are unfinished; every other rule is
    ``READY`` only once all its upstreams are finished. Once every upstream (and indirect setup)
    is finished the verdict is never ``WAIT``. Raises ``ValueError`` for an unknown rule.
    """
    rule = str(getattr(rule, "value", rule))
    if rule not in TRIGGER_RULES:
        raise ValueError(
            f"unknown trigger rule {rule!r}; valid rules: {', '.join(sorted(TRIGGER_RULES))}"
        )
    setup_wait = False
    if indirect_setups:
        s = _Counts.of(indirect_setups)
        if s.any_failed:
            return Verdict.UPSTREAM_FAILED
        if s.skipped:
            return Verdict.SKIP
        setup_wait = s.success < s.total
    counts = _Counts.of(upstream)
    if counts.total == 0:
        return Verdict.WAIT if setup_wait else Verdict.READY
    verdict = _direct_verdict(rule, counts, _Counts.of(setup_upstream))
    if verdict is Verdict.READY and setup_wait:
        return Verdict.WAIT
    return verdict


# -- the DAG's shape ---------------------------------------------------------------------------


def _ancestors(dag: SerializedDag) -> dict[str, set[str]]:
    """Every task's transitive upstream task ids (``dag.tasks`` is topological)."""
    out: dict[str, set[str]] = {}
    for task in dag.tasks:
        acc: set[str] = set()
        for up in task.upstream:
            acc.add(up)
            acc |= out.get(up, set())
        out[task.task_id] = acc
    return out


def _descendants(dag: SerializedDag) -> dict[str, set[str]]:
    """Every task's transitive downstream task ids."""
    out: dict[str, set[str]] = {}
    for task in reversed(dag.tasks):
        acc: set[str] = set()
        for down in task.downstream:
            acc.add(down)
            acc |= out.get(down, set())
        out[task.task_id] = acc
    return out


def relevant_indirect_setups(dag: SerializedDag) -> dict[str, tuple[str, ...]]:
    """For each non-teardown task, the setup tasks it must wait for beyond its direct upstream.

    As in Airflow: a setup task upstream of ``T`` (not directly) is relevant when it has no
    teardown, or when one of its teardowns is downstream of ``T`` (``T`` is inside its scope).
    Tasks without any are left out of the mapping.
    """
    tasks = dag.task_dict
    if not any(t.is_setup for t in dag.tasks):
        return {}
    ancestors, descendants = _ancestors(dag), _descendants(dag)
    result: dict[str, tuple[str, ...]] = {}
    for task in dag.tasks:
        if task.is_teardown:
            continue
        downstream_teardowns = {d for d in descendants[task.task_id] if tasks[d].is_teardown}
        relevant = []
        for sid in ancestors[task.task_id]:
            setup = tasks.get(sid)
            if setup is None or not setup.is_setup or sid in task.upstream:
                continue
            teardowns = {d for d in setup.downstream if d in tasks and tasks[d].is_teardown}
            if not teardowns or teardowns & downstream_teardowns:
                relevant.append(sid)
        if relevant:
            result[task.task_id] = tuple(sorted(relevant))
    return result


def effective_leaves(dag: SerializedDag) -> list[str]:
    """The tasks that decide a run's state (Airflow's rule).

    A leaf is a non-teardown task all of whose downstream tasks are teardowns (so a teardown at
    the end of the DAG hands the decision to the tasks before it). A DAG made only of teardowns
    falls back to its plain leaves.
    """
    tasks = dag.task_dict
    leaves = [
        t.task_id
        for t in dag.tasks
        if not t.is_teardown and all(tasks[d].is_teardown for d in t.downstream if d in tasks)
    ]
    return leaves or [t.task_id for t in dag.tasks if not t.downstream]


# -- task instances ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TIView:
    """What the decisions need to know about one task instance."""

    task_id: str
    state: TaskState
    try_number: int = 0
    next_retry_at: datetime | None = None  # also the reschedule time of UP_FOR_RESCHEDULE
    # (naive datetimes anywhere in this module are taken as UTC)
    map_index: int = -1


@dataclass(frozen=True)
class Transition:
    """A state change the loop should write (with ``reason`` in the event)."""

    task_id: str
    to_state: TaskState
    reason: str
    map_index: int = -1


def _verdict_reason(task: SerializedTask, verdict: Verdict, states: Mapping[str, TaskState]) -> str:
    rule = task.trigger_rule
    if verdict is Verdict.READY:
        return f"trigger rule {rule} met" if task.upstream else "no upstream tasks"
    if verdict is Verdict.UPSTREAM_FAILED:
        bad = [u for u in task.upstream if states.get(u) in FAILED_TASK_STATES]
        what = f"upstream {', '.join(bad)} failed" if bad else "a required upstream did not succeed"
        return f"{what} (trigger rule {rule})"
    skipped = [u for u in task.upstream if states.get(u) is TaskState.SKIPPED]
    what = f"upstream {', '.join(skipped)} skipped" if skipped else "trigger rule cannot be met"
    return f"{what} (trigger rule {rule})"


def schedulable(
    dag: SerializedDag,
    tis: Mapping[str, TIView],
    now: datetime,
    *,
    hold: Collection[str] = (),
) -> list[Transition]:
    """The transitions that make a run's waiting task instances progress.

    ``tis`` maps task id to that task's instance in this run; a task of ``dag`` missing from it
    is treated as state ``none`` (the loop creates every task instance with the run). For each
    task, in topological order and seeing the states set by earlier transitions of this same
    call (so a skip or an upstream failure cascades down a whole chain at once):

    * state ``none``: the trigger-rule verdict ``READY`` -> ``scheduled``, ``SKIP`` ->
      ``skipped``, ``UPSTREAM_FAILED`` -> ``upstream_failed``; ``WAIT`` -> nothing;
    * ``up_for_retry`` / ``up_for_reschedule`` whose ``next_retry_at`` is ``None`` or
      ``<= now`` -> ``scheduled``.

    ``hold``: task ids that may not be scheduled yet for reasons outside the trigger rules
    (e.g. ``depends_on_past`` not met); they still get skipped or upstream-failed. Applying the
    result and calling again with the same ``now`` returns nothing new.
    """
    states: dict[str, TaskState] = {tid: TaskState(ti.state) for tid, ti in tis.items()}
    tasks = dag.task_dict
    setups_of = relevant_indirect_setups(dag)
    held = set(hold)
    out: list[Transition] = []

    def state_of(task_id: str) -> TaskState:
        return states.get(task_id, TaskState.NONE)

    for task in dag.tasks:
        tid = task.task_id
        ti = tis.get(tid)
        map_index = ti.map_index if ti is not None else -1
        state = state_of(tid)
        if state in (TaskState.UP_FOR_RETRY, TaskState.UP_FOR_RESCHEDULE):
            due = ti.next_retry_at if ti is not None else None
            if due is None or _aware(due) <= _aware(now):
                why = "retry delay elapsed" if state is TaskState.UP_FOR_RETRY else (
                    "reschedule time reached"
                )
                out.append(Transition(tid, TaskState.SCHEDULED, why, map_index))
                states[tid] = TaskState.SCHEDULED
            continue
        if state is not TaskState.NONE:
            continue
        upstream = [u for u in task.upstream if u in tasks]
        verdict = evaluate_trigger_rule(
            task.trigger_rule,
            [state_of(u) for u in upstream],
            setup_upstream=[state_of(u) for u in upstream if tasks[u].is_setup],
            indirect_setups=[state_of(s) for s in setups_of.get(tid, ())],
        )
        if verdict is Verdict.WAIT or (verdict is Verdict.READY and tid in held):
            continue
        to_state = {
            Verdict.READY: TaskState.SCHEDULED,
            Verdict.SKIP: TaskState.SKIPPED,
            Verdict.UPSTREAM_FAILED: TaskState.UPSTREAM_FAILED,
        }[verdict]
        out.append(Transition(tid, to_state, _verdict_reason(task, verdict, states), map_index))
        states[tid] = to_state
    return out


def run_outcome(dag: SerializedDag, tis: Mapping[str, TIView]) -> RunState | None:
    """The state a run ends in, or ``None`` while any of its task instances is unfinished.

    Once every task instance is finished (see ``FINISHED_TASK_STATES``; a task missing from
    ``tis`` counts as unfinished): ``FAILED`` if any effective leaf (see
    :func:`effective_leaves`; teardowns do not count) ended ``failed`` or ``upstream_failed``,
    else ``SUCCESS``. Removed task instances are ignored. A DAG without tasks succeeds.
    """
    states: dict[str, TaskState] = {}
    for task in dag.tasks:
        ti = tis.get(task.task_id)
        state = TaskState(ti.state) if ti is not None else TaskState.NONE
        if state not in FINISHED_TASK_STATES:
            return None
        states[task.task_id] = state
    if any(states[leaf] in FAILED_TASK_STATES for leaf in effective_leaves(dag)):
        return RunState.FAILED
    return RunState.SUCCESS


# -- attempts and retries ----------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptEnd:
    """What a failed attempt means: retry later (``UP_FOR_RETRY``) or give up (``FAILED``)."""

    state: TaskState
    next_retry_at: datetime | None
    reason: str


def retry_delay(task: SerializedTask, try_number: int, *, jitter: float = 0.0) -> timedelta:
    """How long to wait after attempt ``try_number`` (1-based) failed before the next one.

    Without ``retry_exponential_backoff``: ``task.retry_delay`` exactly. With it:
    ``retry_delay * 2**(try_number - 1) * (1 + jitter)``, capped by ``task.max_retry_delay``
    and never more than 24 hours. ``jitter`` in ``[0, 1)`` is the caller's random draw (this
    function stays pure); ``ValueError`` outside that range.
    """
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    base = task.retry_delay
    if not task.retry_exponential_backoff:
        return base
    exponent = min(max(try_number, 1) - 1, 64)  # 2**64 seconds already exceeds every cap
    seconds = base.total_seconds() * (2**exponent) * (1.0 + jitter)
    cap = MAX_RETRY_DELAY
    if task.max_retry_delay is not None:
        cap = min(cap, task.max_retry_delay)
    if not math.isfinite(seconds) or seconds >= cap.total_seconds():
        return cap
    return timedelta(seconds=seconds)


def attempt_failed(
    task: SerializedTask, try_number: int, now: datetime, *, error: str = "", jitter: float = 0.0
) -> AttemptEnd:
    """The outcome of attempt ``try_number`` (1-based) of ``task`` failing at ``now``.

    ``UP_FOR_RETRY`` with ``next_retry_at = now + retry_delay(...)`` while ``try_number <=
    task.retries`` (so ``retries=2`` allows three attempts), else ``FAILED`` with
    ``next_retry_at=None``. ``error`` goes into the reason.
    """
    detail = f": {error}" if error else ""
    if try_number <= task.retries:
        delay = retry_delay(task, try_number, jitter=jitter)
        return AttemptEnd(
            TaskState.UP_FOR_RETRY,
            now + delay,
            f"attempt {try_number} of {task.retries + 1} failed{detail}; retrying in {delay}",
        )
    return AttemptEnd(
        TaskState.FAILED,
        None,
        f"attempt {try_number} of {task.retries + 1} failed{detail}; no retries left",
    )


# -- admission: runs and task instances --------------------------------------------------------


def runs_to_start(
    queued_runs: Sequence[tuple[Hashable, datetime | None]],
    running_count: int,
    max_active_runs: int,
) -> list[Hashable]:
    """Which queued runs of one DAG may start: oldest logical date first, within the limit.

    ``queued_runs`` pairs each queued run's key with its logical date (``None`` sorts last);
    ``running_count`` is how many of the DAG's runs are running already. Returns at most
    ``max_active_runs - running_count`` keys (none when the DAG is at or over its limit).
    """
    room = max(0, max_active_runs - running_count)
    if not room:
        return []
    ordered = sorted(enumerate(queued_runs), key=lambda p: (*_date_key(p[1][1]), p[0]))
    return [key for _, (key, _) in ordered[:room]]


@dataclass(frozen=True)
class Candidate:
    """A ``scheduled`` task instance that wants an executor slot."""

    key: Hashable  # the task instance's identity, returned as is
    dag_id: str
    logical_date: datetime | None = None
    pool: str = DEFAULT_POOL
    pool_slots: int = 1
    priority_weight: int = 1
    order: int = 0  # tie-break: the order in which it became scheduled (lower first)


def pick_tasks_to_queue(
    candidates: Sequence[Candidate],
    *,
    free_slots: int,
    running_per_dag: Mapping[str, int],
    max_active_tasks: Mapping[str, int],
    pool_free: Mapping[str, int],
) -> list[Candidate]:
    """Choose the scheduled task instances to queue now, best first.

    Order: highest ``priority_weight``, then oldest ``logical_date`` (``None`` last), then
    lowest ``order``. A candidate is taken only if an executor slot is free (``free_slots``
    counts task instances), its DAG stays within ``max_active_tasks[dag_id]`` counting
    ``running_per_dag`` (queued + running) plus those picked here (a DAG missing from
    ``max_active_tasks`` has no limit), and its pool has ``pool_slots`` open slots in
    ``pool_free`` (a pool missing from ``pool_free`` does not exist: never picked). A candidate
    that does not fit is passed over and lower-priority ones are still considered.
    """
    if free_slots <= 0:
        return []
    ordered = sorted(
        candidates,
        key=lambda c: (-c.priority_weight, *_date_key(c.logical_date), c.order),
    )
    slots = free_slots
    per_dag = dict(running_per_dag)
    pools = dict(pool_free)
    picked: list[Candidate] = []
    for cand in ordered:
        if slots <= 0:
            break
        limit = max_active_tasks.get(cand.dag_id)
        if limit is not None and per_dag.get(cand.dag_id, 0) >= limit:
            continue
        if cand.pool not in pools or pools[cand.pool] < cand.pool_slots:
            continue
        picked.append(cand)
        slots -= 1
        per_dag[cand.dag_id] = per_dag.get(cand.dag_id, 0) + 1
        pools[cand.pool] -= cand.pool_slots
    return picked

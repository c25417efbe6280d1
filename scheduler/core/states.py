"""The states of runs and task instances, and the transitions allowed between them.

This module is the only place that names a state. Everything else imports the enums; nothing
compares against bare strings. The tables below are checked by the store before it writes a
state change, so an illegal transition fails loudly instead of corrupting a run.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """State of one task instance (one task of one run, at one map index)."""

    NONE = "none"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    UP_FOR_RETRY = "up_for_retry"
    UP_FOR_RESCHEDULE = "up_for_reschedule"
    DEFERRED = "deferred"
    REMOVED = "removed"

    def __str__(self) -> str:
        return self.value


class RunState(StrEnum):
    """State of a DAG run."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"

    def __str__(self) -> str:
        return self.value


#: A task instance in one of these states will not change again unless a user clears it.
FINISHED_TASK_STATES: frozenset[TaskState] = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.UPSTREAM_FAILED,
        TaskState.REMOVED,
    }
)

#: States in which a task instance holds (or is about to hold) an executor slot.
ACTIVE_TASK_STATES: frozenset[TaskState] = frozenset({TaskState.QUEUED, TaskState.RUNNING})

#: Task states whose instance counts as "failed" for trigger rules and run outcome.
FAILED_TASK_STATES: frozenset[TaskState] = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED})

FINISHED_RUN_STATES: frozenset[RunState] = frozenset(
    {RunState.SUCCESS, RunState.FAILED, RunState.COMPENSATED}
)

_T = TaskState
_ANY_TASK = frozenset(TaskState)

# from-state -> states it may move to. Clearing (a user's "run it again") may move any state back
# to NONE; marking may set SUCCESS/FAILED/SKIPPED from anywhere, so those targets are allowed
# broadly. What the table forbids is the engine skipping steps: e.g. NONE -> RUNNING without being
# queued, or SUCCESS -> RUNNING without a clear.
TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    _T.NONE: frozenset(
        {_T.SCHEDULED, _T.SKIPPED, _T.UPSTREAM_FAILED, _T.REMOVED, _T.SUCCESS, _T.FAILED, _T.NONE}
    ),
    _T.SCHEDULED: frozenset(
        {_T.QUEUED, _T.NONE, _T.SKIPPED, _T.UPSTREAM_FAILED, _T.REMOVED, _T.SUCCESS, _T.FAILED}
    ),
    _T.QUEUED: frozenset(
        {_T.RUNNING, _T.SCHEDULED, _T.NONE, _T.FAILED, _T.UP_FOR_RETRY, _T.SUCCESS, _T.SKIPPED,
         _T.REMOVED}
    ),
    _T.RUNNING: frozenset(
        {_T.SUCCESS, _T.FAILED, _T.UP_FOR_RETRY, _T.UP_FOR_RESCHEDULE, _T.DEFERRED, _T.SKIPPED,
         _T.NONE, _T.REMOVED}
    ),
    _T.UP_FOR_RETRY: frozenset(
        {_T.SCHEDULED, _T.NONE, _T.FAILED, _T.SUCCESS, _T.SKIPPED, _T.UPSTREAM_FAILED, _T.REMOVED}
    ),
    _T.UP_FOR_RESCHEDULE: frozenset(
        {_T.SCHEDULED, _T.NONE, _T.FAILED, _T.SUCCESS, _T.SKIPPED, _T.REMOVED}
    ),
    _T.DEFERRED: frozenset(
        {_T.SCHEDULED, _T.NONE, _T.FAILED, _T.SUCCESS, _T.SKIPPED, _T.REMOVED}
    ),
    _T.SUCCESS: frozenset({_T.NONE, _T.FAILED, _T.SKIPPED, _T.REMOVED}),
    _T.FAILED: frozenset({_T.NONE, _T.SUCCESS, _T.SKIPPED, _T.REMOVED}),
    _T.SKIPPED: frozenset({_T.NONE, _T.SUCCESS, _T.FAILED, _T.REMOVED}),
    _T.UPSTREAM_FAILED: frozenset({_T.NONE, _T.SUCCESS, _T.FAILED, _T.SKIPPED, _T.REMOVED}),
    _T.REMOVED: frozenset({_T.NONE}),
}

_R = RunState
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _R.QUEUED: frozenset({_R.RUNNING, _R.SUCCESS, _R.FAILED}),
    _R.RUNNING: frozenset({_R.SUCCESS, _R.FAILED, _R.COMPENSATING, _R.QUEUED}),
    _R.SUCCESS: frozenset({_R.QUEUED, _R.RUNNING, _R.FAILED}),
    _R.FAILED: frozenset({_R.QUEUED, _R.RUNNING, _R.SUCCESS, _R.COMPENSATING}),
    _R.COMPENSATING: frozenset({_R.COMPENSATED, _R.FAILED}),
    _R.COMPENSATED: frozenset({_R.QUEUED, _R.RUNNING}),
}


class IllegalTransition(ValueError):
    """A state change that the tables above forbid."""

    def __init__(self, kind: str, from_state: str, to_state: str) -> None:
        super().__init__(f"illegal {kind} transition {from_state} -> {to_state}")
        self.kind = kind
        self.from_state = from_state
        self.to_state = to_state


def check_task_transition(from_state: TaskState, to_state: TaskState) -> None:
    """Raise :class:`IllegalTransition` unless a task instance may go from one state to
    the other."""
    if to_state not in TASK_TRANSITIONS[from_state]:
        raise IllegalTransition("task", from_state.value, to_state.value)


def check_run_transition(from_state: RunState, to_state: RunState) -> None:
    """Raise :class:`IllegalTransition` unless a run may go from one state to the other."""
    if to_state not in RUN_TRANSITIONS[from_state]:
        raise IllegalTransition("run", from_state.value, to_state.value)

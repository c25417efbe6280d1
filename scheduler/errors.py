"""Headwater's error hierarchy. Every message tells the user what to do next."""

from __future__ import annotations

from datetime import datetime


class HeadwaterError(Exception):
    """Base of every error Headwater raises on purpose."""


class DagDefinitionError(HeadwaterError):
    """A DAG file declares something invalid.

    ``fileloc`` and ``lineno`` point at the user's code (filled in by the parser when the
    authoring API could not know them); ``hint`` says how to fix it.
    """

    def __init__(
        self,
        message: str,
        *,
        fileloc: str | None = None,
        lineno: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fileloc = fileloc
        self.lineno = lineno
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.fileloc:
            where = f"{self.fileloc}:{self.lineno}: " if self.lineno else f"{self.fileloc}: "
        fix = f" Fix: {self.hint}" if self.hint else ""
        return f"{where}{self.message}.{fix}" if not self.message.endswith(".") else (
            f"{where}{self.message}{fix}"
        )


class CycleError(DagDefinitionError):
    """The task dependencies form a cycle."""


class TimetableError(DagDefinitionError):
    """A schedule that cannot be understood (bad cron expression, bad preset)."""


class ParamValidationError(HeadwaterError):
    """A run's conf does not satisfy the DAG's ``params``."""


class NotFound(HeadwaterError):
    """A DAG, run, task or other object named by the user does not exist."""


class StoreError(HeadwaterError):
    """The store cannot be used as it is (e.g. its schema is older than this Headwater)."""


class XComTooLarge(HeadwaterError):
    """A task tried to store an XCom larger than the configured limit."""


class TaskTimeout(HeadwaterError):
    """A task ran longer than its ``execution_timeout``."""


class TaskSkipped(HeadwaterError):
    """Raised by task code to end the attempt as ``skipped`` instead of ``success``/``failed``.

    Airflow's ``AirflowSkipException`` (``scheduler.operators.base`` exports that name as an
    alias for ported DAG files).
    """


class TaskFailed(HeadwaterError):
    """An operator's work failed (e.g. a bash command's non-zero exit code).

    The message says what failed and how; the attempt ends ``failed`` or ``up_for_retry``.
    """


class TaskFailedNoRetry(TaskFailed):
    """Fail the task now, without using its remaining retries (Airflow's
    ``AirflowFailException``; a sensor's timeout is one)."""


class RescheduleRequested(HeadwaterError):  # noqa: N818 - a request, not a failure
    """Raised by a sensor in ``reschedule`` mode whose condition is not met yet: the task
    instance goes ``up_for_reschedule`` until ``at``, holding no worker slot meanwhile, and the
    try is not used up."""

    def __init__(self, at: datetime) -> None:
        super().__init__(f"rescheduled to {at.isoformat()}")
        self.at = at


class DeferToSignal(HeadwaterError):  # noqa: N818 - a request, not a failure
    """Raised by a task (``SignalSensor``) to park in ``deferred`` until the signal
    ``signal_name`` is sent to its run, holding no worker slot and no process meanwhile.

    ``timeout`` (seconds, None: wait forever) ends the wait as ``failed``, or ``skipped`` when
    ``soft_fail``. The signal's payload becomes the task's ``return_value`` XCom.
    """

    def __init__(self, signal_name: str, timeout: float | None = None,
                 soft_fail: bool = False) -> None:
        super().__init__(f"waiting for signal {signal_name!r}")
        self.signal_name = signal_name
        self.timeout = timeout
        self.soft_fail = soft_fail

"""Waiting for a signal (human approval, a webhook) without holding a worker.

``SignalSensor`` parks its task instance in ``deferred`` until a signal of that name is sent to
its run (``headwater signals send DAG RUN NAME --payload JSON``, the REST API, the UI's approve
button). The payload becomes the task's ``return_value`` XCom, so downstream tasks read it like
any result::

    approval = SignalSensor(task_id="approval", signal_name="approval", timeout=timedelta(days=3))
    approval >> ship

A signal sent before the task waits is kept and delivered as soon as it does. After ``timeout``
the task fails, or is skipped with ``soft_fail=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from scheduler.errors import DagDefinitionError, DeferToSignal
from scheduler.operators.base import BaseOperator


class SignalSensor(BaseOperator):
    """Wait (``deferred``, no slot, no process) for signal ``signal_name`` sent to the run.

    ``timeout``: a ``timedelta`` or seconds, None to wait forever; ``soft_fail``: on timeout
    end ``skipped`` instead of ``failed``.
    """

    template_fields = ("signal_name",)
    ui_color = "#e8d7ff"

    def __init__(
        self,
        task_id: str,
        *,
        signal_name: str,
        timeout: timedelta | float | None = None,
        soft_fail: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_id, **kwargs)
        if not isinstance(signal_name, str) or not signal_name:
            raise DagDefinitionError(
                f"signal_name of task {self.task_id!r} must be a non-empty string",
                hint="e.g. SignalSensor(task_id='approve', signal_name='approval')")
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if seconds is not None and (not isinstance(seconds, int | float) or seconds < 0):
            raise DagDefinitionError(
                f"timeout of task {self.task_id!r} must be a timedelta or seconds >= 0, got "
                f"{timeout!r}", hint="e.g. timeout=timedelta(days=2), or None to wait forever")
        self.signal_name = signal_name
        self.timeout: float | None = None if seconds is None else float(seconds)
        self.soft_fail = bool(soft_fail)

    def execute(self, context: Mapping[str, Any]) -> Any:
        raise DeferToSignal(self.signal_name, self.timeout, self.soft_fail)


def wait_for_signal(
    signal_name: str,
    task_id: str | None = None,
    timeout: timedelta | float | None = None,
    soft_fail: bool = False,
    **kwargs: Any,
) -> SignalSensor:
    """A :class:`SignalSensor` for ``signal_name`` (task id ``wait_for_<signal_name>`` unless
    given), in the DAG being defined."""
    return SignalSensor(task_id or f"wait_for_{signal_name}", signal_name=signal_name,
                        timeout=timeout, soft_fail=soft_fail, **kwargs)

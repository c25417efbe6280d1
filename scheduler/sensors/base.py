"""BaseSensorOperator: a task that waits until a condition holds, by poking it.

``poke(context)`` checks the condition once and returns a bool (or a :class:`PokeReturnValue`
carrying the task's XCom). Two ways to wait between pokes, as in Airflow:

- ``mode="poke"``: the task sleeps ``poke_interval`` between pokes inside one attempt; it holds
  its worker slot all along. Right for short waits.
- ``mode="reschedule"``: each attempt pokes once; when the condition does not hold yet the task
  raises :class:`~scheduler.errors.RescheduleRequested` and its task instance goes
  ``up_for_reschedule`` until the next poke is due, holding no worker slot and using up no try.
  Right for waits of minutes or hours.

``timeout`` is measured from the first start of the task instance's current cycle (its first
try since it was created or last cleared; reschedules and retries do not restart the clock).
When it passes, the task fails with :class:`SensorTimeout`, or ends ``skipped`` with
``soft_fail=True``. ``exponential_backoff`` doubles the wait after each poke (capped by
``max_wait``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from scheduler.errors import (
    DagDefinitionError,
    RescheduleRequested,
    TaskFailed,
    TaskFailedNoRetry,
    TaskSkipped,
)
from scheduler.operators.base import BaseOperator

log = logging.getLogger("headwater.task")

MODES = ("poke", "reschedule")


class SensorTimeout(TaskFailedNoRetry):
    """A sensor's condition did not hold within its ``timeout`` (Airflow's
    ``AirflowSensorTimeout``)."""


@dataclass(frozen=True)
class PokeReturnValue:
    """What ``poke`` may return instead of a bool: whether the wait is over, and the value the
    task returns (its ``return_value`` XCom) when it is."""

    is_done: bool
    xcom_value: Any = None

    def __bool__(self) -> bool:
        return self.is_done


def _seconds(value: Any, name: str, task_id: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise DagDefinitionError(
            f"{name} of sensor {task_id!r} must be a timedelta or seconds >= 0, got {value!r}",
            hint=f"e.g. {name}=timedelta(minutes=5)")
    return float(value)


def next_poke_delay(poke_interval: float, elapsed: float, *, exponential_backoff: bool,
                    max_wait: float | None) -> float:
    """Seconds to wait before the next poke, ``elapsed`` seconds after the first start.

    Fixed ``poke_interval``; with ``exponential_backoff`` the waits double (p, 2p, 4p, ...):
    after ``elapsed`` seconds, ``n = floor(log2(elapsed / p + 1))`` waits have passed, so the
    next is ``p * 2**n``. Derived from the elapsed time rather than a counter, so it holds
    across reschedules, which share no memory. Capped by ``max_wait`` when given.
    """
    delay = poke_interval
    if exponential_backoff and poke_interval > 0:
        n = math.floor(math.log2(max(elapsed, 0.0) / poke_interval + 1))
        delay = poke_interval * 2 ** min(n, 60)
    if max_wait is not None:
        delay = min(delay, max_wait)
    return delay


def utcnow() -> datetime:
    return datetime.now(UTC)


class BaseSensorOperator(BaseOperator):
    """Waits until :meth:`poke` says the condition holds; see the module docstring.

    Arguments: ``poke_interval`` (seconds or timedelta, default 60), ``timeout`` (default 7
    days), ``mode`` (``"poke"`` or ``"reschedule"``), ``soft_fail`` (skip instead of failing on
    timeout), ``exponential_backoff``, ``max_wait`` (cap of a backed-off wait).
    """

    ui_color: ClassVar[str] = "#e6f1f2"

    def __init__(
        self,
        *,
        poke_interval: timedelta | float = 60,
        timeout: timedelta | float = timedelta(days=7),
        mode: str = "poke",
        soft_fail: bool = False,
        exponential_backoff: bool = False,
        max_wait: timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise DagDefinitionError(
                f"mode of sensor {self.task_id!r} must be 'poke' or 'reschedule', got {mode!r}",
                fileloc=self.fileloc, lineno=self.lineno,
                hint="use mode='reschedule' to free the worker slot between pokes")
        self.poke_interval = _seconds(poke_interval, "poke_interval", self.task_id) or 0.0
        self.timeout = _seconds(timeout, "timeout", self.task_id) or 0.0
        self.max_wait = _seconds(max_wait, "max_wait", self.task_id, allow_none=True)
        self.mode = mode
        self.soft_fail = bool(soft_fail)
        self.exponential_backoff = bool(exponential_backoff)

    @property
    def reschedule(self) -> bool:
        return self.mode == "reschedule"

    def poke(self, context: Mapping[str, Any]) -> bool | PokeReturnValue:
        """Check the condition once. True (or a done PokeReturnValue) ends the wait."""
        raise NotImplementedError(f"{type(self).__name__} does not implement poke()")

    def next_poke_at(self, context: Mapping[str, Any], now: datetime, delay: float) -> datetime:
        """When to poke next, ``delay`` seconds being the regular wait. Sensors that know when
        their condition will hold (a time) override this to poke no later than that."""
        return now + timedelta(seconds=delay)

    def first_start(self, context: Mapping[str, Any], now: datetime) -> datetime:
        """When this task instance first started in its current cycle (its first try since it
        was created or cleared), read from its attempts in the store; ``now`` when there is no
        stored attempt (``tasks test``, ``tasks render``)."""
        from sqlalchemy import func, select

        from scheduler.store.models import TaskAttempt

        ti = context.get("ti")
        read_session = getattr(ti, "read_session", None)
        if ti is None or read_session is None or not getattr(ti, "id", 0):
            return now
        first_try = max(1, int(getattr(ti, "max_tries", 0)) - self.retries + 1)
        with read_session() as session:
            first = session.scalar(select(func.min(TaskAttempt.start_date)).where(
                TaskAttempt.ti_id == ti.id, TaskAttempt.try_number >= first_try))
        return min(first, now) if first is not None else now

    def execute(self, context: Mapping[str, Any]) -> Any:
        now = utcnow()
        started = self.first_start(context, now)
        deadline = started + timedelta(seconds=self.timeout)
        while True:
            result = self.poke(context)
            if result:
                log.info("sensor %s: condition met", self.task_id)
                return result.xcom_value if isinstance(result, PokeReturnValue) else None
            now = utcnow()
            if now >= deadline:
                self._timed_out(now - started)
            delay = next_poke_delay(self.poke_interval, (now - started).total_seconds(),
                                    exponential_backoff=self.exponential_backoff,
                                    max_wait=self.max_wait)
            at = min(self.next_poke_at(context, now, delay), deadline)
            if self.reschedule:
                log.info("sensor %s: not yet; poking again at %s", self.task_id, at.isoformat())
                raise RescheduleRequested(at)
            log.info("sensor %s: not yet; poking again in %.1f s", self.task_id,
                     (at - now).total_seconds())
            time.sleep(max(0.0, (at - utcnow()).total_seconds()))

    def _timed_out(self, waited: timedelta) -> None:
        message = (f"sensor {self.task_id!r} gave up after {waited.total_seconds():.0f} s: its "
                   f"condition did not hold within the timeout of {self.timeout:g} s")
        if self.soft_fail:
            raise TaskSkipped(message + " (soft_fail: skipped)")
        raise SensorTimeout(message + ". Raise timeout= if the wait is expected to be longer")

    def fail_or_skip(self, message: str) -> None:
        """End the task: skipped with ``soft_fail``, else failed (for sensors that see the
        condition can no longer hold, e.g. the external task failed)."""
        if self.soft_fail:
            raise TaskSkipped(message + " (soft_fail: skipped)")
        raise TaskFailed(message)

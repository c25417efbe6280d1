"""TimeDeltaSensor: wait until some time after the end of the run's data interval."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from scheduler.errors import DagDefinitionError
from scheduler.sensors.base import BaseSensorOperator, utcnow


class TimeDeltaSensor(BaseSensorOperator):
    """Waits until ``data_interval_end + delta`` (Airflow's semantics: a daily run of the 1st
    with ``delta=timedelta(hours=2)`` waits until 02:00 on the 2nd).

    A manual run's data interval ends at its logical date. In reschedule mode the next poke is
    never later than the target time, so the task ends soon after it.
    """

    ui_color = "#e6f1f2"

    def __init__(self, *, delta: timedelta, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(delta, timedelta):
            raise DagDefinitionError(
                f"delta of sensor {self.task_id!r} must be a timedelta, got {delta!r}",
                fileloc=self.fileloc, lineno=self.lineno, hint="e.g. delta=timedelta(hours=2)")
        self.delta = delta

    def target(self, context: Mapping[str, Any]) -> datetime:
        """The moment the wait ends."""
        end = context.get("data_interval_end") or context["logical_date"]
        return end + self.delta

    def poke(self, context: Mapping[str, Any]) -> bool:
        return utcnow() >= self.target(context)

    def next_poke_at(self, context: Mapping[str, Any], now: datetime, delay: float) -> datetime:
        return min(now + timedelta(seconds=delay), max(self.target(context), now))

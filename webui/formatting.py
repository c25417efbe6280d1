"""Jinja filters and the state palette shared by every page.

Filters return plain ``str`` (never ``Markup``), so whatever they print is escaped by Jinja's
autoescaping like any other value.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask

from scheduler.core.states import RunState, TaskState

#: Task states in the order the legend shows them.
LEGEND_TASK_STATES: tuple[str, ...] = (
    TaskState.NONE.value,
    TaskState.SCHEDULED.value,
    TaskState.QUEUED.value,
    TaskState.RUNNING.value,
    TaskState.DEFERRED.value,
    TaskState.UP_FOR_RETRY.value,
    TaskState.UP_FOR_RESCHEDULE.value,
    TaskState.SUCCESS.value,
    TaskState.FAILED.value,
    TaskState.UPSTREAM_FAILED.value,
    TaskState.SKIPPED.value,
    TaskState.REMOVED.value,
)

#: Run states that may still change: pages showing one refresh themselves.
UNFINISHED_RUN_STATES: frozenset[str] = frozenset(
    {RunState.QUEUED.value, RunState.RUNNING.value, RunState.COMPENSATING.value}
)

_NOT_A_CLASS_CHAR = re.compile(r"[^a-z0-9_]")


def state_class(state: str | None) -> str:
    """The CSS class that colours ``state`` (``st-none`` for a missing state)."""
    name = _NOT_A_CLASS_CHAR.sub("", (state or "none").lower()) or "none"
    return f"st-{name}"


def format_datetime(value: datetime | None, *, short: bool = False) -> str:
    """``2024-01-01 02:00:00`` in UTC (``01-01 02:00`` when ``short``); ``—`` for None."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float | None) -> str:
    """A duration as a person reads it: ``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def span(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end``, or None unless both are known."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON text (to be escaped by the template, like any string)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def register(app: Flask) -> None:
    """Install the filters and globals the templates use."""
    app.add_template_filter(format_datetime, "dt")
    app.add_template_filter(lambda v: format_datetime(v, short=True), "dt_short")
    app.add_template_filter(format_duration, "duration")
    app.add_template_filter(pretty_json, "pretty_json")
    app.add_template_filter(state_class, "state_class")
    app.add_template_global(span, "span")
    app.jinja_env.globals["LEGEND_TASK_STATES"] = LEGEND_TASK_STATES

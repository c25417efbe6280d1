"""The serialized form of a DAG: what every module downstream of the parser works with.

The parser turns user ``DAG`` objects into plain JSON-safe dicts (see docs/internals.md); the store
keeps them per version; the loop, the UI and the CLI read them back as :class:`SerializedDag`.
Nothing here imports user code, so holding thousands of these is cheap and safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

DEFAULT_POOL = "default_pool"
DEFAULT_QUEUE = "default"


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _td(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


@dataclass(frozen=True)
class SerializedTask:
    """One task of a serialized DAG: its wiring and the knobs the scheduler reads."""

    task_id: str
    operator: str = "BaseOperator"
    upstream: tuple[str, ...] = ()
    downstream: tuple[str, ...] = ()
    trigger_rule: str = "all_success"
    retries: int = 0
    retry_delay: timedelta = timedelta(seconds=300)
    retry_exponential_backoff: bool = False
    max_retry_delay: timedelta | None = None
    execution_timeout: timedelta | None = None
    pool: str = DEFAULT_POOL
    pool_slots: int = 1
    priority_weight: int = 1
    queue: str = DEFAULT_QUEUE
    depends_on_past: bool = False
    is_setup: bool = False
    is_teardown: bool = False
    template_fields: tuple[str, ...] = ()
    doc_md: str | None = None
    lineno: int | None = None
    # Saga: the task this one undoes (it runs only when a run fails), and this task's undoer.
    compensates: str | None = None
    compensate: str | None = None
    # Dynamic task mapping: per mapped argument, {"length": n} or {"xcom": {task_id, key}}.
    expand: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def is_mapped(self) -> bool:
        return bool(self.expand)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SerializedTask:
        return cls(
            task_id=d["task_id"],
            operator=d.get("operator", "BaseOperator"),
            upstream=tuple(d.get("upstream", ())),
            downstream=tuple(d.get("downstream", ())),
            trigger_rule=d.get("trigger_rule", "all_success"),
            retries=int(d.get("retries", 0)),
            retry_delay=_td(d.get("retry_delay", 300.0)) or timedelta(0),
            retry_exponential_backoff=bool(d.get("retry_exponential_backoff", False)),
            max_retry_delay=_td(d.get("max_retry_delay")),
            execution_timeout=_td(d.get("execution_timeout")),
            pool=d.get("pool") or DEFAULT_POOL,
            pool_slots=int(d.get("pool_slots", 1)),
            priority_weight=int(d.get("priority_weight", 1)),
            queue=d.get("queue") or DEFAULT_QUEUE,
            depends_on_past=bool(d.get("depends_on_past", False)),
            is_setup=bool(d.get("is_setup", False)),
            is_teardown=bool(d.get("is_teardown", False)),
            template_fields=tuple(d.get("template_fields", ())),
            doc_md=d.get("doc_md"),
            lineno=d.get("lineno"),
            compensates=d.get("compensates"),
            compensate=d.get("compensate"),
            expand=dict(d.get("expand") or {}),
        )


@dataclass(frozen=True)
class SerializedDag:
    """A DAG as the scheduler sees it. ``tasks`` is in topological order."""

    dag_id: str
    fileloc: str
    schedule: str | dict[str, float] | None
    timezone: str = "UTC"
    start_date: datetime | None = None
    end_date: datetime | None = None
    catchup: bool = False
    max_active_runs: int = 16
    max_active_tasks: int = 16
    dagrun_timeout: timedelta | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    doc_md: str | None = None
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    is_paused_upon_creation: bool | None = None
    #: The tasks of a normal run, in topological order (compensations are kept apart).
    tasks: tuple[SerializedTask, ...] = ()
    #: Compensation tasks (``compensate=``): they run only when a run fails.
    compensations: tuple[SerializedTask, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SerializedDag:
        all_tasks = [SerializedTask.from_dict(t) for t in d.get("tasks", ())]
        return cls(
            dag_id=d["dag_id"],
            fileloc=d.get("fileloc", ""),
            schedule=d.get("schedule"),
            timezone=d.get("timezone") or "UTC",
            start_date=_dt(d.get("start_date")),
            end_date=_dt(d.get("end_date")),
            catchup=bool(d.get("catchup", False)),
            max_active_runs=int(d.get("max_active_runs", 16)),
            max_active_tasks=int(d.get("max_active_tasks", 16)),
            dagrun_timeout=_td(d.get("dagrun_timeout")),
            description=d.get("description"),
            tags=tuple(d.get("tags") or ()),
            doc_md=d.get("doc_md"),
            params=dict(d.get("params") or {}),
            is_paused_upon_creation=d.get("is_paused_upon_creation"),
            tasks=tuple(t for t in all_tasks if t.compensates is None),
            compensations=tuple(t for t in all_tasks if t.compensates is not None),
            raw=d,
        )

    @cached_property
    def task_dict(self) -> dict[str, SerializedTask]:
        return {t.task_id: t for t in self.tasks}

    @cached_property
    def task_ids(self) -> list[str]:
        return [t.task_id for t in self.tasks]

    @property
    def schedule_summary(self) -> str:
        """The schedule as a person reads it: the cron/preset string, ``None`` or a duration."""
        if self.schedule is None:
            return "None"
        if isinstance(self.schedule, dict):
            return str(timedelta(seconds=self.schedule["interval"]))
        return self.schedule

"""``serialize_dag``: a DAG object as the JSON-safe dict that everything after the parser reads.

The shape is documented in docs/internals.md ("The serialized DAG") and read back by
:meth:`scheduler.core.serialized.SerializedDag.from_dict`. The output is deterministic (the same
DAG gives an equal dict, with sorted id lists), because the store hashes it to version DAGs.

Keys beyond the documented ones, per task: ``label`` (id without group prefix), ``task_group``,
``compensate`` (id of the task that undoes it, or null), ``compensates`` (for a compensation
task: the id it undoes, else null), ``do_xcom_push``, ``on_failure_fail_dagrun``,
``has_callbacks`` ({"on_success", "on_failure", "on_retry"} -> bool); per DAG: ``has_callbacks``
({"on_success", "on_failure"}), ``task_groups`` ({group_id: {"parent", "tooltip",
"tasks"}}) and ``lineno``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from scheduler.core.mapping import serialize_expand_input

if TYPE_CHECKING:
    from scheduler.core.dag import DAG, TaskGroup
    from scheduler.core.taskgraph import TaskNode


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else float(value.total_seconds())


def _utc_iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    u = value.astimezone(UTC)
    # rebuild as a plain datetime so pendulum & co. format like the standard library
    return datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond,
                    tzinfo=UTC).isoformat()


def json_safe(value: Any) -> Any:
    """``value`` made JSON-safe and deterministic: datetimes in ISO (UTC if aware), sets
    sorted, tuples as lists, timedeltas as seconds, non-finite floats and other objects as
    their ``str``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return _utc_iso(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _seconds(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((json_safe(v) for v in value), key=repr)
    return str(value)


def _schedule(schedule: str | timedelta | None) -> str | dict[str, float] | None:
    if isinstance(schedule, timedelta):
        return {"interval": float(schedule.total_seconds())}
    return schedule


def serialize_task(task: TaskNode) -> dict[str, Any]:
    """One task's entry of ``tasks`` (see the module docstring for the extra keys)."""
    t: Any = task
    group = t.task_group
    return {
        "task_id": t.task_id,
        "operator": getattr(t, "operator_name", type(t).__name__),
        "upstream": sorted(t.upstream_task_ids),
        "downstream": sorted(t.downstream_task_ids),
        "trigger_rule": str(t.trigger_rule),
        "retries": t.retries,
        "retry_delay": _seconds(t.retry_delay),
        "retry_exponential_backoff": t.retry_exponential_backoff,
        "max_retry_delay": _seconds(t.max_retry_delay),
        "execution_timeout": _seconds(t.execution_timeout),
        "pool": t.pool,
        "pool_slots": t.pool_slots,
        "priority_weight": t.priority_weight,
        "queue": t.queue,
        "depends_on_past": t.depends_on_past,
        "is_setup": t.is_setup,
        "is_teardown": t.is_teardown,
        "template_fields": list(t.template_fields),
        "doc_md": t.doc_md,
        "lineno": t.lineno,
        "label": t.label,
        "task_group": group.group_id if group is not None else None,
        "compensate": t.compensate_task_id,
        "compensates": t.compensates,
        "do_xcom_push": t.do_xcom_push,
        "on_failure_fail_dagrun": t.on_failure_fail_dagrun,
        "has_callbacks": {
            "on_success": t.on_success_callback is not None,
            "on_failure": t.on_failure_callback is not None,
            "on_retry": t.on_retry_callback is not None,
        },
        "expand": serialize_expand_input(getattr(t, "expand_input", None) or {}),
    }


def _task_groups(dag: DAG) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for gid in sorted(dag.task_group_dict):
        group: TaskGroup = dag.task_group_dict[gid]
        parent = group.parent_group
        groups[gid] = {
            "parent": parent.group_id if parent is not None else None,
            "tooltip": group.tooltip,
            "tasks": sorted(t.task_id for t in group.iter_tasks()),
        }
    return groups


def serialize_dag(dag: DAG) -> dict[str, Any]:
    """``dag`` as the serialized-DAG dict of docs/internals.md, tasks in topological order.

    Calls ``dag.topological_sort()``, so a cycle raises CycleError. Param defaults are made
    JSON-safe with :func:`json_safe`.
    """
    return {
        "dag_id": dag.dag_id,
        "fileloc": dag.fileloc,
        "lineno": dag.lineno,
        "schedule": _schedule(dag.schedule),
        "timezone": dag.timezone,
        "start_date": _utc_iso(dag.start_date),
        "end_date": _utc_iso(dag.end_date),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
        "dagrun_timeout": _seconds(dag.dagrun_timeout),
        "description": dag.description,
        "tags": sorted(set(dag.tags)),
        "doc_md": dag.doc_md,
        "params": {name: json_safe(p.to_dict()) for name, p in dag.params.items()},
        "is_paused_upon_creation": dag.is_paused_upon_creation,
        "has_callbacks": {
            "on_success": dag.on_success_callback is not None,
            "on_failure": dag.on_failure_callback is not None,
        },
        "task_groups": _task_groups(dag),
        "tasks": [serialize_task(t) for t in dag.topological_sort()],
    }

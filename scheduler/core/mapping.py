"""Dynamic task mapping: ``.expand()`` and ``.partial()`` (Airflow's names).

A mapped task is one task in the DAG whose task instances are made when it becomes ready:
one per element of its mapped input (a literal list or dict, or the XCom of an upstream
task). The authoring side records the mapped arguments on the operator (``expand_input``) and
where they go (``expand_target``: the operator's attributes, or a ``@task`` function's keyword
arguments); the serialized task says how to find the number of elements; the worker gives each
task instance its element (:func:`bind_mapped_arguments`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scheduler.errors import DagDefinitionError


def check_mapped_values(mapped: Mapping[str, Any], *, fileloc: str | None,
                        lineno: int | None) -> None:
    """Refuse ``expand`` arguments that cannot be mapped over, naming them."""
    from scheduler.operators.base import XComArg

    if not mapped:
        raise DagDefinitionError("expand() needs at least one keyword argument to map over",
                                 fileloc=fileloc, lineno=lineno,
                                 hint="e.g. .expand(x=[1, 2, 3]) or .expand(x=upstream())")
    for name, value in mapped.items():
        if not isinstance(value, XComArg | list | tuple | dict):
            raise DagDefinitionError(
                f"expand() argument {name!r} is a {type(value).__name__}, which cannot be "
                "mapped over", fileloc=fileloc, lineno=lineno,
                hint="pass a list, a tuple, a dict or the output of an upstream task")


def serialize_expand_input(mapped: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """What the scheduler needs to count a mapped task's instances, per argument."""
    from scheduler.operators.base import XComArg

    out: dict[str, dict[str, Any]] = {}
    for name in sorted(mapped):
        value = mapped[name]
        if isinstance(value, XComArg):
            out[name] = {"xcom": {"task_id": value.operator.task_id, "key": value.key}}
        else:
            out[name] = {"length": len(value)}
    return out


def elements(value: Any) -> list[Any]:
    """The elements a mapped argument's value maps over: a list's items, a dict's (key,
    value) pairs. Anything else cannot be mapped over (TypeError naming it)."""
    if isinstance(value, Mapping):
        return [list(item) for item in value.items()]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"cannot map over a {type(value).__name__} ({value!r}); an upstream task "
                    "of a mapped task must return a list or a dict")


def bind_mapped_arguments(task: Any, context: Mapping[str, Any], map_index: int) -> None:
    """Give the task instance at ``map_index`` its element of each mapped argument (in place,
    on the worker's copy of the task). Several mapped arguments combine as a cross product,
    the first argument varying slowest, as in Airflow."""
    from scheduler.templating import resolve

    mapped: Mapping[str, Any] = getattr(task, "expand_input", None) or {}
    if not mapped or map_index < 0:
        return
    names = sorted(mapped)
    lists = [elements(resolve(mapped[name], context)) for name in names]
    chosen: dict[str, Any] = {}
    rest = map_index
    for name, items in reversed(list(zip(names, lists, strict=True))):
        rest, i = divmod(rest, len(items))
        chosen[name] = items[i]
    if getattr(task, "expand_target", "attrs") == "op_kwargs":
        task.op_kwargs = {**task.op_kwargs, **chosen}
    else:
        for name, value in chosen.items():
            setattr(task, name, value)


def mapped_length(expand: Mapping[str, Mapping[str, Any]],
                  xcom_value: Any) -> int:
    """How many task instances a mapped task gets: the product of its arguments' lengths.

    ``xcom_value(task_id, key)`` returns an upstream XCom (None when missing).
    """
    total = 1
    for spec in expand.values():
        if "length" in spec:
            total *= int(spec["length"])
        else:
            value = xcom_value(spec["xcom"]["task_id"], spec["xcom"]["key"])
            total *= len(elements(value)) if value is not None else 0
    return total


def aggregate_state(states: Sequence[Any]) -> Any:
    """The state a mapped task shows to its downstream tasks and to the run's outcome.

    While any instance is unfinished the task is in progress (``running``; ``scheduled`` if
    the only unfinished ones wait for a slot); once all are finished: ``failed`` if any
    failed, ``upstream_failed`` if any was, ``skipped`` if all were, else ``success``.
    """
    from scheduler.core.states import FINISHED_TASK_STATES, TaskState

    as_states = [TaskState(s) for s in states]
    unfinished = [s for s in as_states if s not in FINISHED_TASK_STATES]
    if unfinished:
        if all(s == TaskState.SCHEDULED for s in unfinished):
            return TaskState.SCHEDULED
        return TaskState.RUNNING
    if TaskState.FAILED in as_states:
        return TaskState.FAILED
    if TaskState.UPSTREAM_FAILED in as_states:
        return TaskState.UPSTREAM_FAILED
    if all(s == TaskState.SKIPPED for s in as_states):
        return TaskState.SKIPPED
    return TaskState.SUCCESS

"""Operators that run a Python callable: PythonOperator, BranchPythonOperator, ShortCircuitOperator.

Branching and short-circuiting are decided here (which downstream tasks to follow) and
recorded as the XCom ``skipmixin_followed`` (a list of task ids); the scheduler skips the direct
downstream tasks that are not in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from scheduler import templating
from scheduler.errors import DagDefinitionError, TaskFailed
from scheduler.operators.base import BaseOperator, call_with_context

#: XCom key under which branching operators record the task ids they follow.
FOLLOWED_XCOM_KEY = "skipmixin_followed"


class PythonCallableMixin:
    """The arguments of a task that calls a Python callable (PythonOperator, PythonSensor):
    checked and stored here, resolved for a call by :func:`resolved_call`."""

    template_fields: ClassVar[Sequence[str]] = ("templates_dict", "op_args", "op_kwargs")
    ui_color: ClassVar[str] = "#ffefeb"
    python_callable: Callable[..., Any]
    op_args: list[Any]
    op_kwargs: dict[str, Any]
    templates_dict: dict[str, Any] | None

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        templates_dict: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # the operator class that follows in the MRO
        set_python_callable(self, python_callable, op_args, op_kwargs, templates_dict)


class PythonOperator(PythonCallableMixin, BaseOperator):
    """Calls ``python_callable(*op_args, **op_kwargs)`` plus the context values it asks for.

    Context keys are passed by name when the callable has a parameter of that name, or all of
    them when it takes ``**kwargs`` (Airflow semantics); ``templates_dict`` (rendered) is added
    to the context. XComArgs in ``op_args``/``op_kwargs``/``templates_dict`` are resolved
    first. The callable's return value is the task's XCom.
    """

    def execute(self, context: Mapping[str, Any]) -> Any:
        return self.execute_callable(*resolved_call(self, context))

    def execute_callable(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], context: Mapping[str, Any]
    ) -> Any:
        """Call the callable; subclasses wrap this to post-process its result."""
        return call_with_context(self.python_callable, args, kwargs, context)


def _push_followed(context: Mapping[str, Any], followed: list[str]) -> None:
    ti = context.get("ti")
    if ti is not None:
        ti.xcom_push(FOLLOWED_XCOM_KEY, followed)


class BranchPythonOperator(PythonOperator):
    """Its callable returns the task id(s) to follow: a str, a list of str, or None (none).

    A TaskGroup id stands for the group's root tasks. ``execute`` returns the followed task ids
    (a list, which becomes the ``return_value`` XCom), pushes them under
    ``skipmixin_followed`` and keeps them in ``followed_task_ids``. An id that is not a task or
    group of the DAG fails the task.
    """

    ui_color = "#ffe4b5"

    def execute(self, context: Mapping[str, Any]) -> list[str]:
        result = super().execute(context)
        followed = self._followed(result)
        self.followed_task_ids = followed
        _push_followed(context, followed)
        return followed

    def _followed(self, result: Any) -> list[str]:
        if result is None:
            return []
        ids: Iterable[Any] = [result] if isinstance(result, str) else result
        if not isinstance(ids, Iterable) or not all(isinstance(i, str) for i in ids):
            raise TaskFailed(
                f"branch callable of task {self.task_id!r} returned {result!r}; return a task "
                "id, a list of task ids, or None")
        dag = self.dag
        followed: list[str] = []
        unknown: list[str] = []
        for task_id in ids:
            if dag is None or task_id in dag.task_dict:
                targets = [task_id]
            elif task_id in dag.task_group_dict:
                targets = [t.task_id for t in dag.task_group_dict[task_id].roots]
            else:
                unknown.append(task_id)
                continue
            followed.extend(t for t in targets if t not in followed)
        if unknown:
            raise TaskFailed(
                f"branch callable of task {self.task_id!r} returned unknown task ids "
                f"{unknown!r}; return ids of tasks (or TaskGroups) of this DAG, e.g. "
                f"{sorted(self.downstream_task_ids)!r}")
        return followed


class ShortCircuitOperator(PythonOperator):
    """Continues only if its callable's result is truthy.

    ``execute`` returns the condition (a bool) and pushes ``skipmixin_followed``: every direct
    downstream task id when true, ``[]`` when false. With ``ignore_downstream_trigger_rules``
    (the default) a false condition skips everything downstream; otherwise only direct
    downstream tasks are skipped and the rest follow their trigger rules.
    """

    ui_color = "#ffe4b5"

    def __init__(self, *, ignore_downstream_trigger_rules: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ignore_downstream_trigger_rules = ignore_downstream_trigger_rules

    def execute(self, context: Mapping[str, Any]) -> bool:
        condition = bool(super().execute(context))
        self.followed_task_ids = sorted(self.downstream_task_ids) if condition else []
        _push_followed(context, self.followed_task_ids)
        return condition


def set_python_callable(task: Any, python_callable: Callable[..., Any],
                        op_args: Sequence[Any] | None, op_kwargs: Mapping[str, Any] | None,
                        templates_dict: Mapping[str, Any] | None) -> None:
    """Check and store the arguments shared by PythonOperator and PythonSensor."""
    if not callable(python_callable):
        raise DagDefinitionError(
            f"python_callable of task {task.task_id!r} is not callable: {python_callable!r}",
            fileloc=task.fileloc, lineno=task.lineno,
            hint="pass a function (without calling it)")
    task.python_callable = python_callable
    task.op_args = list(op_args or [])
    task.op_kwargs = dict(op_kwargs or {})
    task.templates_dict = dict(templates_dict) if templates_dict is not None else None


def resolved_call(task: Any, context: Mapping[str, Any]
                  ) -> tuple[Any, Any, dict[str, Any]]:
    """``(args, kwargs, context)`` for calling the task's callable: XComArgs resolved, the
    rendered ``templates_dict`` added to the context."""
    context = {**context, "templates_dict": templating.resolve(task.templates_dict, context)}
    return (templating.resolve(task.op_args, context),
            templating.resolve(task.op_kwargs, context), context)

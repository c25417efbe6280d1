"""``@dag`` and TaskFlow ``@task``: DAGs and tasks written as plain Python functions.

``@dag`` turns a function into a DAG factory: calling it creates the DAG (``dag_id`` defaults to
the function's name, its parameters become DAG params with their defaults) and calls the
function inside ``with dag:``, each parameter bound to a :class:`DagParam` that resolves to the
run's value of that param.

``@task`` turns a function into a task factory: each call inside a DAG creates a task (ids
``name``, ``name__1``, ``name__2``... when called again) and returns an
:class:`~scheduler.operators.base.XComArg` for its return value. XComArgs (and DagParams)
given as arguments, also inside lists, tuples and dicts, wire the dependency and are replaced
by their values when the task runs.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from scheduler.core.dag import DAG, TaskGroup
from scheduler.core.taskgraph import resolve_dag_and_group, user_location
from scheduler.errors import DagDefinitionError, TaskFailed
from scheduler.operators.base import XComArg, call_with_context
from scheduler.operators.bash import BashOperator
from scheduler.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
from scheduler.templating import Resolvable, render, resolve

__all__ = ["DagParam", "XComArg", "dag", "task"]

#: Context keys a @task function may declare without the caller passing them.
KNOWN_CONTEXT_KEYS = frozenset({
    "ds", "ds_nodash", "ts", "ts_nodash", "logical_date", "data_interval_start",
    "data_interval_end", "run_id", "dag", "dag_run", "ti", "task_instance", "task", "params",
    "var", "conn", "macros", "idempotency_key", "conf", "templates_dict", "try_number",
    "prev_data_interval_start_success", "prev_data_interval_end_success", "test_mode",
})


class DagParam(Resolvable):
    """A ``@dag`` function's parameter: the run's value of the DAG param ``name``."""

    def __init__(self, name: str, default: Any = None) -> None:
        self.name = name
        self.default = default

    def resolve(self, context: Mapping[str, Any]) -> Any:
        return (context.get("params") or {}).get(self.name, self.default)

    def __repr__(self) -> str:
        return f"DagParam({self.name!r})"


# --- @dag -------------------------------------------------------------------------------------


def _dag_factory(fn: Callable[..., Any], dag_id: str | None, dag_kwargs: dict[str, Any]
                 ) -> Callable[..., DAG]:
    signature = inspect.signature(fn)
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    names = [p.name for p in signature.parameters.values() if p.kind not in kinds]

    @functools.wraps(fn)
    def factory(*args: Any, **kwargs: Any) -> DAG:
        try:
            given = signature.bind_partial(*args, **kwargs).arguments
        except TypeError as exc:
            loc = user_location()
            raise DagDefinitionError(f"@dag {fn.__name__}: {exc}", fileloc=loc[0],
                                     lineno=loc[1], hint="pass only the function's parameters")
        params = dict(dag_kwargs.get("params") or {})
        for name in names:
            default = signature.parameters[name].default
            if name in given:
                params[name] = given[name]
            elif name not in params:
                params[name] = None if default is inspect.Parameter.empty else default
        options = {k: v for k, v in dag_kwargs.items() if k != "params"}
        if options.get("doc_md") is None and fn.__doc__:
            options["doc_md"] = inspect.cleandoc(fn.__doc__)
        dag_obj = DAG(dag_id or fn.__name__, params=params, **options)
        call_args: list[Any] = []
        call_kwargs: dict[str, Any] = {}
        for name in names:
            param = signature.parameters[name]
            value = DagParam(name, dag_obj.params[name].default)
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                call_args.append(value)
            else:
                call_kwargs[name] = value
        with dag_obj:
            fn(*call_args, **call_kwargs)
        return dag_obj

    return factory


def dag(dag_id: Any = None, **dag_kwargs: Any) -> Any:
    """Decorator making a function a DAG factory: ``@dag``, ``@dag()`` or ``@dag("id", ...)``.

    ``dag_kwargs`` are :class:`~scheduler.core.dag.DAG` arguments. Calling the decorated function
    returns the new DAG; arguments given in the call override the params' defaults. The
    function's docstring is the DAG's ``doc_md`` unless one is given.
    """
    if callable(dag_id):
        return _dag_factory(dag_id, None, {})

    def decorator(fn: Callable[..., Any]) -> Callable[..., DAG]:
        return _dag_factory(fn, dag_id, dag_kwargs)

    return decorator


# --- @task ------------------------------------------------------------------------------------


def _infer_multiple_outputs(fn: Callable[..., Any]) -> bool:
    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:  # unresolvable annotations: fall back to their text
        ret = getattr(fn, "__annotations__", {}).get("return")
    if isinstance(ret, str):
        return ret.split("[")[0].strip() in {"dict", "Dict", "typing.Dict"}
    return (typing.get_origin(ret) or ret) is dict


def _unique_task_id(label: str, dag_obj: DAG | None, group: TaskGroup | None) -> str:
    """``label``, or ``label__N`` with the first free N if the DAG already has that task."""
    if dag_obj is None:
        return label

    def full(name: str) -> str:
        return group.child_id(name) if group is not None else name

    if full(label) not in dag_obj.task_dict:
        return label
    core = re.split(r"__\d+$", label)[0]
    n = 1
    while full(f"{core}__{n}") in dag_obj.task_dict:
        n += 1
    return f"{core}__{n}"


class _PythonDecoratedOperator(PythonOperator):
    """The operator behind ``@task``: calls the function; ``multiple_outputs`` pushes each key
    of a returned dict as its own XCom too (the whole dict stays ``return_value``)."""

    custom_operator_name = "@task"

    def __init__(self, *, python_callable: Callable[..., Any],
                 multiple_outputs: bool | None = None, **kwargs: Any) -> None:
        if multiple_outputs is None:
            multiple_outputs = _infer_multiple_outputs(python_callable)
        self.multiple_outputs = bool(multiple_outputs)
        super().__init__(python_callable=python_callable, **kwargs)

    def execute_callable(self, args: Any, kwargs: Any, context: Mapping[str, Any]) -> Any:
        value = super().execute_callable(args, kwargs, context)
        if not self.multiple_outputs or value is None:
            return value
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise TaskFailed(
                f"task {self.task_id!r} has multiple_outputs=True but returned {value!r}; "
                "return a dict with str keys, or set multiple_outputs=False")
        ti = context.get("ti")
        if ti is not None:
            for key, item in value.items():
                ti.xcom_push(key, item)
        return value


class _BranchDecoratedOperator(_PythonDecoratedOperator, BranchPythonOperator):
    custom_operator_name = "@task.branch"


class _ShortCircuitDecoratedOperator(_PythonDecoratedOperator, ShortCircuitOperator):
    custom_operator_name = "@task.short_circuit"


class _BashDecoratedOperator(BashOperator):
    """The operator behind ``@task.bash``: the function returns the command to run, which is
    then rendered as a Jinja template and run like a BashOperator's ``bash_command``."""

    custom_operator_name = "@task.bash"
    template_fields: ClassVar[Sequence[str]] = ("op_args", "op_kwargs", "env", "cwd")

    def __init__(self, *, python_callable: Callable[..., Any], op_args: Any = None,
                 op_kwargs: Any = None, **kwargs: Any) -> None:
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.python_callable = python_callable
        super().__init__(bash_command="", **kwargs)

    def execute(self, context: Mapping[str, Any]) -> str | None:
        args, kwargs = resolve(self.op_args, context), resolve(self.op_kwargs, context)
        command = call_with_context(self.python_callable, args, kwargs, context)
        if not isinstance(command, str) or not command.strip():
            raise TaskFailed(f"@task.bash function of task {self.task_id!r} returned "
                             f"{command!r}; return the command to run as a non-empty str")
        if self._jinja_env is not None:
            command = render(command, context, self._jinja_env)
        self.bash_command = command
        return super().execute(context)


class _TaskFunction:
    """A ``@task``-decorated function. Calling it inside a DAG adds a task, returns an XComArg."""

    def __init__(self, function: Callable[..., Any], operator_class: type,
                 kwargs: Mapping[str, Any]) -> None:
        self.function = function
        self.operator_class = operator_class
        self.kwargs = dict(kwargs)
        self._signature = inspect.signature(function)
        functools.update_wrapper(self, function)

    def _check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            bound = self._signature.bind_partial(*args, **kwargs).arguments
        except TypeError as exc:
            error: str | None = str(exc)
        else:
            missing = [
                p.name for p in self._signature.parameters.values()
                if p.default is p.empty and p.name not in bound
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
                and p.name not in KNOWN_CONTEXT_KEYS
            ]
            error = f"missing argument(s) {', '.join(map(repr, missing))}" if missing else None
        if error:
            loc = user_location()
            raise DagDefinitionError(
                f"@task {self.function.__name__}: {error}", fileloc=loc[0], lineno=loc[1],
                hint="call the task with the arguments its function takes (context values "
                "such as ti or ds are passed when it runs)")

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        self._check_arguments(args, kwargs)
        return XComArg(self._make_operator(args, kwargs))

    def _make_operator(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        options = dict(self.kwargs)
        dag_obj, group = resolve_dag_and_group(options.pop("dag", None),
                                               options.pop("task_group", None))
        label = options.pop("task_id", None) or self.function.__name__
        if options.get("doc_md") is None and self.function.__doc__:
            options["doc_md"] = inspect.cleandoc(self.function.__doc__)
        return self.operator_class(
            task_id=_unique_task_id(label, dag_obj, group), python_callable=self.function,
            op_args=list(args), op_kwargs=kwargs, dag=dag_obj, task_group=group, **options)

    def override(self, **kwargs: Any) -> _TaskFunction:
        """The same task function with other operator arguments (``task_id``, ``retries``...)."""
        return _TaskFunction(self.function, self.operator_class, {**self.kwargs, **kwargs})

    def expand(self, **mapped: Any) -> XComArg:
        """Add a mapped task: one task instance per element of the mapped arguments (lists,
        dicts, or outputs of upstream tasks). Its output, passed to another task, is the list
        of every instance's return value in map-index order."""
        return self.partial().expand(**mapped)

    def partial(self, **kwargs: Any) -> _PartialTaskFunction:
        """Fix the arguments every mapped task instance shares; ``.expand(...)`` the rest."""
        return _PartialTaskFunction(self, kwargs)

    def __repr__(self) -> str:
        return f"<@task {self.function.__name__}>"


class _PartialTaskFunction:
    def __init__(self, function: _TaskFunction, kwargs: dict[str, Any]) -> None:
        self.function = function
        self.kwargs = kwargs

    def expand(self, **mapped: Any) -> XComArg:
        from scheduler.core.mapping import check_mapped_values

        loc = user_location()
        check_mapped_values(mapped, fileloc=loc[0], lineno=loc[1])
        clash = sorted(set(mapped) & set(self.kwargs))
        if clash:
            raise DagDefinitionError(
                f"{', '.join(clash)} given to both partial() and expand()", fileloc=loc[0],
                lineno=loc[1], hint="give each argument to only one of them")
        self.function._check_arguments((), {**self.kwargs, **mapped})
        operator = self.function._make_operator((), dict(self.kwargs))
        operator._set_expand_input(mapped, "op_kwargs")
        return XComArg(operator)


class _TaskDecorator:
    """``task``: ``@task``, ``@task(**operator_args)``, ``@task.python``, ``@task.bash``,
    ``@task.branch`` and ``@task.short_circuit``.

    Operator arguments are BaseOperator's (``task_id``, ``retries``, ``pool``...), plus
    ``multiple_outputs`` for the Python kinds (default: True if the function is annotated to
    return a dict) and BashOperator's (``env``, ``cwd``...) for ``@task.bash``.
    """

    def _make(self, operator_class: type, python_callable: Callable[..., Any] | None,
              kwargs: dict[str, Any]) -> Any:
        if python_callable is not None:
            return _TaskFunction(python_callable, operator_class, kwargs)
        return lambda fn: _TaskFunction(fn, operator_class, kwargs)

    def __call__(self, python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        return self._make(_PythonDecoratedOperator, python_callable, kwargs)

    def python(self, python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        return self._make(_PythonDecoratedOperator, python_callable, kwargs)

    def bash(self, python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        return self._make(_BashDecoratedOperator, python_callable, kwargs)

    def branch(self, python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        return self._make(_BranchDecoratedOperator, python_callable, kwargs)

    def short_circuit(self, python_callable: Callable[..., Any] | None = None,
                      **kwargs: Any) -> Any:
        return self._make(_ShortCircuitDecoratedOperator, python_callable, kwargs)


task = _TaskDecorator()

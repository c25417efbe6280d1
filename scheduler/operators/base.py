"""BaseOperator: the arguments every task takes, its templating hooks, and XComArg.

Operators are created in DAG files (inside ``with DAG(...)``, or with ``dag=``) and executed by
the worker, which calls :meth:`BaseOperator.render_template_fields` then
:meth:`BaseOperator.execute`; ``execute``'s return value becomes the ``return_value`` XCom
(when not None and ``do_xcom_push``).

``default_args`` (the DAG's, overlaid by enclosing TaskGroups' and then by the operator's own
``default_args=``) fill in any constructor argument the call did not give, as in Airflow: only
arguments some ``__init__`` in the operator's class hierarchy accepts; other keys are ignored.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from abc import ABCMeta
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, cast

from scheduler import templating
from scheduler.core.taskgraph import (
    DependencyMixin,
    Location,
    TaskNode,
    resolve_dag_and_group,
    user_location,
)
from scheduler.core.trigger_rules import TriggerRule
from scheduler.errors import DagDefinitionError, TaskSkipped

if TYPE_CHECKING:
    from jinja2 import Environment

    from scheduler.core.dag import DAG, TaskGroup

#: Airflow's name for :class:`~scheduler.errors.TaskSkipped`, for ported DAG files.
AirflowSkipException = TaskSkipped

_NOT_DEFAULTABLE = frozenset({"self", "task_id", "dag", "task_group", "default_args"})


@cache
def _accepted_args(cls: type) -> frozenset[str]:
    """Names some ``__init__`` of ``cls``'s hierarchy takes by keyword."""
    names: set[str] = set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        names.update(p.name for p in inspect.signature(init).parameters.values()
                     if p.kind in kinds)
    return frozenset(names - _NOT_DEFAULTABLE)


class _OperatorMeta(ABCMeta):
    """Applies ``default_args`` before ``__init__`` and joins the DAG after it."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        loc = user_location()
        dag, group = resolve_dag_and_group(kwargs.get("dag"), kwargs.get("task_group"))
        kwargs["dag"], kwargs["task_group"] = dag, group
        defaults = group.merged_default_args() if group is not None else {}
        defaults.update(kwargs.pop("default_args", None) or {})
        accepted = _accepted_args(cls)
        for key, value in defaults.items():
            if key not in accepted:
                continue
            if key not in kwargs:
                kwargs[key] = copy.copy(value)
            elif key == "params" and isinstance(value, Mapping) and kwargs[key] is not None:
                kwargs[key] = {**value, **kwargs[key]}
        obj: Any = cast(Any, cls).__new__(cls)
        obj._location = loc
        obj.__init__(*args, **kwargs)
        obj._finish_node()
        return obj


def _duration(value: Any, name: str, loc: Location) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise DagDefinitionError(f"{name} must be a timedelta (or seconds), got {value!r}",
                             fileloc=loc[0], lineno=loc[1],
                             hint=f"e.g. {name}=timedelta(minutes=5)")


class BaseOperator(TaskNode, metaclass=_OperatorMeta):
    """A task: one unit of work in a DAG. Subclasses implement :meth:`execute`.

    ``template_fields`` name attributes rendered with Jinja before ``execute``;
    ``template_ext`` lists suffixes that mark a templated string as a template *file* (found
    beside the DAG file or on the DAG's ``template_searchpath``). Invalid arguments raise
    DagDefinitionError with the file and line that created the task.
    """

    template_fields: ClassVar[Sequence[str]] = ()
    template_ext: ClassVar[Sequence[str]] = ()
    #: Shown instead of the class name (e.g. "@task"); None means the class name.
    custom_operator_name: ClassVar[str | None] = None
    ui_color: ClassVar[str] = "#fff"
    _location: Location

    def __init__(
        self,
        task_id: str,
        *,
        dag: DAG | None = None,
        retries: int = 0,
        retry_delay: timedelta | float = timedelta(minutes=5),
        retry_exponential_backoff: bool = False,
        max_retry_delay: timedelta | float | None = None,
        execution_timeout: timedelta | float | None = None,
        trigger_rule: str = "all_success",
        pool: str = "default_pool",
        pool_slots: int = 1,
        priority_weight: int = 1,
        queue: str = "default",
        depends_on_past: bool = False,
        params: Mapping[str, Any] | None = None,
        doc_md: str | None = None,
        on_success_callback: Callable[..., Any] | None = None,
        on_failure_callback: Callable[..., Any] | None = None,
        on_retry_callback: Callable[..., Any] | None = None,
        compensate: BaseOperator | XComArg | Callable[..., Any] | None = None,
        do_xcom_push: bool = True,
        task_group: TaskGroup | None = None,
        **kwargs: Any,
    ) -> None:
        loc = getattr(self, "_location", None) or user_location()
        if kwargs:
            self._reject_unknown(kwargs, loc)
        self._init_node(task_id, dag, task_group, loc)
        if not TriggerRule.is_valid(trigger_rule):
            raise DagDefinitionError(
                f"unknown trigger_rule {trigger_rule!r} on task {self.task_id!r}",
                fileloc=loc[0], lineno=loc[1],
                hint="use one of " + ", ".join(TriggerRule.values()))
        for name, value, low in (("retries", retries, 0), ("pool_slots", pool_slots, 1),
                                 ("priority_weight", priority_weight, None)):
            if not isinstance(value, int) or isinstance(value, bool) or (
                    low is not None and value < low):
                raise DagDefinitionError(
                    f"{name} of task {self.task_id!r} must be an int"
                    + (f" >= {low}" if low is not None else "") + f", got {value!r}",
                    fileloc=loc[0], lineno=loc[1], hint=f"pass e.g. {name}={max(low or 0, 1)}")
        if compensate is not None and not (
            callable(compensate) or isinstance(compensate, TaskNode | XComArg)
        ):
            raise DagDefinitionError(
                f"compensate= of task {self.task_id!r} must be a task or a callable, got "
                f"{compensate!r}", fileloc=loc[0], lineno=loc[1],
                hint="pass a task (e.g. an operator) or a function that undoes this task")
        self.retries = retries
        self.retry_delay: timedelta = _duration(retry_delay, "retry_delay", loc) or timedelta(0)
        self.retry_exponential_backoff = bool(retry_exponential_backoff)
        self.max_retry_delay = _duration(max_retry_delay, "max_retry_delay", loc)
        self.execution_timeout = _duration(execution_timeout, "execution_timeout", loc)
        self.trigger_rule: str = TriggerRule(trigger_rule).value
        self.pool = pool
        self.pool_slots = pool_slots
        self.priority_weight = priority_weight
        self.queue = queue
        self.depends_on_past = bool(depends_on_past)
        self.params: dict[str, Any] = dict(params or {})
        self.doc_md = doc_md
        self.on_success_callback = on_success_callback
        self.on_failure_callback = on_failure_callback
        self.on_retry_callback = on_retry_callback
        self.compensate = compensate
        #: id of the task that undoes this one (set when the task joins its DAG), or None
        self.compensate_task_id: str | None = None
        #: for a compensation task: id of the task it undoes, else None
        self.compensates: str | None = None
        self.do_xcom_push = bool(do_xcom_push)
        self.is_setup = False
        self.is_teardown = False
        self.on_failure_fail_dagrun = False
        self._jinja_env: Environment | None = None

    def _reject_unknown(self, kwargs: Mapping[str, Any], loc: Location) -> None:
        names = sorted(kwargs)
        valid = sorted(_accepted_args(type(self)) | {"task_id", "dag", "task_group",
                                                      "default_args"})
        close = [m for n in names for m in difflib.get_close_matches(n, valid, n=1)]
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise DagDefinitionError(
            f"{type(self).__name__} got unknown argument{'s' if len(names) > 1 else ''} "
            + ", ".join(map(repr, names)), fileloc=loc[0], lineno=loc[1],
            hint=f"{hint}remove or rename it; valid arguments are: {', '.join(valid)}")

    # --- graph hooks ------------------------------------------------------------------------

    def _finish_node(self) -> None:
        super()._finish_node()
        for field in self.template_fields:
            for arg in _find_xcomargs(getattr(self, field, None)):
                if arg.operator is not self:
                    self.set_upstream(arg.operator)

    def _set_expand_input(self, mapped: Mapping[str, Any], target: str) -> None:
        self.expand_input = dict(mapped)
        self.expand_target = target
        for arg in _find_xcomargs(self.expand_input):
            if arg.operator is not self:
                self.set_upstream(arg.operator)

    def _on_attached(self) -> None:
        comp = self.compensate
        if comp is None or self.compensate_task_id is not None or self._dag is None:
            return
        if isinstance(comp, XComArg):
            comp = comp.operator
        if isinstance(comp, TaskNode):
            if comp.dag is None:
                self._dag.add_task(comp)
            target: BaseOperator = comp  # type: ignore[assignment]
        else:
            target = _CompensationOperator(
                task_id=f"{self.task_id}__compensate", python_callable=comp, dag=self._dag,
                task_group=self._dag.task_group)
        target.compensates = self.task_id
        self.compensate_task_id = target.task_id

    @property
    def operator_name(self) -> str:
        """What the UI calls this kind of task: ``custom_operator_name`` or the class name."""
        return self.custom_operator_name or type(self).__name__

    @property
    def output(self) -> XComArg:
        """This task's ``return_value`` XCom, to pass to other tasks' arguments."""
        return XComArg(self)

    def as_setup(self) -> BaseOperator:
        """Mark this task as a setup task (Airflow semantics); returns the task."""
        self.is_setup = True
        return self

    def as_teardown(
        self, setups: Any = None, *, on_failure_fail_dagrun: bool = False
    ) -> BaseOperator:
        """Mark this task as a teardown of ``setups`` (tasks, XComArgs or a list); returns it.

        A teardown runs once its setups are done whatever happened in between (trigger rule
        ``all_done_setup_success``); ``setups`` are marked as setups and wired upstream of it.
        """
        self.is_teardown = True
        self.trigger_rule = TriggerRule.ALL_DONE_SETUP_SUCCESS.value
        self.on_failure_fail_dagrun = on_failure_fail_dagrun
        if setups is not None:
            for setup in setups if isinstance(setups, list | tuple) else [setups]:
                node = setup.operator if isinstance(setup, XComArg) else setup
                node.as_setup()
                node.set_downstream(self)
        return self

    # --- running ------------------------------------------------------------------------------

    def render_template_fields(
        self, context: Mapping[str, Any], jinja_env: Environment | None = None
    ) -> None:
        """Render every attribute named in ``template_fields`` in place.

        ``jinja_env`` defaults to :func:`scheduler.templating.make_jinja_env` of the task's DAG.
        XComArgs in those fields are replaced by their values. Jinja errors propagate with a
        note naming the field and task.
        """
        env = jinja_env or templating.make_jinja_env(self._dag)
        self._jinja_env = env
        for field in self.template_fields:
            try:
                value = templating.render(getattr(self, field), context, env,
                                          template_ext=self.template_ext)
            except Exception as exc:
                exc.add_note(f"while rendering template field {field!r} of task {self.task_id!r}")
                raise
            setattr(self, field, value)

    def execute(self, context: Mapping[str, Any]) -> Any:
        """Do the task's work. The return value becomes the ``return_value`` XCom.

        Raise :class:`~scheduler.errors.TaskSkipped` to end as skipped; any other exception
        fails the attempt.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    def on_kill(self) -> None:
        """Called when the attempt is stopped (timeout, user action): release what it holds."""

    #: Dynamic task mapping: the mapped arguments (name -> list, dict or XComArg), and where
    #: each task instance's element goes ("attrs": operator attributes; "op_kwargs": the
    #: keyword arguments of a @task function). Empty for an ordinary task.
    expand_input: Mapping[str, Any] = {}
    expand_target: str = "attrs"

    @property
    def is_mapped(self) -> bool:
        return bool(self.expand_input)

    @classmethod
    def partial(cls, **kwargs: Any) -> _PartialOperator:
        """Fix the arguments every mapped task instance shares; ``.expand(...)`` the rest."""
        return _PartialOperator(cls, kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> BaseOperator:
        # The worker copies a task before rendering it; the DAG and group stay shared.
        cls = type(self)
        result = cls.__new__(cls)
        memo[id(self)] = result
        shared = {"_dag", "task_group", "_pending_dag", "_jinja_env"}
        for key, value in self.__dict__.items():
            setattr(result, key, value if key in shared else copy.deepcopy(value, memo))
        return result


def call_with_context(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any],
    context: Mapping[str, Any],
) -> Any:
    """Call ``fn(*args, **kwargs)`` plus the context values its signature asks for.

    As in Airflow: a context key is passed if ``fn`` has a parameter of that name (not already
    bound by ``args``/``kwargs``), or every unbound key if ``fn`` takes ``**kwargs``.
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return fn(*args, **kwargs)
    positional = [p.name for p in params.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    bound = set(positional[: len(args)]) | set(kwargs)
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    extra = {
        key: value for key, value in context.items()
        if key not in bound and (takes_all or (
            key in params and params[key].kind in (params[key].POSITIONAL_OR_KEYWORD,
                                                   params[key].KEYWORD_ONLY)))
    }
    return fn(*args, **kwargs, **extra)


class _CompensationOperator(BaseOperator):
    """Runs a ``compensate=`` callable, called like a ``python_callable``."""

    custom_operator_name = "compensation"

    def __init__(self, *, python_callable: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.python_callable = python_callable

    def execute(self, context: Mapping[str, Any]) -> Any:
        return call_with_context(self.python_callable, (), {}, context)


class XComArg(DependencyMixin, templating.Resolvable):
    """A reference to a task's XCom, resolved when a task that takes it runs.

    ``@task`` calls return one; ``op.output`` gives one for any operator. Passing it as an
    argument of another task wires that task downstream of ``operator``. ``arg["k"]`` refers to
    key ``"k"`` (see ``multiple_outputs``). It supports ``>>``/``<<`` like its task.
    """

    def __init__(self, operator: BaseOperator, key: str = "return_value") -> None:
        self.operator = operator
        self.key = key

    def _dep_roots(self) -> list[TaskNode]:
        return [self.operator]

    def _dep_leaves(self) -> list[TaskNode]:
        return [self.operator]

    def __getitem__(self, key: str) -> XComArg:
        return XComArg(self.operator, key)

    def __iter__(self) -> Any:
        raise TypeError(
            "an XComArg is not iterable: its value exists only when the task runs. Index it "
            "by key (result['key']) or pass it whole to another task")

    def resolve(self, context: Mapping[str, Any]) -> Any:
        """The XCom's value, pulled through ``context["ti"]``."""
        return context["ti"].xcom_pull(task_ids=self.operator.task_id, key=self.key)

    def as_setup(self) -> XComArg:
        self.operator.as_setup()
        return self

    def as_teardown(self, setups: Any = None, *, on_failure_fail_dagrun: bool = False) -> XComArg:
        self.operator.as_teardown(setups, on_failure_fail_dagrun=on_failure_fail_dagrun)
        return self

    def expand(self, **kwargs: Any) -> Any:
        raise TypeError("expand() is called on a task function or a partial operator, not on "
                        "a task's output: write my_task.expand(x=upstream()) or "
                        "MyOperator.partial(...).expand(x=upstream())")

    def __repr__(self) -> str:
        return f"XComArg({self.operator.task_id!r}, key={self.key!r})"


def _find_xcomargs(value: Any) -> list[XComArg]:
    if isinstance(value, XComArg):
        return [value]
    if isinstance(value, list | tuple | set | frozenset):
        return [a for item in value for a in _find_xcomargs(item)]
    if isinstance(value, Mapping):
        return [a for item in value.values() for a in _find_xcomargs(item)]
    return []


class _PartialOperator:
    """``SomeOperator.partial(**shared)``: waits for ``.expand(**mapped)``."""

    def __init__(self, operator_class: type[BaseOperator], kwargs: Mapping[str, Any]) -> None:
        self.operator_class = operator_class
        self.kwargs = dict(kwargs)

    def expand(self, **mapped: Any) -> BaseOperator:
        """Add the mapped task: one task instance per element of the mapped arguments."""
        from scheduler.core.mapping import check_mapped_values

        loc = user_location()
        check_mapped_values(mapped, fileloc=loc[0], lineno=loc[1])
        clash = sorted(set(mapped) & set(self.kwargs))
        if clash:
            raise DagDefinitionError(
                f"{', '.join(clash)} given to both partial() and expand()",
                fileloc=loc[0], lineno=loc[1], hint="give each argument to only one of them")
        # Until a task instance gets its element, a mapped argument holds its first literal
        # element (or None), so the operator's own checks see a value of the right shape.
        placeholders: dict[str, Any] = {
            name: (value[0] if isinstance(value, list | tuple) and value else None)
            for name, value in mapped.items()
        }
        operator = self.operator_class(**self.kwargs, **placeholders)
        operator._set_expand_input(mapped, "attrs")
        return operator

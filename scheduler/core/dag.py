"""DAGs, task groups, params and the wiring between tasks.

This is the graph half of the authoring API. Operators (``scheduler.operators``) extend
:class:`TaskNode`; this module never imports them, so it stays pure: no I/O, no user code.

Errors raised here are :class:`~scheduler.errors.DagDefinitionError` (or its subclass
:class:`~scheduler.errors.CycleError`) carrying the user's file and line and a ``hint``. The
"user's line" is found by walking the call stack to the first frame outside the ``scheduler``
package (see :func:`user_location`).

Parsers wrap the import of a DAG file in :func:`collect_dags` (or :func:`collect_created_tasks`)
to learn which DAGs the file created and to reject tasks that never joined a DAG.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import networkx as nx
from croniter import croniter

from scheduler.core.trigger_rules import TriggerRule
from scheduler.errors import (
    CycleError,
    DagDefinitionError,
    NotFound,
    ParamValidationError,
    TimetableError,
)

SCHEDULE_PRESETS: tuple[str, ...] = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly")
_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_GROUP_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_MAX_KEY_LEN = 250
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_edge_seq = itertools.count()

Location = tuple[str | None, int | None]


# --- where the user's code is --------------------------------------------------------------


@lru_cache(maxsize=4096)
def _is_internal(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    return not filename.startswith("<") and os.path.abspath(filename).startswith(_PACKAGE_DIR)


def user_location() -> Location:
    """``(file, line)`` of the innermost stack frame outside the ``scheduler`` package.

    That is the line of the user's DAG file that is creating or wiring something. ``(None,
    None)`` if every frame is internal. Files are made absolute unless they are pseudo-files
    such as ``<string>``.
    """
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_internal(filename):
            path = filename if filename.startswith("<") else os.path.abspath(filename)
            return path, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None, None


def check_key(kind: str, key: object, loc: Location, *, group: bool = False) -> str:
    """Return ``key`` if it is a valid task/DAG/group id, else raise DagDefinitionError."""
    pattern = _GROUP_KEY_RE if group else _KEY_RE
    allowed = "letters, digits, '_' and '-'" + ("" if group else ", '.'")
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_LEN or not pattern.match(key):
        raise DagDefinitionError(
            f"invalid {kind} {key!r}", fileloc=loc[0], lineno=loc[1],
            hint=f"use a non-empty string of at most {_MAX_KEY_LEN} {allowed}",
        )
    return key


# --- what an import created (for the parser) ---------------------------------------------


class CreatedObjects:
    """DAGs and tasks created while a :func:`collect_created_tasks` block was active."""

    def __init__(self) -> None:
        self.dags: list[DAG] = []
        self.tasks: list[TaskNode] = []

    def find_orphan_tasks(self) -> list[TaskNode]:
        """Tasks created in the block that are (still) not in any DAG, in creation order."""
        return [t for t in self.tasks if t.dag is None]

    def check_orphans(self) -> None:
        """Raise DagDefinitionError for the first task that is not in any DAG, if any."""
        orphans = self.find_orphan_tasks()
        if not orphans:
            return
        first = orphans[0]
        more = ""
        if len(orphans) > 1:
            more = " (and " + ", ".join(repr(t.task_id) for t in orphans[1:]) + ")"
        raise DagDefinitionError(
            f"task {first.task_id!r} is not in any DAG{more}",
            fileloc=first.fileloc, lineno=first.lineno,
            hint="create it inside a `with DAG(...):` block or a @dag function, pass dag=..., "
            "or wire it to a task that is in a DAG",
        )


_collectors: list[CreatedObjects] = []


@contextmanager
def collect_created_tasks() -> Iterator[CreatedObjects]:
    """Record every DAG and task created inside the block (nesting allowed)."""
    created = CreatedObjects()
    _collectors.append(created)
    try:
        yield created
    finally:
        _collectors.remove(created)


@contextmanager
def collect_dags(*, check_orphans: bool = True) -> Iterator[list[DAG]]:
    """Yield a list that fills with the DAGs created inside the block.

    When the block ends without an exception and ``check_orphans`` is true, a task created in
    the block that never joined a DAG raises DagDefinitionError ("task 'x' is not in any DAG")
    with the file and line where the task was created.
    """
    with collect_created_tasks() as created:
        yield created.dags
        if check_orphans:
            created.check_orphans()


def find_orphan_tasks(created: CreatedObjects) -> list[TaskNode]:
    """Tasks recorded in ``created`` that are not in any DAG."""
    return created.find_orphan_tasks()


def register_created_task(task: TaskNode) -> None:
    """Called once per task when its construction is complete (by the operator machinery)."""
    for c in _collectors:
        c.tasks.append(task)


# --- the context stack ----------------------------------------------------------------------

_dag_stack: list[DAG] = []
_group_stack: list[TaskGroup] = []


def current_dag() -> DAG | None:
    """The DAG of the innermost active ``with DAG(...)`` block, or None."""
    return _dag_stack[-1] if _dag_stack else None


def current_task_group(dag: DAG | None) -> TaskGroup | None:
    """The innermost active TaskGroup of ``dag`` (its root group if none), or None."""
    if dag is None:
        return None
    for group in reversed(_group_stack):
        if group.dag is dag:
            return group
    return dag.task_group


def resolve_dag_and_group(
    dag: DAG | None, task_group: TaskGroup | None
) -> tuple[DAG | None, TaskGroup | None]:
    """The DAG and group a new task belongs to, from explicit arguments or the context."""
    if task_group is not None:
        if dag is not None and dag is not task_group.dag:
            raise DagDefinitionError(
                f"task_group {task_group.group_id!r} belongs to DAG {task_group.dag.dag_id!r}, "
                f"not {dag.dag_id!r}", fileloc=user_location()[0], lineno=user_location()[1],
                hint="pass a task_group of the same DAG, or leave dag= out",
            )
        return task_group.dag, task_group
    if dag is None:
        dag = current_dag()
    return dag, current_task_group(dag)


# --- wiring -----------------------------------------------------------------------------------


class DependencyMixin:
    """Anything that can stand on either side of ``>>`` and ``<<``.

    Subclasses say which tasks receive incoming edges (``_dep_roots``) and which tasks send
    outgoing ones (``_dep_leaves``): a task is both, a TaskGroup its roots and leaves.
    """

    def _dep_roots(self) -> list[TaskNode]:
        raise NotImplementedError

    def _dep_leaves(self) -> list[TaskNode]:
        raise NotImplementedError

    def set_downstream(self, other: Any) -> None:
        """Make ``other`` (a task, group, XComArg or list of them) run after this."""
        loc = user_location()
        for node in _nodes(other, loc):
            for up in self._dep_leaves():
                for down in node._dep_roots():
                    _wire(up, down, loc)

    def set_upstream(self, other: Any) -> None:
        """Make ``other`` (a task, group, XComArg or list of them) run before this."""
        loc = user_location()
        for node in _nodes(other, loc):
            for up in node._dep_leaves():
                for down in self._dep_roots():
                    _wire(up, down, loc)

    def __rshift__(self, other: Any) -> Any:
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Any) -> Any:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Any) -> Any:  # [a, b] >> self
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Any) -> Any:  # [a, b] << self
        self.set_downstream(other)
        return self


def _nodes(obj: Any, loc: Location) -> list[DependencyMixin]:
    if isinstance(obj, DependencyMixin):
        return [obj]
    if isinstance(obj, list | tuple | set | frozenset):
        return [n for item in obj for n in _nodes(item, loc)]
    raise DagDefinitionError(
        f"cannot set a dependency on {obj!r} (a {type(obj).__name__})",
        fileloc=loc[0], lineno=loc[1],
        hint="put tasks, TaskGroups, results of @task calls, or lists of these around >> and <<",
    )


def _wire(up: TaskNode, down: TaskNode, loc: Location) -> None:
    if up is down:
        raise DagDefinitionError(
            f"task {up.task_id!r} cannot depend on itself", fileloc=loc[0], lineno=loc[1],
            hint="remove the dependency that wires the task to itself",
        )
    if up.dag is not None and down.dag is not None and up.dag is not down.dag:
        raise DagDefinitionError(
            f"tasks {up.task_id!r} (DAG {up.dag.dag_id!r}) and {down.task_id!r} "
            f"(DAG {down.dag.dag_id!r}) are in different DAGs", fileloc=loc[0], lineno=loc[1],
            hint="dependencies join tasks of one DAG; to wait on another DAG use a sensor",
        )
    if up.dag is None and down.dag is not None:
        down.dag.add_task(up)
    elif down.dag is None and up.dag is not None:
        up.dag.add_task(down)
    up.downstream_task_ids.add(down.task_id)
    down.upstream_task_ids.add(up.task_id)
    down._upstream_origin.setdefault(up.task_id, (next(_edge_seq), loc[0], loc[1]))


def chain(*elements: Any) -> None:
    """Wire ``elements`` one after the other, as Airflow's ``chain``.

    Each element is a task, TaskGroup, XComArg, or a list of them. Two adjacent lists must have
    the same length and are wired pairwise; a list next to a single element fans out/in.
    """
    loc = user_location()
    for up, down in itertools.pairwise(elements):
        up_is_list, down_is_list = isinstance(up, list | tuple), isinstance(down, list | tuple)
        if up_is_list and down_is_list:
            if len(up) != len(down):
                raise DagDefinitionError(
                    f"chain() got adjacent lists of different lengths ({len(up)} and "
                    f"{len(down)})", fileloc=loc[0], lineno=loc[1],
                    hint="give adjacent lists the same length, or use cross_downstream()",
                )
            for u, d in zip(up, down, strict=True):
                _nodes(u, loc)[0].set_downstream(d)
        elif up_is_list:
            for u in up:
                _nodes(u, loc)[0].set_downstream(down)
        else:
            _nodes(up, loc)[0].set_downstream(down)


def cross_downstream(from_tasks: Iterable[Any], to_tasks: Iterable[Any]) -> None:
    """Make every task of ``to_tasks`` run after every task of ``from_tasks``."""
    targets = list(to_tasks)
    for t in from_tasks:
        t.set_downstream(targets)


class TaskNode(DependencyMixin):
    """The graph side of a task: id, DAG and group membership, dependencies, origin.

    ``upstream_task_ids``/``downstream_task_ids`` hold ids of direct neighbours. ``fileloc`` and
    ``lineno`` are where the user created the task.
    """

    task_id: str
    label: str
    task_group: TaskGroup | None
    fileloc: str | None
    lineno: int | None
    _dag: DAG | None = None

    def _init_node(
        self, task_id: str, dag: DAG | None, task_group: TaskGroup | None, loc: Location
    ) -> None:
        self.fileloc, self.lineno = loc
        self.label = check_key("task_id", task_id, loc)
        self.task_group = task_group
        self.task_id = task_group.child_id(task_id) if task_group is not None else task_id
        self._dag = None
        self._pending_dag = dag
        self.upstream_task_ids: set[str] = set()
        self.downstream_task_ids: set[str] = set()
        # upstream id -> (creation sequence, file, line) of the `>>` that added the edge
        self._upstream_origin: dict[str, tuple[int, str | None, int | None]] = {}

    def _finish_node(self) -> None:
        """Join the DAG chosen at creation; called once the whole object is constructed."""
        dag, self._pending_dag = self._pending_dag, None
        if dag is not None:
            dag.add_task(self)
        register_created_task(self)

    def _on_attached(self) -> None:
        """Hook: called when the task joins its DAG."""

    @property
    def dag(self) -> DAG | None:
        """The DAG this task is in, or None. Setting it adds the task to that DAG."""
        return self._dag

    @dag.setter
    def dag(self, value: DAG) -> None:
        if value is not self._dag:
            value.add_task(self)

    def has_dag(self) -> bool:
        return self._dag is not None

    def _dep_roots(self) -> list[TaskNode]:
        return [self]

    def _dep_leaves(self) -> list[TaskNode]:
        return [self]

    @property
    def upstream_list(self) -> list[TaskNode]:
        """Direct upstream tasks (objects), sorted by id; empty outside a DAG."""
        return [self._dag.task_dict[t] for t in sorted(self.upstream_task_ids)] if self._dag else []

    @property
    def downstream_list(self) -> list[TaskNode]:
        """Direct downstream tasks (objects), sorted by id; empty outside a DAG."""
        d = self._dag
        return [d.task_dict[t] for t in sorted(self.downstream_task_ids)] if d else []

    def __repr__(self) -> str:
        return f"<Task({type(self).__name__}): {self.task_id}>"


# --- task groups ------------------------------------------------------------------------------


class TaskGroup(DependencyMixin):
    """A named group of tasks inside a DAG; task ids inside it are ``group.task``.

    Use it as a context manager (nestable). ``group >> x`` wires the group's leaves to ``x``;
    ``x >> group`` wires ``x`` to the group's roots. ``default_args`` apply to tasks created
    inside, over the DAG's (an inner group's over an outer one's).
    """

    def __init__(
        self,
        group_id: str,
        prefix_group_id: bool = True,
        tooltip: str = "",
        default_args: Mapping[str, Any] | None = None,
        dag: DAG | None = None,
        parent_group: TaskGroup | None = None,
    ) -> None:
        loc = user_location()
        self.fileloc, self.lineno = loc
        if parent_group is None:
            dag = dag or current_dag()
            if dag is None:
                raise DagDefinitionError(
                    f"TaskGroup {group_id!r} is not in any DAG", fileloc=loc[0], lineno=loc[1],
                    hint="create it inside a `with DAG(...):` block or pass dag=...",
                )
            parent_group = current_task_group(dag)
        assert parent_group is not None
        self.dag: DAG = parent_group.dag
        self._group_id: str | None = check_key("group_id", group_id, loc, group=True)
        self.prefix_group_id = prefix_group_id
        self.tooltip = tooltip
        self.default_args: dict[str, Any] = dict(default_args or {})
        self.parent_group: TaskGroup | None = parent_group
        self.children: dict[str, TaskNode | TaskGroup] = {}
        self.dag._add_task_group(self, loc)
        parent_group.children[self.group_id] = self  # type: ignore[index]

    @classmethod
    def _root(cls, dag: DAG) -> TaskGroup:
        root = cls.__new__(cls)
        root.fileloc, root.lineno = dag.fileloc, dag.lineno
        root.dag, root._group_id, root.prefix_group_id = dag, None, True
        root.tooltip, root.default_args, root.parent_group, root.children = "", {}, None, {}
        return root

    @property
    def group_id(self) -> str | None:
        """The full id (prefixed by enclosing groups); None for a DAG's root group."""
        parent = self.parent_group
        if self._group_id and parent is not None and parent.prefix_group_id and parent._group_id:
            return parent.child_id(self._group_id)
        return self._group_id

    @property
    def is_root(self) -> bool:
        return self._group_id is None

    def child_id(self, label: str) -> str:
        """The full id of a child called ``label``."""
        if self.prefix_group_id and self.group_id:
            return f"{self.group_id}.{label}"
        return label

    def merged_default_args(self) -> dict[str, Any]:
        """The DAG's default_args overlaid by each enclosing group's, outermost first."""
        chain_: list[TaskGroup] = []
        group: TaskGroup | None = self
        while group is not None:
            chain_.append(group)
            group = group.parent_group
        merged = dict(self.dag.default_args)
        for g in reversed(chain_):
            merged.update(g.default_args)
        return merged

    def iter_tasks(self) -> Iterator[TaskNode]:
        """Every task in the group and its subgroups, in insertion order."""
        for child in self.children.values():
            if isinstance(child, TaskGroup):
                yield from child.iter_tasks()
            else:
                yield child

    def _dep_roots(self) -> list[TaskNode]:
        tasks = list(self.iter_tasks())
        ids = {t.task_id for t in tasks}
        return [t for t in tasks if not (t.upstream_task_ids & ids)]

    def _dep_leaves(self) -> list[TaskNode]:
        tasks = list(self.iter_tasks())
        ids = {t.task_id for t in tasks}
        return [t for t in tasks if not (t.downstream_task_ids & ids)]

    roots = property(_dep_roots, doc="Tasks of the group with no upstream inside it.")
    leaves = property(_dep_leaves, doc="Tasks of the group with no downstream inside it.")

    def __enter__(self) -> TaskGroup:
        _group_stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _remove_last(_group_stack, self)

    def __repr__(self) -> str:
        return f"<TaskGroup: {self.group_id}>"


def _remove_last(stack: list[Any], item: Any) -> None:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is item:
            del stack[i]
            return


# --- params ----------------------------------------------------------------------------------

_JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
_TYPE_ALIASES: dict[Any, str] = {
    "str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array",
    "dict": "object", "none": "null", str: "string", int: "integer", float: "number",
    bool: "boolean", list: "array", tuple: "array", dict: "object", type(None): "null",
}
_SPEC_KEYS = frozenset({"default", "type", "description", "enum", "minimum", "maximum"})


def _one_type(t: Any) -> str:
    name = _TYPE_ALIASES.get(t.lower() if isinstance(t, str) else t, t)
    if name not in _JSON_TYPES:
        loc = user_location()
        raise DagDefinitionError(
            f"unknown Param type {t!r}", fileloc=loc[0], lineno=loc[1],
            hint="use one of " + ", ".join(_JSON_TYPES) + " (or a list of them)",
        )
    return name


def infer_param_type(value: Any) -> str | None:
    """The JSON-schema type name of a plain value; None for None or an unknown kind."""
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                       (list | tuple, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return None


def _matches(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list | tuple)
    return isinstance(value, dict)


class Param:
    """A DAG parameter: a default a run's conf may override, with a type to check it against.

    ``type`` is a JSON-schema type name (``string integer number boolean array object null``),
    a Python type (``int`` ...), or a list of them; None accepts anything.
    """

    def __init__(
        self,
        default: Any = None,
        type: Any = None,  # noqa: A002 - Airflow's name
        description: str | None = None,
        enum: Iterable[Any] | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> None:
        self.default = default
        if type is None or isinstance(type, str) or not isinstance(type, list | tuple):
            self.type: str | list[str] | None = None if type is None else _one_type(type)
        else:
            self.type = [_one_type(t) for t in type]
        self.description = description
        self.enum = list(enum) if enum is not None else None
        self.minimum = minimum
        self.maximum = maximum

    def _types(self) -> list[str]:
        return [] if self.type is None else [self.type] if isinstance(self.type, str) else self.type

    def validate(self, value: Any, name: str) -> Any:
        """Return ``value`` if it satisfies this param, else raise ParamValidationError.

        None is accepted only when the type allows it (no type, or ``"null"`` among them).
        """
        types = self._types()
        fix = f"; set {name!r} in the run's conf (--conf JSON) to a valid value"
        if value is None and types and "null" not in types:
            raise ParamValidationError(
                f"param {name!r} is required: it has no default and the conf does not set it{fix}")
        if value is None:
            return value
        if types and not any(_matches(value, t) for t in types):
            want = " or ".join(types)
            raise ParamValidationError(
                f"param {name!r} must be of type {want}, got {value!r} "
                f"({type(value).__name__}){fix}")
        if self.enum is not None and value not in self.enum:
            raise ParamValidationError(
                f"param {name!r} must be one of {self.enum!r}, got {value!r}{fix}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise ParamValidationError(
                    f"param {name!r} must be >= {self.minimum}, got {value!r}{fix}")
            if self.maximum is not None and value > self.maximum:
                raise ParamValidationError(
                    f"param {name!r} must be <= {self.maximum}, got {value!r}{fix}")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The serialized form: default, type, description, and enum/minimum/maximum if set."""
        d: dict[str, Any] = {"default": self.default, "type": self.type,
                             "description": self.description}
        for key in ("enum", "minimum", "maximum"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Param:
        return cls(**{k: v for k, v in d.items() if k in _SPEC_KEYS})

    def __repr__(self) -> str:
        return f"Param({self.default!r}, type={self.type!r})"


def _as_param(value: Any) -> Param:
    if isinstance(value, Param):
        return value
    if isinstance(value, Mapping) and "default" in value and set(value) <= _SPEC_KEYS:
        return Param.from_dict(value)
    return Param(value, type=infer_param_type(value))


def resolve_params(dag_params: Mapping[str, Any], conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's params: ``conf`` values over the defaults, each checked against its Param.

    ``dag_params`` values may be :class:`Param` objects (``DAG.params``), serialized specs
    (``{"default": ..., "type": ...}``) or plain values (type inferred). Conf keys the DAG
    does not declare are passed through unchecked. Raises ParamValidationError naming every
    invalid param. Defaults are deep-copied, so a run cannot change another run's.
    """
    rest = dict(conf or {})
    out: dict[str, Any] = {}
    errors: list[str] = []
    for name, spec in dag_params.items():
        param = _as_param(spec)
        value = rest.pop(name) if name in rest else copy.deepcopy(param.default)
        try:
            out[name] = param.validate(value, name)
        except ParamValidationError as exc:
            errors.append(str(exc))
    if errors:
        raise ParamValidationError("; ".join(errors))
    out.update(rest)
    return out


# --- the DAG ---------------------------------------------------------------------------------


def _tz_name(dt: datetime, loc: Location) -> str:
    from zoneinfo import ZoneInfo

    tz = dt.tzinfo
    for attr in ("key", "name", "zone"):  # zoneinfo, pendulum, pytz
        name = getattr(tz, attr, None)
        if isinstance(name, str):
            try:
                ZoneInfo(name)
                return name
            except (ValueError, KeyError, OSError):
                pass
    offset = dt.utcoffset() or timedelta(0)
    hours, rest = divmod(offset, timedelta(hours=1))
    if not rest:
        return "UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"  # POSIX signs are inverted
    raise DagDefinitionError(
        f"start_date has a fixed UTC offset ({offset}) that no time zone name stands for",
        fileloc=loc[0], lineno=loc[1], hint="use a named zone, e.g. ZoneInfo('Asia/Kolkata')",
    )


def _aware(value: Any, field: str, loc: Location) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        example = "datetime(2024, 1, 1)"
        if isinstance(value, date):
            example = f"datetime({value.year}, {value.month}, {value.day})"
        raise DagDefinitionError(
            f"{field} must be a datetime, got {value!r} ({type(value).__name__})",
            fileloc=loc[0], lineno=loc[1],
            hint=f"pass a datetime, e.g. {field}={example} (naive datetimes are UTC)",
        )
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _check_schedule(schedule: Any, loc: Location) -> str | timedelta | None:
    if schedule is None or isinstance(schedule, timedelta):
        if isinstance(schedule, timedelta) and schedule <= timedelta(0):
            raise TimetableError(f"schedule {schedule} is not positive", fileloc=loc[0],
                                 lineno=loc[1], hint="use a positive timedelta")
        return schedule
    if not isinstance(schedule, str):
        raise TimetableError(
            f"schedule must be a cron string, a preset, a timedelta or None, got {schedule!r}",
            fileloc=loc[0], lineno=loc[1], hint='e.g. schedule="0 2 * * *" or "@daily"')
    if schedule.startswith("@"):
        if schedule not in SCHEDULE_PRESETS:
            raise TimetableError(f"unknown schedule preset {schedule!r}", fileloc=loc[0],
                                 lineno=loc[1], hint="use one of " + ", ".join(SCHEDULE_PRESETS))
    elif len(schedule.split()) != 5 or not croniter.is_valid(schedule):
        raise TimetableError(
            f"schedule {schedule!r} is not a valid cron expression", fileloc=loc[0],
            lineno=loc[1], hint='use five fields "minute hour day month weekday", e.g. "0 2 * * *"')
    return schedule


class DAG:
    """A directed acyclic graph of tasks, with its schedule and run-level settings.

    Create it as a context manager (``with DAG("etl", ...) as dag:``) so operators created in
    the block join it, or pass ``dag=`` to operators. Naive ``start_date``/``end_date`` are UTC;
    ``timezone`` is the zone name of ``start_date`` ("UTC" without one). ``fileloc``/``lineno``
    are the user's file and line that created the DAG. Construction raises DagDefinitionError
    (TimetableError for a bad schedule) for invalid arguments; :meth:`validate` checks the graph.
    """

    def __init__(
        self,
        dag_id: str,
        schedule: str | timedelta | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        catchup: bool = False,
        default_args: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        max_active_runs: int = 16,
        max_active_tasks: int = 16,
        dagrun_timeout: timedelta | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        doc_md: str | None = None,
        template_searchpath: str | Iterable[str] | None = None,
        user_defined_macros: Mapping[str, Any] | None = None,
        on_success_callback: Any = None,
        on_failure_callback: Any = None,
        is_paused_upon_creation: bool | None = None,
    ) -> None:
        loc = user_location()
        self.fileloc: str = loc[0] or "<unknown>"
        self.lineno = loc[1]
        self.dag_id = check_key("dag_id", dag_id, loc)
        self.default_args: dict[str, Any] = dict(default_args or {})
        self.start_date = _aware(start_date or self.default_args.get("start_date"),
                                 "start_date", loc)
        self.end_date = _aware(end_date or self.default_args.get("end_date"), "end_date", loc)
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise DagDefinitionError(
                f"end_date {self.end_date.isoformat()} is before start_date "
                f"{self.start_date.isoformat()}", fileloc=loc[0], lineno=loc[1],
                hint="set end_date after start_date, or leave it None")
        self.timezone = _tz_name(self.start_date, loc) if self.start_date else "UTC"
        self.schedule = _check_schedule(schedule, loc)
        if dagrun_timeout is not None and not isinstance(dagrun_timeout, timedelta):
            raise DagDefinitionError(
                f"dagrun_timeout must be a timedelta or None, got {dagrun_timeout!r}",
                fileloc=loc[0], lineno=loc[1], hint="e.g. dagrun_timeout=timedelta(hours=1)")
        for name, value in (("max_active_runs", max_active_runs),
                            ("max_active_tasks", max_active_tasks)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DagDefinitionError(f"{name} must be a positive int, got {value!r}",
                                         fileloc=loc[0], lineno=loc[1], hint=f"e.g. {name}=16")
        self.catchup = bool(catchup)
        self.params: dict[str, Param] = {k: _as_param(v) for k, v in (params or {}).items()}
        self.max_active_runs = max_active_runs
        self.max_active_tasks = max_active_tasks
        self.dagrun_timeout = dagrun_timeout
        self.description = description
        self.tags: list[str] = list(tags or [])
        self.doc_md = doc_md
        if isinstance(template_searchpath, str):
            template_searchpath = [template_searchpath]
        self.template_searchpath: list[str] = list(template_searchpath or [])
        self.user_defined_macros: dict[str, Any] = dict(user_defined_macros or {})
        self.on_success_callback = on_success_callback
        self.on_failure_callback = on_failure_callback
        self.is_paused_upon_creation = is_paused_upon_creation
        self.task_dict: dict[str, TaskNode] = {}
        self.task_group_dict: dict[str, TaskGroup] = {}
        self.task_group = TaskGroup._root(self)
        for c in _collectors:
            c.dags.append(self)

    # graph membership

    def add_task(self, task: TaskNode) -> None:
        """Add ``task`` (idempotent). Raises DagDefinitionError for a duplicate task_id."""
        existing = self.task_dict.get(task.task_id)
        if existing is task:
            return
        loc = (task.fileloc or self.fileloc, task.lineno)
        if existing is not None or task.task_id in self.task_group_dict:
            first = f" (the first is at line {existing.lineno})" if existing else " (a TaskGroup)"
            raise DagDefinitionError(
                f"task_id {task.task_id!r} is used twice in DAG {self.dag_id!r}{first}",
                fileloc=loc[0], lineno=loc[1], hint="give each task of a DAG its own task_id")
        if task._dag is not None:
            raise DagDefinitionError(
                f"task {task.task_id!r} is already in DAG {task._dag.dag_id!r}", fileloc=loc[0],
                lineno=loc[1], hint="a task belongs to one DAG; create another task instead")
        self.task_dict[task.task_id] = task
        task._dag = self
        if task.task_group is None:
            task.task_group = self.task_group
        task.task_group.children[task.task_id] = task
        task._on_attached()

    def _add_task_group(self, group: TaskGroup, loc: Location) -> None:
        gid = group.group_id
        assert gid is not None
        if gid in self.task_group_dict or gid in self.task_dict:
            raise DagDefinitionError(
                f"group_id {gid!r} is used twice in DAG {self.dag_id!r}",
                fileloc=loc[0], lineno=loc[1], hint="give each TaskGroup and task its own id")
        self.task_group_dict[gid] = group

    @property
    def tasks(self) -> list[TaskNode]:
        """The tasks, in the order they joined the DAG."""
        return list(self.task_dict.values())

    @property
    def task_ids(self) -> list[str]:
        return list(self.task_dict)

    @property
    def roots(self) -> list[TaskNode]:
        return [t for t in self.task_dict.values() if not t.upstream_task_ids]

    @property
    def leaves(self) -> list[TaskNode]:
        return [t for t in self.task_dict.values() if not t.downstream_task_ids]

    def has_task(self, task_id: str) -> bool:
        return task_id in self.task_dict

    def get_task(self, task_id: str) -> TaskNode:
        """The task called ``task_id``; raises NotFound if the DAG has none."""
        try:
            return self.task_dict[task_id]
        except KeyError:
            raise NotFound(f"DAG {self.dag_id!r} has no task {task_id!r}") from None

    # validation

    def _graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_nodes_from(self.task_dict)
        for task in self.task_dict.values():
            for up in task.upstream_task_ids:
                if up not in self.task_dict:
                    raise DagDefinitionError(
                        f"task {task.task_id!r} depends on {up!r}, which is not in DAG "
                        f"{self.dag_id!r}", fileloc=task.fileloc or self.fileloc,
                        lineno=task.lineno, hint="add the upstream task to this DAG")
                graph.add_edge(up, task.task_id)
        return graph

    def topological_sort(self) -> list[TaskNode]:
        """Tasks with every task after its upstream tasks; ties keep insertion order.

        Raises CycleError naming the tasks of a cycle and the line of the dependency that
        closed it.
        """
        graph = self._graph()
        order = {tid: i for i, tid in enumerate(self.task_dict)}
        try:
            ids = list(nx.lexicographical_topological_sort(graph, key=order.__getitem__))
        except nx.NetworkXUnfeasible:
            self._raise_cycle(graph)
        return [self.task_dict[t] for t in ids]

    def _raise_cycle(self, graph: nx.DiGraph) -> None:
        edges = nx.find_cycle(graph)
        names = " -> ".join([u for u, _ in edges] + [edges[0][0]])

        def origin(edge: tuple[str, str]) -> tuple[int, str | None, int | None]:
            return self.task_dict[edge[1]]._upstream_origin.get(edge[0], (-1, None, None))

        up, down = max(edges, key=lambda e: origin(e)[0])
        _, fileloc, lineno = origin((up, down))
        raise CycleError(
            f"DAG {self.dag_id!r} has a dependency cycle: {names}",
            fileloc=fileloc or self.fileloc, lineno=lineno or self.lineno,
            hint=f"remove one of these dependencies, e.g. {up} >> {down} (the last one set)")

    def validate(self) -> None:
        """Check the whole DAG; raise DagDefinitionError/CycleError for the first problem.

        Checks: every dependency inside the DAG, no cycle, every param default valid, and no
        compensation task wired into the normal flow.
        """
        self.topological_sort()
        for name, param in self.params.items():
            try:
                if param.default is not None:
                    param.validate(param.default, name)
            except ParamValidationError as exc:
                raise DagDefinitionError(
                    f"default of param {name!r} is invalid: {exc}", fileloc=self.fileloc,
                    lineno=self.lineno, hint="fix the Param's default or its type") from None
        for task in self.task_dict.values():
            if getattr(task, "compensates", None) and (
                task.upstream_task_ids or task.downstream_task_ids
            ):
                raise DagDefinitionError(
                    f"compensation task {task.task_id!r} has dependencies",
                    fileloc=task.fileloc or self.fileloc, lineno=task.lineno,
                    hint="compensations run in reverse dependency order by themselves; "
                    "remove the >> / << around it")

    # context manager

    def __enter__(self) -> DAG:
        _dag_stack.append(self)
        _group_stack.append(self.task_group)
        return self

    def __exit__(self, *exc: object) -> None:
        _remove_last(_group_stack, self.task_group)
        _remove_last(_dag_stack, self)

    def __repr__(self) -> str:
        return f"<DAG: {self.dag_id}>"

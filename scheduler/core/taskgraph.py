"""The task graph under the authoring API: wiring, creation context and where user code is.

:class:`TaskNode` is the graph side of a task (operators in ``scheduler.operators`` extend it);
``>>``/``<<``/:func:`chain` wire tasks; a module-level stack remembers the active ``with DAG`` /
``with TaskGroup`` blocks so tasks created inside join them. Errors carry the user's file and line,
found by walking the call stack to the first frame outside the ``scheduler`` package
(:func:`user_location`).

Parsers wrap the import of a DAG file in :func:`collect_dags` (or :func:`collect_created_tasks`)
to learn which DAGs the file created and to reject tasks that never joined a DAG. ``DAG`` and
``TaskGroup`` live in :mod:`scheduler.core.dag`; this module reaches them only through their
attributes, so it does not import that module at run time.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from scheduler.errors import DagDefinitionError

if TYPE_CHECKING:
    from scheduler.core.dag import DAG, TaskGroup

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


def enter_dag(dag: DAG) -> None:
    """Make ``dag`` (and its root group) the current context."""
    _dag_stack.append(dag)
    _group_stack.append(dag.task_group)


def exit_dag(dag: DAG) -> None:
    _remove_last(_group_stack, dag.task_group)
    _remove_last(_dag_stack, dag)


def enter_group(group: TaskGroup) -> None:
    _group_stack.append(group)


def exit_group(group: TaskGroup) -> None:
    _remove_last(_group_stack, group)


def _remove_last(stack: list[Any], item: Any) -> None:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is item:
            del stack[i]
            return


def register_created_dag(dag: DAG) -> None:
    """Called once per DAG at construction, for :func:`collect_dags`."""
    for c in _collectors:
        c.dags.append(dag)


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

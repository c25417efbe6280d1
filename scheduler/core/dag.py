"""DAGs and task groups: the user's graph of tasks and its run-level settings.

``DAG`` and ``TaskGroup`` are defined here; the wiring they rest on (``TaskNode``, ``>>``,
``chain``, the ``with`` context, orphan detection) is in :mod:`scheduler.core.taskgraph` and
params in :mod:`scheduler.core.params`; both are re-exported here, the authoring API's home.
Construction and :meth:`DAG.validate` raise :class:`~scheduler.errors.DagDefinitionError`
(:class:`~scheduler.errors.CycleError`, :class:`~scheduler.errors.TimetableError`) with the
user's file, line and a ``hint``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn

from scheduler.core.params import Param, _as_param, infer_param_type, resolve_params
from scheduler.core.taskgraph import (
    CreatedObjects,
    DependencyMixin,
    Location,
    TaskNode,
    chain,
    check_key,
    collect_created_tasks,
    collect_dags,
    cross_downstream,
    current_dag,
    current_task_group,
    enter_dag,
    enter_group,
    exit_dag,
    exit_group,
    find_orphan_tasks,
    register_created_dag,
    resolve_dag_and_group,
    user_location,
)
from scheduler.core.timetable import VALID_PRESETS, make_timetable
from scheduler.core.trigger_rules import TriggerRule
from scheduler.errors import (
    CycleError,
    DagDefinitionError,
    NotFound,
    ParamValidationError,
    TimetableError,
)

__all__ = [
    "DAG", "CreatedObjects", "DependencyMixin", "Param", "TaskGroup", "TaskNode", "TriggerRule",
    "chain", "collect_created_tasks", "collect_dags", "cross_downstream", "current_dag",
    "current_task_group", "find_orphan_tasks", "infer_param_type", "resolve_dag_and_group",
    "resolve_params", "user_location",
]

SCHEDULE_PRESETS: tuple[str, ...] = VALID_PRESETS


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
        enter_group(self)
        return self

    def __exit__(self, *exc: object) -> None:
        exit_group(self)

    def __repr__(self) -> str:
        return f"<TaskGroup: {self.group_id}>"



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
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _check_schedule(schedule: Any, timezone: str, loc: Location) -> str | timedelta | None:
    """``schedule`` unchanged if the timetable module accepts it, else TimetableError at ``loc``."""
    if schedule is not None and not isinstance(schedule, str | timedelta):
        raise TimetableError(
            f"schedule must be a cron string, a preset, a timedelta or None, got {schedule!r}",
            fileloc=loc[0], lineno=loc[1], hint='e.g. schedule="0 2 * * *" or "@daily"')
    try:
        make_timetable(schedule, timezone)
    except TimetableError as exc:
        exc.fileloc, exc.lineno = loc
        raise
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
        self.schedule = _check_schedule(schedule, self.timezone, loc)
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
        register_created_dag(self)

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

    def _upstream_of(self) -> dict[str, list[str]]:
        """Each task's upstream task ids; raises DagDefinitionError for one not in the DAG."""
        upstream: dict[str, list[str]] = {}
        for task in self.task_dict.values():
            for up in task.upstream_task_ids:
                if up not in self.task_dict:
                    raise DagDefinitionError(
                        f"task {task.task_id!r} depends on {up!r}, which is not in DAG "
                        f"{self.dag_id!r}", fileloc=task.fileloc or self.fileloc,
                        lineno=task.lineno, hint="add the upstream task to this DAG")
            upstream[task.task_id] = sorted(task.upstream_task_ids)
        return upstream

    def topological_sort(self) -> list[TaskNode]:
        """Tasks with every task after its upstream tasks; ties keep insertion order.

        Raises CycleError naming the tasks of a cycle and the line of the dependency that
        closed it.
        """
        # Kahn's algorithm with a heap of insertion positions, written out rather than taken
        # from networkx: every process that loads a DAG (each worker, each attempt's fork
        # server, each DAG import process, each CLI command) would otherwise import networkx
        # for it, 104 ms and 18 MB of heap (which also makes every fork of a worker dearer).
        upstream = self._upstream_of()
        position = {tid: i for i, tid in enumerate(self.task_dict)}
        ids = list(self.task_dict)
        waiting = {tid: len(ups) for tid, ups in upstream.items()}
        downstream: dict[str, list[str]] = {tid: [] for tid in ids}
        for tid, ups in upstream.items():
            for up in ups:
                downstream[up].append(tid)
        ready = [position[tid] for tid in ids if waiting[tid] == 0]
        heapq.heapify(ready)
        ordered: list[TaskNode] = []
        while ready:
            tid = ids[heapq.heappop(ready)]
            ordered.append(self.task_dict[tid])
            for down in downstream[tid]:
                waiting[down] -= 1
                if waiting[down] == 0:
                    heapq.heappush(ready, position[down])
        if len(ordered) < len(ids):
            self._raise_cycle(upstream)
        return ordered

    def _raise_cycle(self, upstream: Mapping[str, list[str]]) -> NoReturn:
        import networkx as nx  # only when there is a cycle to report

        graph = nx.DiGraph()
        graph.add_edges_from((up, tid) for tid, ups in upstream.items() for up in ups)
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
        enter_dag(self)
        return self

    def __exit__(self, *exc: object) -> None:
        exit_dag(self)

    def __repr__(self) -> str:
        return f"<DAG: {self.dag_id}>"

"""The DAG page's grid (tasks × runs) as plain data, built from rows already loaded.

Pure: no session, no Flask. The view loads the runs and all their task instances in one query
and hands them here; the template only draws what this returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from scheduler.core.states import TaskState

# When a mapped task has several instances in one run, its cell shows the state that most
# needs attention.
_ATTENTION_ORDER: tuple[str, ...] = (
    TaskState.FAILED.value,
    TaskState.UPSTREAM_FAILED.value,
    TaskState.UP_FOR_RETRY.value,
    TaskState.RUNNING.value,
    TaskState.DEFERRED.value,
    TaskState.UP_FOR_RESCHEDULE.value,
    TaskState.QUEUED.value,
    TaskState.SCHEDULED.value,
    TaskState.NONE.value,
    TaskState.SUCCESS.value,
    TaskState.SKIPPED.value,
    TaskState.REMOVED.value,
)
_RANK = {state: i for i, state in enumerate(_ATTENTION_ORDER)}


class _TaskInstanceLike(Protocol):
    task_id: str
    map_index: int
    state: str
    try_number: int


class _RunLike(Protocol):
    id: int


@dataclass(frozen=True)
class GridCell:
    """One task in one run. ``mapped`` is the number of mapped instances (0: not mapped);
    for a mapped task ``state`` is the one needing most attention among them."""

    state: str
    try_number: int
    map_index: int
    mapped: int = 0


@dataclass(frozen=True)
class GridRow:
    """One task: its cells, one per run of the grid's columns (None: no instance there)."""

    task_id: str
    in_latest_version: bool
    cells: tuple[GridCell | None, ...]
    #: For a mapped task: ``(map_index, cells)`` per map index seen in any run, in order.
    map_rows: tuple[tuple[int, tuple[GridCell | None, ...]], ...] = ()


@dataclass(frozen=True)
class DisplayRow:
    """One line of the drawn grid: a task group (cells: the worst state of its tasks), a
    task, or one map index of a mapped task. ``ancestors`` are the keys of the rows whose
    toggle hides this one; ``hidden`` says whether it starts hidden."""

    kind: str  # "group" | "task" | "map"
    key: str
    label: str
    depth: int
    ancestors: tuple[str, ...]
    cells: tuple[GridCell | None, ...]
    task_id: str | None = None
    map_index: int = -1
    count: int = 0
    in_latest_version: bool = True
    hidden: bool = False


def summarize(tis: Sequence[_TaskInstanceLike]) -> GridCell:
    """The cell of one task in one run, from its instances (one, or several when mapped)."""
    if len(tis) == 1 and tis[0].map_index < 0:
        ti = tis[0]
        return GridCell(state=ti.state, try_number=ti.try_number, map_index=ti.map_index)
    worst = min(tis, key=lambda ti: (_RANK.get(ti.state, len(_RANK)), ti.map_index))
    return GridCell(state=worst.state, try_number=max(ti.try_number for ti in tis),
                    map_index=worst.map_index, mapped=len(tis))


def build_grid(task_ids: Sequence[str], runs: Sequence[_RunLike],
               tis_by_run: Mapping[int, Sequence[_TaskInstanceLike]]) -> list[GridRow]:
    """Rows for ``task_ids`` (the latest version's tasks, in topological order), then for
    tasks that only older runs have, by name; one cell per run of ``runs``, in that order."""
    by_key: dict[tuple[int, str], list[_TaskInstanceLike]] = {}
    for run in runs:
        for ti in tis_by_run.get(run.id, ()):
            by_key.setdefault((run.id, ti.task_id), []).append(ti)
    latest = list(dict.fromkeys(task_ids))
    known = set(latest)
    older = sorted({task_id for _, task_id in by_key} - known)
    rows = []
    for task_id in latest + older:
        cells = tuple(
            summarize(by_key[(run.id, task_id)]) if (run.id, task_id) in by_key else None
            for run in runs
        )
        indexes = sorted({ti.map_index for run in runs
                          for ti in by_key.get((run.id, task_id), ()) if ti.map_index >= 0})
        map_rows = tuple(
            (index, tuple(
                next((summarize([ti]) for ti in by_key.get((run.id, task_id), ())
                      if ti.map_index == index), None)
                for run in runs))
            for index in indexes)
        rows.append(GridRow(task_id=task_id, in_latest_version=task_id in known, cells=cells,
                            map_rows=map_rows))
    return rows


def _worst(cells: Sequence[GridCell | None]) -> GridCell | None:
    present = [c for c in cells if c is not None]
    if not present:
        return None
    worst = min(present, key=lambda c: _RANK.get(c.state, len(_RANK)))
    return GridCell(state=worst.state, try_number=max(c.try_number for c in present),
                    map_index=-1, mapped=0)


def display_rows(rows: Sequence[GridRow],
                 task_groups: Mapping[str, Mapping[str, object]] | None) -> list[DisplayRow]:
    """The grid's rows as drawn: tasks of a TaskGroup under a collapsible group row (nested
    groups nested), in the order of their first task; a mapped task as one summary row
    followed by one (initially hidden) row per map index."""
    groups = dict(task_groups or {})
    innermost: dict[str, str] = {}
    for gid, group in groups.items():
        for task_id in group.get("tasks", ()) or ():  # type: ignore[attr-defined]
            if len(gid) > len(innermost.get(str(task_id), "")):
                innermost[str(task_id)] = gid

    def chain(gid: str | None) -> list[str]:
        out: list[str] = []
        while gid and gid in groups and gid not in out:
            out.insert(0, gid)
            parent = groups[gid].get("parent")
            gid = str(parent) if parent else None
        return out

    def group_key(gid: str) -> str:
        return "g:" + gid

    width = len(rows[0].cells) if rows else 0
    members: dict[str, list[GridRow]] = {}
    for row in rows:
        for gid in chain(innermost.get(row.task_id)):
            members.setdefault(gid, []).append(row)
    out: list[DisplayRow] = []
    opened: set[str] = set()
    for row in rows:
        path = chain(innermost.get(row.task_id))
        for depth, gid in enumerate(path):
            if gid in opened:
                continue
            opened.add(gid)
            cells = tuple(_worst([r.cells[i] for r in members[gid]]) for i in range(width))
            label = gid[len(path[depth - 1]) + 1:] if depth and gid.startswith(
                path[depth - 1] + ".") else gid
            out.append(DisplayRow(kind="group", key=group_key(gid), label=label, depth=depth,
                                  ancestors=tuple(group_key(g) for g in path[:depth]),
                                  cells=cells, count=len(members[gid])))
        ancestors = tuple(group_key(g) for g in path)
        label = row.task_id[len(path[-1]) + 1:] if path and row.task_id.startswith(
            path[-1] + ".") else row.task_id
        mapped = len(row.map_rows)
        key = "t:" + row.task_id
        out.append(DisplayRow(kind="task", key=key, label=label, depth=len(path),
                              ancestors=ancestors, cells=row.cells, task_id=row.task_id,
                              count=mapped, in_latest_version=row.in_latest_version))
        for index, cells in row.map_rows:
            out.append(DisplayRow(kind="map", key=f"{key}[{index}]", label=f"[{index}]",
                                  depth=len(path) + 1, ancestors=(*ancestors, key),
                                  cells=cells, task_id=row.task_id, map_index=index,
                                  hidden=True))
    return out

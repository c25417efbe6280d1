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
        rows.append(GridRow(task_id=task_id, in_latest_version=task_id in known, cells=cells))
    return rows

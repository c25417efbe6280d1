"""The context a task executes with (Airflow's names), and the task-instance handle in it.

Built by the worker from store data; reads go through the store lazily, XCom pushes are kept
in memory and written with the attempt's outcome in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.store.models import Connection, DagRun, TaskInstance, Variable, XCom

if TYPE_CHECKING:
    from scheduler.store.commands import StartedAttempt

SessionFactory = Callable[[], AbstractContextManager[Session]]


class RuntimeTaskInstance:
    """The ``ti`` of the context: identity of the attempt, and XCom access."""

    def __init__(
        self,
        *,
        ti_id: int,
        run_pk: int,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int,
        try_number: int,
        max_tries: int,
        sessions: SessionFactory,
        log_path: str = "",
    ) -> None:
        self.id = ti_id
        self.run_pk = run_pk
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_id = task_id
        self.map_index = map_index
        self.try_number = try_number
        self.max_tries = max_tries
        self.log_path = log_path
        self._sessions = sessions
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        """Record an XCom; it is stored when the attempt succeeds, with the task's state."""
        self.pushed[key] = value

    def xcom_pull(
        self,
        task_ids: str | Iterable[str] | None = None,
        key: str = "return_value",
        map_indexes: int | Iterable[int] | None = None,
        default: Any = None,
    ) -> Any:
        """Values pushed by tasks of this run. One task id gives its value (``default`` if it
        pushed none); a list of ids gives a list in that order. A mapped task's value is the
        list of its task instances' values, in map-index order."""
        single = isinstance(task_ids, str)
        ids: list[str] = [task_ids] if isinstance(task_ids, str) else list(
            task_ids or [self.task_id])
        with self._sessions() as session:
            stmt = select(XCom.task_id, XCom.map_index, XCom.value).where(
                XCom.run_pk == self.run_pk, XCom.key == key, XCom.task_id.in_(ids)
            )
            if map_indexes is not None:
                idx = [map_indexes] if isinstance(map_indexes, int) else list(map_indexes)
                stmt = stmt.where(XCom.map_index.in_(idx))
            rows = session.execute(stmt.order_by(XCom.map_index)).all()
        by_task: dict[str, list[Any]] = {}
        mapped: set[str] = set()
        for task_id, map_index, value in rows:
            by_task.setdefault(task_id, []).append(value)
            if map_index >= 0:
                mapped.add(task_id)

        def one(tid: str) -> Any:
            values = by_task.get(tid)
            if not values:
                return default
            if tid in mapped and map_indexes is None:
                return values
            return values[0] if len(values) == 1 else values

        return one(ids[0]) if single else [one(t) for t in ids]

    def read_session(self) -> AbstractContextManager[Session]:
        """A read-only session on the store, for task code that reads other runs (sensors).
        ``session.get_bind().url`` tells the rare task that must write (TriggerDagRunOperator)
        where the store is."""
        return self._sessions()

    def __repr__(self) -> str:
        return f"<TaskInstance {self.dag_id}.{self.task_id} {self.run_id} try {self.try_number}>"


class _VariableValues:
    def __init__(self, sessions: SessionFactory, as_json: bool) -> None:
        self._sessions = sessions
        self._json = as_json

    def get(self, key: str, default: Any = None) -> Any:
        with self._sessions() as session:
            row = session.get(Variable, key)
        if row is None:
            return default
        return json.loads(row.val) if self._json else row.val

    def __getattr__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(f"variable {key!r} does not exist; create it with "
                           f"`headwater variables set {key} VALUE`")
        return value


_MISSING = object()


class VariableAccessor:
    """``var.value.name`` and ``var.json.name`` in templates."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.value = _VariableValues(sessions, as_json=False)
        self.json = _VariableValues(sessions, as_json=True)


class ConnectionAccessor:
    """``conn.name`` in templates: the connection row (host, login, port, extra...)."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def get(self, conn_id: str) -> Connection:
        with self._sessions() as session:
            row = session.get(Connection, conn_id)
        if row is None:
            raise KeyError(f"connection {conn_id!r} does not exist; create it with "
                           f"`headwater connections set {conn_id} ...`")
        return row

    def __getattr__(self, conn_id: str) -> Connection:
        return self.get(conn_id)


@dataclass(frozen=True)
class CurrentTask:
    """What :func:`scheduler.durable.once` needs of the attempt running in this process: its
    idempotency key, its identity, and a factory of *writable* sessions on the store."""

    idempotency_key: str
    ti_id: int
    try_number: int
    write_sessions: SessionFactory


#: Set by the worker in the attempt's own process before user code runs; None elsewhere.
current_task: ContextVar[CurrentTask | None] = ContextVar("headwater_current_task",
                                                          default=None)


def idempotency_key(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Stable for a task instance across its retries (DESIGN.md, Durability)."""
    suffix = f"/{map_index}" if map_index >= 0 else ""
    return f"{dag_id}/{run_id}/{task_id}{suffix}"


def build_context(
    *,
    dag: Any,
    task: Any,
    run: DagRun,
    ti_row: TaskInstance | StartedAttempt,
    ti: RuntimeTaskInstance,
    sessions: SessionFactory,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The template/execute context of one attempt."""
    from scheduler.templating import all_macros

    logical: datetime = run.logical_date
    start = run.data_interval_start or logical
    end = run.data_interval_end or logical
    ds = logical.strftime("%Y-%m-%d")
    return {
        "dag": dag,
        "task": task,
        "ti": ti,
        "task_instance": ti,
        "dag_run": run,
        "run_id": run.run_id,
        "logical_date": logical,
        "execution_date": logical,
        "data_interval_start": start,
        "data_interval_end": end,
        "ds": ds,
        "ds_nodash": ds.replace("-", ""),
        "ts": logical.isoformat(),
        "ts_nodash": logical.strftime("%Y%m%dT%H%M%S"),
        "prev_ds": (logical - timedelta(days=1)).strftime("%Y-%m-%d"),
        "next_ds": (logical + timedelta(days=1)).strftime("%Y-%m-%d"),
        "params": params,
        "conf": run.conf or {},
        "var": VariableAccessor(sessions),
        "conn": ConnectionAccessor(sessions),
        "macros": all_macros(),
        "try_number": ti.try_number,
        "map_index": ti_row.map_index,
        "idempotency_key": idempotency_key(run.dag_id, run.run_id, ti_row.task_id,
                                           ti_row.map_index),
    }



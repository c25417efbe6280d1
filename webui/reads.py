"""Reads the web UI needs beyond ``scheduler.store.queries``.

Kept here (not in the store) while the store is being reworked by others; each function takes
the session explicitly, issues exactly one statement and may move to ``queries`` as is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.store.models import DagModel, DagVersion, TaskInstance, XCom


def latest_version(session: Session, dag: DagModel) -> DagVersion | None:
    """The version the parser saw last for ``dag``; None if it never stored one."""
    if dag.latest_version_id is None:
        return None
    return session.get(DagVersion, dag.latest_version_id)


def task_instances_of_runs(session: Session, run_pks: Sequence[int]
                           ) -> dict[int, list[TaskInstance]]:
    """Every task instance of the runs ``run_pks`` in one query: run pk -> its task instances
    (ordered by task id, then map index). Runs without task instances are absent."""
    if not run_pks:
        return {}
    rows = session.scalars(
        select(TaskInstance).where(TaskInstance.run_pk.in_(list(run_pks)))
        .order_by(TaskInstance.run_pk, TaskInstance.task_id, TaskInstance.map_index))
    out: dict[int, list[TaskInstance]] = defaultdict(list)
    for ti in rows:
        out[ti.run_pk].append(ti)
    return dict(out)


def xcoms_of(session: Session, ti: TaskInstance) -> list[XCom]:
    """The XComs ``ti`` pushed (its latest attempt's), ordered by key."""
    return list(session.scalars(select(XCom).where(XCom.ti_id == ti.id).order_by(XCom.key)))

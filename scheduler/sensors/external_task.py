"""ExternalTaskSensor: wait for a task (or a whole run) of another DAG."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from scheduler.errors import DagDefinitionError
from scheduler.sensors.base import BaseSensorOperator, log


class ExternalTaskSensor(BaseSensorOperator):
    """Waits until, in the run of DAG ``external_dag_id`` with the matching logical date, task
    ``external_task_id`` (or every task of ``external_task_ids``; or, with neither, the run
    itself) is in one of ``allowed_states`` (default ``["success"]``).

    The matching logical date is this run's, minus ``execution_delta``, or what
    ``execution_date_fn(logical_date)`` returns (it may also take ``context``). If any watched
    task (or the run) is in ``failed_states``, the sensor fails at once (skips with
    ``soft_fail``) instead of waiting for its timeout. A run that does not exist yet means
    "not yet". The store is read with a read-only session of the task's own.
    """

    template_fields: ClassVar[Sequence[str]] = ("external_dag_id", "external_task_id",
                                                "external_task_ids")
    ui_color = "#4db7db"

    def __init__(
        self,
        *,
        external_dag_id: str,
        external_task_id: str | None = None,
        external_task_ids: Iterable[str] | None = None,
        allowed_states: Iterable[str] | None = None,
        failed_states: Iterable[str] | None = None,
        execution_delta: timedelta | None = None,
        execution_date_fn: Callable[..., datetime] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if external_task_id is not None and external_task_ids is not None:
            raise DagDefinitionError(
                f"sensor {self.task_id!r} got both external_task_id and external_task_ids",
                fileloc=self.fileloc, lineno=self.lineno, hint="pass only one of them")
        if execution_delta is not None and execution_date_fn is not None:
            raise DagDefinitionError(
                f"sensor {self.task_id!r} got both execution_delta and execution_date_fn",
                fileloc=self.fileloc, lineno=self.lineno, hint="pass only one of them")
        self.external_dag_id = external_dag_id
        self.external_task_id = external_task_id
        self.external_task_ids = list(external_task_ids) if external_task_ids is not None else (
            [external_task_id] if external_task_id is not None else None)
        self.allowed_states = list(allowed_states or ["success"])
        self.failed_states = list(failed_states or [])
        overlap = set(self.allowed_states) & set(self.failed_states)
        if overlap:
            raise DagDefinitionError(
                f"sensor {self.task_id!r} lists {sorted(overlap)} in both allowed_states and "
                "failed_states", fileloc=self.fileloc, lineno=self.lineno,
                hint="a state can only end the wait one way")
        self.execution_delta = execution_delta
        self.execution_date_fn = execution_date_fn

    def external_logical_date(self, context: Mapping[str, Any]) -> datetime:
        """The logical date of the external run this sensor watches."""
        logical: datetime = context["logical_date"]
        if self.execution_delta is not None:
            return logical - self.execution_delta
        if self.execution_date_fn is not None:
            from scheduler.operators.base import call_with_context

            return call_with_context(self.execution_date_fn, [logical], {},
                                     {"context": context})
        return logical

    def watched_states(self, context: Mapping[str, Any]) -> list[str] | None:
        """The states of the watched tasks (or of the run), or None when the run does not
        exist (yet). A watched task missing from the run counts as state ``none``."""
        from sqlalchemy import select

        from scheduler.store.models import DagRun, TaskInstance

        ti = context["ti"]
        when = self.external_logical_date(context)
        with ti.read_session() as session:
            run = session.scalars(select(DagRun).where(
                DagRun.dag_id == self.external_dag_id, DagRun.logical_date == when)
                .order_by(DagRun.id.desc())).first()
            if run is None:
                return None
            if self.external_task_ids is None:
                return [run.state]
            found = dict(session.execute(select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.run_pk == run.id,
                TaskInstance.task_id.in_(self.external_task_ids))).all())
        return [found.get(t, "none") for t in self.external_task_ids]

    def poke(self, context: Mapping[str, Any]) -> bool:
        states = self.watched_states(context)
        what = (f"task(s) {', '.join(self.external_task_ids)} of DAG {self.external_dag_id!r}"
                if self.external_task_ids else f"the run of DAG {self.external_dag_id!r}")
        when = self.external_logical_date(context).isoformat()
        if states is None:
            self.log_wait(f"no run of DAG {self.external_dag_id!r} at {when} yet")
            return False
        failed = [s for s in states if s in self.failed_states]
        if failed:
            self.fail_or_skip(f"{what} at {when} ended {failed[0]}, one of failed_states "
                              f"{self.failed_states}")
        if all(s in self.allowed_states for s in states):
            return True
        self.log_wait(f"{what} at {when}: {', '.join(states)}; waiting for "
                      f"{', '.join(self.allowed_states)}")
        return False

    def log_wait(self, message: str) -> None:
        log.info("sensor %s: %s", self.task_id, message)

"""TriggerDagRunOperator: start a run of another DAG, and optionally wait for its end."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from scheduler.errors import DagDefinitionError, TaskFailed, TaskSkipped
from scheduler.operators.base import BaseOperator

log = logging.getLogger("headwater.task")

#: XCom key under which the operator records the run id it created (Airflow's key).
TRIGGER_RUN_ID_XCOM_KEY = "trigger_run_id"


def _as_datetime(value: Any, task_id: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise TaskFailed(f"logical_date of task {task_id!r} rendered to {value!r}, which is "
                             "not an ISO 8601 date or datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class TriggerDagRunOperator(BaseOperator):
    """Creates a manual run of ``trigger_dag_id`` (its latest version) with ``conf``.

    ``conf`` is checked against the triggered DAG's ``params`` like a trigger from the CLI.
    ``logical_date`` (a datetime or ISO string, templated) defaults to now; ``trigger_run_id``
    (templated) defaults to ``manual__<logical date>``. The run id is pushed as the XCom
    ``trigger_run_id``. A run id that is taken fails the task, or skips it with
    ``skip_when_already_exists``.

    With ``wait_for_completion`` the task then checks the run every ``poke_interval`` seconds
    (holding its worker slot) and succeeds when the run ends in ``allowed_states``, fails when
    it ends in ``failed_states``. A scheduler must be running to drive the triggered run (``dags
    test`` drives only its own run).

    The run it creates is recorded under the task instance's idempotency key, in the same
    transaction. A later attempt of the same task instance (after a timeout, a crash of its
    worker, a failure after the trigger) goes on with that run instead of triggering another;
    only when that run ended in ``failed_states``, is gone, or has another id than the
    rendered ``trigger_run_id`` does a later attempt trigger anew. (Clearing the task keeps
    the record, as it keeps those of ``scheduler.durable.once``.)
    """

    template_fields: ClassVar[Sequence[str]] = ("trigger_dag_id", "trigger_run_id",
                                                "logical_date", "conf")
    ui_color = "#ffefeb"

    def __init__(
        self,
        *,
        trigger_dag_id: str,
        conf: Mapping[str, Any] | None = None,
        logical_date: datetime | str | None = None,
        trigger_run_id: str | None = None,
        wait_for_completion: bool = False,
        poke_interval: float = 5,
        allowed_states: Sequence[str] = ("success",),
        failed_states: Sequence[str] = ("failed",),
        skip_when_already_exists: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if conf is not None and not isinstance(conf, Mapping):
            raise DagDefinitionError(
                f"conf of task {self.task_id!r} must be a dict, got {conf!r}",
                fileloc=self.fileloc, lineno=self.lineno, hint="e.g. conf={'n': 3}")
        if isinstance(poke_interval, bool) or not isinstance(poke_interval, int | float) or (
                poke_interval <= 0):
            raise DagDefinitionError(
                f"poke_interval of task {self.task_id!r} must be seconds > 0, got "
                f"{poke_interval!r}", fileloc=self.fileloc, lineno=self.lineno)
        self.trigger_dag_id = trigger_dag_id
        self.conf = dict(conf or {})
        self.logical_date = logical_date
        self.trigger_run_id = trigger_run_id
        self.wait_for_completion = bool(wait_for_completion)
        self.poke_interval = float(poke_interval)
        self.allowed_states = list(allowed_states)
        self.failed_states = list(failed_states)
        self.skip_when_already_exists = bool(skip_when_already_exists)

    def execute(self, context: Mapping[str, Any]) -> None:
        from scheduler.store.db import make_engine, session_scope

        ti = context["ti"]
        # The task's sessions are read-only; a write needs an engine of its own on the store.
        with ti.read_session() as session:
            url = session.get_bind().url.render_as_string(hide_password=False)
        now = datetime.now(UTC)
        logical = _as_datetime(self.logical_date, self.task_id) or now
        record = f"{context['idempotency_key']}:{TRIGGER_RUN_ID_XCOM_KEY}"
        engine = make_engine(url)
        try:
            with session_scope(engine) as session:
                earlier = self._earlier_run(session, record, self.trigger_run_id)
                if earlier is None:
                    run_id = self.trigger_run_id or f"manual__{logical.isoformat()}"
                    self._create_run(session, run_id, logical, now,
                                     actor=f"task {ti.dag_id}.{ti.task_id}")
                    _remember(session, record, run_id, ti, now)
                else:
                    run_id = earlier
        finally:
            engine.dispose()
        if earlier is None:
            _wake_scheduler()
            log.info("triggered run %s of DAG %s", run_id, self.trigger_dag_id)
        else:
            log.info("run %s of DAG %s was triggered by an earlier attempt of this task; going "
                     "on with it, not triggering another", run_id, self.trigger_dag_id)
        ti.xcom_push(TRIGGER_RUN_ID_XCOM_KEY, run_id)
        if self.wait_for_completion:
            self._wait(ti, run_id)

    def _earlier_run(self, session: Any, record: str, wanted: str | None) -> str | None:
        """The run an earlier attempt of this task instance triggered, if it is one to go on
        with: still there, not ended in ``failed_states``, and with the run id this attempt
        asks for (``wanted``, the rendered ``trigger_run_id``), if it asks for one."""
        from sqlalchemy import select

        from scheduler.store.models import DagRun, IdempotencyRecord

        row = session.get(IdempotencyRecord, record)
        if row is None or not isinstance(row.result, dict):
            return None
        run_id = row.result.get("run_id")
        if wanted is not None and run_id != wanted:
            return None
        state = session.scalar(select(DagRun.state).where(
            DagRun.dag_id == self.trigger_dag_id, DagRun.run_id == run_id))
        if state is None or state in self.failed_states:
            return None
        return str(run_id)

    def _create_run(self, session: Any, run_id: str, logical: datetime, now: datetime,
                    actor: str) -> None:
        from scheduler.core.params import resolve_params
        from scheduler.errors import ParamValidationError
        from scheduler.loop import trigger_run
        from scheduler.store.models import DagModel, DagVersion

        conf = dict(self.conf)
        dag_row = session.get(DagModel, self.trigger_dag_id)
        version = session.get(DagVersion, dag_row.latest_version_id) if (
            dag_row is not None and dag_row.latest_version_id is not None) else None
        if version is not None:
            try:
                conf = resolve_params(version.serialized.get("params") or {}, conf)
            except ParamValidationError as exc:
                raise TaskFailed(f"conf for DAG {self.trigger_dag_id!r} is refused: {exc}")
        try:
            trigger_run(session, dag_id=self.trigger_dag_id, now=now, conf=conf, run_id=run_id,
                        logical_date=logical, run_type="manual", actor=actor)
        except ValueError as exc:  # the run id is taken
            if self.skip_when_already_exists:
                raise TaskSkipped(str(exc)) from None
            raise TaskFailed(f"{exc}, or set skip_when_already_exists=True") from None

    def _wait(self, ti: Any, run_id: str) -> None:
        from sqlalchemy import select

        from scheduler.store.models import DagRun

        while True:
            with ti.read_session() as session:
                state = session.scalar(select(DagRun.state).where(
                    DagRun.dag_id == self.trigger_dag_id, DagRun.run_id == run_id))
            if state in self.allowed_states:
                log.info("run %s of DAG %s ended %s", run_id, self.trigger_dag_id, state)
                return
            if state in self.failed_states:
                raise TaskFailed(f"the triggered run {run_id} of DAG {self.trigger_dag_id!r} "
                                 f"ended {state}")
            if state is None:
                raise TaskFailed(f"the triggered run {run_id} of DAG {self.trigger_dag_id!r} "
                                 "disappeared (was it deleted?)")
            log.info("run %s of DAG %s is %s; checking again in %g s", run_id,
                     self.trigger_dag_id, state, self.poke_interval)
            time.sleep(self.poke_interval)


def _remember(session: Any, record: str, run_id: str, ti: Any, now: datetime) -> None:
    """Record (or replace) the run this task instance triggered, in the transaction that
    created it: both are stored, or neither."""
    from scheduler.store.models import IdempotencyRecord

    row = session.get(IdempotencyRecord, record)
    if row is None:
        row = IdempotencyRecord(key=record)
        session.add(row)
    row.ti_id, row.try_number, row.created_at = ti.id, ti.try_number, now
    row.result = {"run_id": run_id}


def _wake_scheduler() -> None:
    """Tell a running scheduler about the new run now rather than at its next look (best
    effort: the task process has no settings object of its own, so it reads them here)."""
    from scheduler.config import ConfigError, load_settings
    from scheduler.wakeup import notify

    try:
        notify(load_settings().home)
    except (ConfigError, OSError):
        pass

"""The LocalExecutor's worker processes, driven directly (no scheduler loop): what it tells
the loop about the work it holds."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from scheduler.core.states import TaskState
from scheduler.executors.local import LocalExecutor
from scheduler.loop import trigger_run
from scheduler.parsing.processor import parse_dags_folder
from scheduler.store import commands
from scheduler.store.db import session_scope
from scheduler.store.models import TaskInstance
from tests.conftest import wait_for

# Two leaf tasks whose success callbacks hold their workers until a flag file exists: the
# outcome is stored, the worker is still busy.
PAIR = '''
import os, time
from scheduler import DAG
from scheduler.operators.python import PythonOperator

def hold(context):
    flag = os.path.join(os.environ["HEADWATER_HOME"], "release")
    deadline = time.monotonic() + 30
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.02)

with DAG("pair", schedule=None):
    for name in ("a", "b"):
        PythonOperator(task_id=name, python_callable=lambda: None, on_success_callback=hold)
'''


def test_work_whose_outcome_is_stored_no_longer_holds_back_its_run(
        engine, settings, write_dag, home) -> None:
    write_dag("pair.py", PAIR)
    parse_dags_folder(engine, settings)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        run = trigger_run(session, dag_id="pair", now=now)
        session.flush()
        tis = session.scalars(select(TaskInstance).where(TaskInstance.run_pk == run.id)
                              .order_by(TaskInstance.task_id)).all()
        for ti in tis:
            commands.set_task_state(session, ti, TaskState.SCHEDULED, now=now, reason="test",
                                    actor="test")
        workloads = commands.queue_task_instances(
            session, tis, version_id_of={run.id: run.version_id}, timeout_of={}, job_id=None,
            now=now)
    a, b = workloads
    executor = LocalExecutor(settings, parallelism=2)
    executor.start()
    try:
        for w in workloads:
            executor.queue_workload(w)
        # Before either outcome is stored, each task holds back the other's run.
        assert executor.holds_other_of_run("pair", a.run_id, a.ti_id)

        def both_recorded() -> bool:
            executor.wait(0.05)
            return {e.ti_id for e in executor.pending_events() if e.kind == "recorded"} == {
                a.ti_id, b.ti_id}

        wait_for(both_recorded, timeout=60)
        # Both workers are busy (running the callbacks), but the run's work is all stored: the
        # loop must be told the run may have ended, whichever event it looks at.
        assert executor.running() == {a.ti_id, b.ti_id}
        assert not executor.holds_other_of_run("pair", a.run_id, a.ti_id)
        assert not executor.holds_other_of_run("pair", b.run_id, b.ti_id)

        (home / "release").touch()

        def both_done() -> bool:
            executor.wait(0.05)
            return not executor.running()

        wait_for(both_done, timeout=60)
        assert sorted(e.kind for e in executor.drain_events()) == [
            "done", "done", "recorded", "recorded"]
    finally:
        (home / "release").touch()
        executor.stop()
    with session_scope(engine, readonly=True) as session:
        states = session.scalars(select(TaskInstance.state).where(
            TaskInstance.run_pk == run.id)).all()
    assert states == ["success", "success"]

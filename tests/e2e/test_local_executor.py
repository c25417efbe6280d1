"""The LocalExecutor's worker processes, driven directly (no scheduler loop): what it tells
the loop about the work it holds."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from scheduler.core.states import TaskState
from scheduler.executors.local import LocalExecutor
from scheduler.loop import trigger_run
from scheduler.parsing.processor import parse_dags_folder
from scheduler.store import commands
from scheduler.store.db import session_scope
from scheduler.store.models import TaskAttempt, TaskInstance
from tests.conftest import wait_for

# Two leaf tasks whose success callbacks hold their workers until a flag file exists: the
# outcome is stored, the worker is still busy.
PAIR = '''
import os, time
from scheduler import DAG

HOME = {home!r}
from scheduler.operators.python import PythonOperator

def hold(context):
    flag = os.path.join(HOME, "release")
    deadline = time.monotonic() + 30
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.02)

with DAG("pair", schedule=None):
    for name in ("a", "b"):
        PythonOperator(task_id=name, python_callable=lambda: None, on_success_callback=hold)
'''


def _queue_run(engine, dag_id: str, run_id: str | None = None):
    """Trigger a run of ``dag_id`` and queue all its task instances; (run, workloads)."""
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        run = trigger_run(session, dag_id=dag_id, now=now, run_id=run_id)
        session.flush()
        tis = session.scalars(select(TaskInstance).where(TaskInstance.run_pk == run.id)
                              .order_by(TaskInstance.task_id)).all()
        for ti in tis:
            commands.set_task_state(session, ti, TaskState.SCHEDULED, now=now, reason="test",
                                    actor="test")
        workloads = commands.queue_task_instances(
            session, tis, version_id_of={run.id: run.version_id}, timeout_of={}, job_id=None,
            now=now)
    return run, workloads


def _run_all(executor: LocalExecutor, workloads) -> None:
    for w in workloads:
        executor.queue_workload(w)

    def all_done() -> bool:
        executor.wait(0.05)
        return not executor.running()

    wait_for(all_done, timeout=60)


def _attempts(engine, run) -> dict[str, tuple[str, str | None]]:
    """{task_id: (state, error of its last attempt)} of a run."""
    with session_scope(engine, readonly=True) as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.state, TaskAttempt.error)
            .join(TaskAttempt, (TaskAttempt.ti_id == TaskInstance.id)
                  & (TaskAttempt.try_number == TaskInstance.try_number))
            .where(TaskInstance.run_pk == run.id)).all()
    return {task_id: (state, error) for task_id, state, error in rows}


def test_work_whose_outcome_is_stored_no_longer_holds_back_its_run(
        engine, settings, write_dag, home) -> None:
    write_dag("pair.py", PAIR.format(home=str(home)))
    parse_dags_folder(engine, settings)
    run, workloads = _queue_run(engine, "pair")
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


# Each task writes which version of its DAG file ran it; "die" kills its own process.
VERSIONED = """
import os, signal
from scheduler import DAG
from scheduler.operators.python import PythonOperator

VERSION = {version}

def note():
    with open(os.path.join({home!r}, "ran"), "a") as f:
        f.write(f"{{VERSION}}\\n")

def die():
    os.kill(os.getpid(), signal.SIGKILL)

with DAG("versioned", schedule=None):
    PythonOperator(task_id="die", python_callable=die)
    PythonOperator(task_id="note", python_callable=note)
"""


def test_attempts_run_their_runs_version_and_a_killed_one_is_recorded(
        engine, settings, write_dag, home) -> None:
    """The attempts' processes come from each worker's fork server: a new DAG version
    replaces the server's snapshot, a server that dies is replaced, and an attempt killed
    by a signal is failed with the reason."""
    executor = LocalExecutor(settings, parallelism=1)  # one worker: one fork server
    executor.start()
    try:
        write_dag("versioned.py", VERSIONED.format(version=1, home=str(home)))
        parse_dags_folder(engine, settings)
        first, workloads = _queue_run(engine, "versioned", "first")
        _run_all(executor, workloads)
        died = _attempts(engine, first)["die"]
        assert died[0] == "failed"
        assert died[1] == ("the task process was killed by signal 9 before reporting its end")
        assert _attempts(engine, first)["note"] == ("success", None)

        write_dag("versioned.py", VERSIONED.format(version=2, home=str(home)))
        parse_dags_folder(engine, settings)
        second, workloads = _queue_run(engine, "versioned", "second")
        _run_all(executor, [w for w in workloads if w.task_id == "note"])
        assert (home / "ran").read_text().split() == ["1", "2"]

        # Kill the worker's fork server between two attempts: the next one still runs.
        [worker_pid] = executor._pids.values()
        server = _fork_server_of(worker_pid)
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: _state_of(server) == "Z", timeout=10)  # dead, not yet reaped
        third, workloads = _queue_run(engine, "versioned", "third")
        _run_all(executor, [w for w in workloads if w.task_id == "note"])
        assert _attempts(engine, third)["note"] == ("success", None)
        assert (home / "ran").read_text().split() == ["1", "2", "2"]

        # Kill it while it holds an attempt it has not forked yet (stopped, so the worker's
        # request waits in its pipe): the attempt is started again, in a new server, once.
        server = _fork_server_of(worker_pid)
        os.kill(server, signal.SIGSTOP)
        fourth, workloads = _queue_run(engine, "versioned", "fourth")
        [note] = [w for w in workloads if w.task_id == "note"]
        executor.queue_workload(note)
        wait_for(lambda: _attempts(engine, fourth).get("note", ("",))[0] == "running",
                 timeout=30)
        time.sleep(0.2)  # (the request is sent right after the claim)
        os.kill(server, signal.SIGKILL)
        _run_all(executor, [])
        assert _attempts(engine, fourth)["note"] == ("success", None)
        assert (home / "ran").read_text().split() == ["1", "2", "2", "2"]
    finally:
        executor.stop()


def _fork_server_of(worker_pid: int) -> int:
    [server] = [int(p) for p in (Path(f"/proc/{worker_pid}/task/{worker_pid}/children")
                                 .read_text().split())]
    return server


def _state_of(pid: int) -> str:
    """The state letter of a process (R, S, Z...), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]

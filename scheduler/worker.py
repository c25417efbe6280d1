"""Running one task instance: the same code path for every executor.

:func:`supervise` is called in a long-lived worker process with a :class:`Workload`. It forks a
child that runs the attempt (:func:`_run_attempt`), heartbeats for it while it runs, kills it when
it exceeds its ``execution_timeout``, and records a failure if it dies without recording its own
outcome. The child writes its outcome and XComs to the store itself, in one transaction, so a
finished task is never lost even if the scheduler is gone.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from scheduler.config import Settings
from scheduler.context import RuntimeTaskInstance, build_context
from scheduler.core.serialized import SerializedDag
from scheduler.core.states import TaskState
from scheduler.errors import TaskSkipped, XComTooLarge
from scheduler.store import commands
from scheduler.store.commands import Workload
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, DagVersion, TaskInstance

log = logging.getLogger("headwater.worker")
HOSTNAME = socket.gethostname()


def utcnow() -> datetime:
    return datetime.now(UTC)


def log_path_for(settings: Settings, w: Workload) -> Path:
    """Where the log of one attempt goes: one file per attempt, below the logs folder."""
    parts = [f"dag_id={w.dag_id}", f"run_id={w.run_id}", f"task_id={w.task_id}"]
    if w.map_index >= 0:
        parts.append(f"map_index={w.map_index}")
    safe = [p.replace("/", "_").replace("..", "_") for p in parts]
    return Path(settings.base_log_folder).joinpath(*safe, f"attempt={w.try_number}.log")


@dataclass
class LoadedDag:
    dag: Any
    serialized: SerializedDag


class DagCache:
    """DAG objects of the versions this worker has run, built from the stored source.

    A run executes the version it was pinned to, whatever the file on disk says now.
    """

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._cache: dict[int, LoadedDag] = {}

    def get(self, version_id: int, dag_id: str) -> LoadedDag:
        hit = self._cache.get(version_id)
        if hit is not None:
            return hit
        from scheduler.parsing.importer import exec_dag_source

        with session_scope(self._engine, readonly=True) as session:
            version = session.get(DagVersion, version_id)
            if version is None:
                raise LookupError(f"DAG version {version_id} is not in the store")
            fileloc, source, serialized = version.fileloc, version.source, version.serialized
        dags = exec_dag_source(
            fileloc, source,
            extra_paths=[str(self._settings.plugins_folder), str(self._settings.dags_folder)],
        )
        if dag_id not in dags:
            raise LookupError(f"DAG {dag_id!r} is not declared by its stored source {fileloc}")
        loaded = LoadedDag(dags[dag_id], SerializedDag.from_dict(serialized))
        if len(self._cache) > 256:
            self._cache.pop(next(iter(self._cache)))
        self._cache[version_id] = loaded
        return loaded


def _check_xcoms(xcoms: dict[str, Any], limit: int, task_id: str) -> dict[str, Any]:
    checked = {}
    for key, value in xcoms.items():
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"task {task_id!r} returned or pushed XCom {key!r} that is not JSON-serialisable "
                f"({exc}); return plain data (str, int, float, bool, list, dict) or an identifier"
            )
        if len(text.encode()) > limit:
            raise XComTooLarge(
                f"XCom {key!r} of task {task_id!r} is {len(text.encode())} bytes, over the "
                f"{limit}-byte limit ([core] xcom_max_size). Store the data elsewhere (a file, a "
                "table, an object store) and pass its identifier instead"
            )
        checked[key] = json.loads(text)
    return checked


def _setup_task_logging(path: Path) -> None:
    """Send this process's stdout, stderr and logging to the attempt's log file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] %(levelname)s %(name)s - %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _run_callbacks(callbacks: Any, context: dict[str, Any]) -> None:
    if not callbacks:
        return
    for cb in callbacks if isinstance(callbacks, list | tuple) else [callbacks]:
        try:
            cb(context)
        except Exception:  # noqa: BLE001 - a callback must not change the task's outcome
            log.exception("callback %r failed", cb)


def _run_attempt(
    w: Workload, settings: Settings, engine: Engine, loaded: LoadedDag, log_path: Path
) -> TaskState | None:
    """Run one attempt in this (child) process and record its outcome."""
    def sessions() -> AbstractContextManager[Session]:
        return session_scope(engine, readonly=True)

    with session_scope(engine) as session:
        ti_row = commands.start_attempt(
            session, ti_id=w.ti_id, claim=w.claim, hostname=HOSTNAME, pid=os.getpid(),
            log_path=str(log_path), now=utcnow())
        if ti_row is None:
            return None
        run = session.get(DagRun, ti_row.run_pk)
        assert run is not None
        session.expunge_all()

    _setup_task_logging(log_path)
    task_log = logging.getLogger("headwater.task")
    task_log.info("starting %s.%s run %s, try %d on %s (pid %d)", w.dag_id, w.task_id,
                  w.run_id, w.try_number, HOSTNAME, os.getpid())
    dag = loaded.dag
    stask = loaded.serialized.task_dict[w.task_id]
    task = copy.copy(dag.task_dict[w.task_id])
    ti = RuntimeTaskInstance(
        ti_id=ti_row.id, run_pk=run.id, dag_id=w.dag_id, run_id=w.run_id, task_id=w.task_id,
        map_index=w.map_index, try_number=w.try_number, max_tries=ti_row.max_tries,
        sessions=sessions, log_path=str(log_path))
    params = dict(getattr(dag, "params", None) or {})
    params = {k: getattr(v, "value", v) for k, v in params.items()}
    params.update(getattr(task, "params", None) or {})
    params.update(run.conf or {})
    context = build_context(dag=dag, task=task, run=run, ti_row=ti_row, ti=ti,
                            sessions=sessions, params=params)
    outcome, error, xcoms = TaskState.FAILED, None, {}
    try:
        from scheduler.templating import make_jinja_env

        task.render_template_fields(context, make_jinja_env(dag))
        result = task.execute(context)
        pushed = dict(ti.pushed)
        if result is not None and getattr(task, "do_xcom_push", True):
            pushed["return_value"] = result
        xcoms = _check_xcoms(pushed, settings.xcom_max_size, w.task_id)
        outcome = TaskState.SUCCESS
        task_log.info("task succeeded")
    except TaskSkipped as exc:
        outcome, error = TaskState.SKIPPED, str(exc) or "skipped"
        task_log.info("task skipped: %s", error)
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        error = f"{type(exc).__name__}: {exc}"
        task_log.error("task failed: %s\n%s", error, traceback.format_exc())
    with session_scope(engine) as session:
        state = commands.finish_attempt(
            session, ti_id=w.ti_id, try_number=w.try_number, outcome=outcome, task=stask,
            xcoms=xcoms, error=error, now=utcnow())
    if state == TaskState.SUCCESS:
        _run_callbacks(getattr(task, "on_success_callback", None), context)
    elif state == TaskState.UP_FOR_RETRY:
        _run_callbacks(getattr(task, "on_retry_callback", None), context)
    elif state == TaskState.FAILED:
        context["exception"] = error
        _run_callbacks(getattr(task, "on_failure_callback", None), context)
    task_log.info("attempt ended: %s", state.value if state else "discarded (no longer owned)")
    return state


def _record_failure(engine: Engine, w: Workload, task: Any, reason: str) -> None:
    """The attempt could not record its own end (it died, or timed out): record it for it."""
    with session_scope(engine) as session:
        ti = session.get(TaskInstance, w.ti_id)
        if ti is None:
            return
        if ti.state == TaskState.QUEUED.value and ti.claim == w.claim:
            # It died before it even started: start and fail the attempt so it counts.
            commands.start_attempt(session, ti_id=w.ti_id, claim=w.claim, hostname=HOSTNAME,
                                   pid=os.getpid(), log_path="", now=utcnow())
        commands.finish_attempt(
            session, ti_id=w.ti_id, try_number=w.try_number, outcome=TaskState.FAILED,
            task=task, xcoms={}, error=reason, now=utcnow())


def supervise(
    w: Workload,
    *,
    settings: Settings,
    engine: Engine,
    dags: DagCache,
    on_started: Callable[[int], None] | None = None,
) -> None:
    """Run the attempt of ``w`` in a child process and see it through to a recorded end."""
    from scheduler.core.serialized import SerializedTask

    try:
        loaded = dags.get(w.version_id, w.dag_id)
    except BaseException as exc:  # noqa: BLE001
        reason = f"could not load DAG {w.dag_id} (version {w.version_id}): {exc}"
        log.error(reason)
        _record_failure(engine, w, SerializedTask(task_id=w.task_id), reason)
        return
    stask = loaded.serialized.task_dict.get(w.task_id) or SerializedTask(task_id=w.task_id)
    log_path = log_path_for(settings, w)
    read_fd, write_fd = os.pipe()
    # Move every object made so far out of the collector's reach: a collection in the child
    # would otherwise touch the whole inherited heap and copy it page by page (tens of ms).
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # the attempt's own process
        code = 0
        try:
            os.close(read_fd)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            engine.dispose(close=False)
            _run_attempt(w, settings, engine, loaded, log_path)
        except BaseException:  # noqa: BLE001
            code = 1
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_fd)
    if on_started:
        on_started(pid)
    started = time.monotonic()
    timeout = w.execution_timeout
    timed_out = False
    status = 0
    try:
        while True:
            wait_for = settings.heartbeat_interval
            if timeout is not None:
                wait_for = max(0.0, min(wait_for, started + timeout - time.monotonic()))
            ready, _, _ = select.select([read_fd], [], [], wait_for)
            done_pid, status = os.waitpid(pid, os.WNOHANG)
            if ready or done_pid == pid:
                if done_pid != pid:
                    _, status = os.waitpid(pid, 0)
                break
            if timeout is not None and time.monotonic() - started >= timeout:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            with session_scope(engine) as session:
                commands.heartbeat(session, w.ti_id, w.try_number, utcnow())
    finally:
        os.close(read_fd)
    if timed_out:
        _record_failure(engine, w, stask, f"execution_timeout of {timeout:g} s exceeded; the "
                                          "task process was killed")
    elif status != 0:
        how = (f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exited with code {os.WEXITSTATUS(status)}")
        _record_failure(engine, w, stask, f"the task process {how} before recording its end")

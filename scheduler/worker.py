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
import random
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import Table, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from scheduler.config import Settings
from scheduler.context import CurrentTask, RuntimeTaskInstance, build_context, current_task
from scheduler.core.mapping import bind_mapped_arguments
from scheduler.core.serialized import SerializedDag
from scheduler.core.states import TaskState
from scheduler.errors import (
    DeferToSignal,
    RescheduleRequested,
    TaskFailedNoRetry,
    TaskSkipped,
    XComTooLarge,
)
from scheduler.forkserver import ForkServer, ForkServerGone, fork_running
from scheduler.store import commands
from scheduler.store.commands import Workload
from scheduler.store.db import (
    backoff_delays,
    is_disconnect,
    session_scope,
    track_before_fork,
    untrack_all_before_fork,
)
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
    #: Built once per version in the worker, inherited by every attempt's process (building a
    #: sandboxed Jinja environment per attempt cost a couple of milliseconds).
    jinja_env: Any = None


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
        from scheduler.plugins import load_plugins

        load_plugins(self._settings.plugins_folder)

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
        from scheduler.templating import make_jinja_env

        loaded = LoadedDag(dags[dag_id], SerializedDag.from_dict(serialized),
                           make_jinja_env(dags[dag_id]))
        if len(self._cache) > 256:
            self._cache.pop(next(iter(self._cache)))
        self._cache[version_id] = loaded
        return loaded

    def loaded(self, version_id: int) -> LoadedDag:
        """A version :meth:`get` has loaded (in this process or before it was forked)."""
        return self._cache[version_id]

    def versions(self) -> frozenset[int]:
        return frozenset(self._cache)


def preload_authoring_api() -> None:
    """Import what DAG files import (the authoring API with networkx and Jinja) in a process
    that is about to fork workers: each worker then inherits them instead of importing them on
    its first task (15% of the workers' CPU in a 200-task run, py-spy)."""
    import scheduler.context
    import scheduler.core.dag
    import scheduler.decorators
    import scheduler.operators
    import scheduler.sensors
    import scheduler.templating  # noqa: F401


def warm_up(engine: Engine) -> None:
    """Compile, once in the long-lived worker process, the statements every attempt runs, so
    that the first attempts do not compile them while they hold the store's write lock. Runs
    them against no row (foreign keys deferred) and rolls back."""
    from sqlalchemy import text

    now = utcnow()
    with session_scope(engine, readonly=True) as session:
        session.get(DagRun, -1)
    session = Session(engine)
    try:
        if engine.dialect.name == "sqlite":
            session.execute(text("PRAGMA defer_foreign_keys = ON"))
        commands.start_attempt(session, ti_id=-1, claim="", hostname="", pid=0, log_path="",
                               now=now)
        commands.heartbeat(session, -1, 0, now)
        commands.warm_attempt_statements(session, now)
    except Exception:  # noqa: BLE001 - an optimisation only
        log.debug("warm-up failed", exc_info=True)
    finally:
        session.rollback()
        session.close()


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
    if not _task_logging_prepared:
        prepare_task_logging()
    _redirect_output(path)


#: Whether this process's stdout, stderr and logging already write to file descriptors 1 and 2
#: in the task log's format (:func:`prepare_task_logging`).
_task_logging_prepared = False


def prepare_task_logging() -> None:
    """Point ``sys.stdout``, ``sys.stderr`` and the root logger at file descriptors 1 and 2,
    line-buffered, in the task log's format. A fork server does it once: each attempt's
    process then only redirects the two descriptors to its log file (building these objects in
    every attempt cost about a millisecond and a few hundred copied pages)."""
    global _task_logging_prepared
    sys.stdout.flush()
    sys.stderr.flush()
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TASK_LOG_FORMAT)
    root.addHandler(handler)
    if root.level != logging.INFO:  # setLevel clears every logger's cache: not for nothing
        root.setLevel(logging.INFO)
    _task_logging_prepared = True


def _redirect_output(path: Path) -> None:
    """Make file descriptors 1 and 2 write (append) to ``path``, creating its folder."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


_TASK_LOG_FORMAT = logging.Formatter("[%(asctime)s] %(levelname)s %(name)s - %(message)s")


def _run_callbacks(callbacks: Any, context: dict[str, Any]) -> None:
    if not callbacks:
        return
    for cb in callbacks if isinstance(callbacks, list | tuple) else [callbacks]:
        try:
            cb(context)
        except Exception:  # noqa: BLE001 - a callback must not change the task's outcome
            log.exception("callback %r failed", cb)


@dataclass
class AttemptResult:
    """What the attempt's process reports back: how it ended, its XComs, its error."""

    outcome: TaskState
    xcoms: dict[str, Any]
    error: str | None
    reschedule_at: datetime | None = None
    no_retry: bool = False
    #: for DEFERRED: {"signal": name, "timeout": seconds or None, "soft_fail": bool}
    defer: dict[str, Any] | None = None


def _execute(
    w: Workload, settings: Settings, engine: Engine, loaded: LoadedDag, log_path: Path,
    ti_row: commands.StartedAttempt, run: DagRun, conn: Connection,
) -> None:
    """The attempt's own process: run the task, report the result over ``conn``, wait for
    the state the supervisor recorded, then run the matching callbacks."""
    # The inherited pool holds the worker's connections: the first store access of this
    # process replaces them with its own (most attempts never touch the store themselves).
    own_pool = False

    def _engine() -> Engine:
        nonlocal own_pool
        if not own_pool:
            engine.dispose(close=False)
            track_before_fork(engine)  # (a fork server's children start untracked)
            own_pool = True
        return engine

    def sessions() -> AbstractContextManager[Session]:
        return session_scope(_engine(), readonly=True)

    _setup_task_logging(log_path)
    task_log = logging.getLogger("headwater.task")
    task_log.info("starting %s.%s run %s, try %d on %s (pid %d)", w.dag_id, w.task_id,
                  w.run_id, w.try_number, HOSTNAME, os.getpid())
    dag = loaded.dag
    task = copy.copy(dag.task_dict[w.task_id])

    def _on_term(_signum: int, _frame: Any) -> None:
        task_log.error("stopping: the supervisor asked this task to stop")
        try:
            on_kill = getattr(task, "on_kill", None)
            if on_kill:
                on_kill()
        finally:
            os._exit(1)

    signal.signal(signal.SIGTERM, _on_term)
    ti = RuntimeTaskInstance(
        ti_id=ti_row.id, run_pk=run.id, dag_id=w.dag_id, run_id=w.run_id, task_id=w.task_id,
        map_index=w.map_index, try_number=w.try_number, max_tries=ti_row.max_tries,
        sessions=sessions, log_path=str(log_path))
    params = {k: getattr(v, "value", v) for k, v in (getattr(dag, "params", None) or {}).items()}
    params.update(getattr(task, "params", None) or {})
    params.update(run.conf or {})
    context = build_context(dag=dag, task=task, run=run, ti_row=ti_row, ti=ti,
                            sessions=sessions, params=params)
    current_task.set(CurrentTask(context["idempotency_key"], ti_row.id, w.try_number,
                                 lambda: session_scope(_engine())))
    result = AttemptResult(TaskState.FAILED, {}, None)
    try:
        bind_mapped_arguments(task, context, w.map_index)
        task.render_template_fields(context, loaded.jinja_env)
        value = task.execute(context)
        pushed = dict(ti.pushed)
        if value is not None and getattr(task, "do_xcom_push", True):
            pushed["return_value"] = value
        result = AttemptResult(TaskState.SUCCESS,
                               _check_xcoms(pushed, settings.xcom_max_size, w.task_id), None)
    except TaskSkipped as exc:
        result = AttemptResult(TaskState.SKIPPED, {}, str(exc) or "skipped")
        task_log.info("task skipped: %s", result.error)
    except DeferToSignal as exc:
        result = AttemptResult(TaskState.DEFERRED, {}, None, defer={
            "signal": exc.signal_name, "timeout": exc.timeout, "soft_fail": exc.soft_fail})
        task_log.info("deferred: waiting for signal %r (timeout %s)", exc.signal_name,
                      exc.timeout)
    except TaskFailedNoRetry as exc:
        result = AttemptResult(TaskState.FAILED, {}, f"{type(exc).__name__}: {exc}",
                               no_retry=True)
        task_log.error("task failed, not to be retried: %s", result.error)
    except RescheduleRequested as exc:
        result = AttemptResult(TaskState.UP_FOR_RESCHEDULE, {}, None, exc.at)
        task_log.info("not yet: rescheduled to %s", exc.at.isoformat())
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        result = AttemptResult(TaskState.FAILED, {}, f"{type(exc).__name__}: {exc}")
        task_log.error("task failed: %s\n%s", result.error, traceback.format_exc())
    sys.stdout.flush()
    sys.stderr.flush()
    callbacks = any(getattr(task, name, None) for name in (
        "on_success_callback", "on_retry_callback", "on_failure_callback"))
    conn.send_bytes(json.dumps({
        "outcome": result.outcome.value, "xcoms": result.xcoms, "error": result.error,
        "reschedule_at": result.reschedule_at.isoformat() if result.reschedule_at else None,
        "defer": result.defer,
        "no_retry": result.no_retry,
        "waits": callbacks,
    }).encode())
    if not callbacks:
        # Nothing left to do here: exit now, so the supervisor records the outcome without
        # sharing its memory with this process (each page it writes would be copied). The
        # exit itself (the kernel unmapping a 40 MB image) yields to the processes on the
        # critical path: the worker recording the outcome, the scheduler queueing what
        # follows, the worker starting it.
        os.nice(19)
        return
    try:
        recorded = conn.recv_bytes().decode()
    except EOFError:
        recorded = ""
    state = TaskState(recorded) if recorded else None
    if state == TaskState.SUCCESS:
        _run_callbacks(getattr(task, "on_success_callback", None), context)
    elif state == TaskState.UP_FOR_RETRY:
        _run_callbacks(getattr(task, "on_retry_callback", None), context)
    elif state == TaskState.FAILED:
        context["exception"] = result.error
        _run_callbacks(getattr(task, "on_failure_callback", None), context)
    task_log.info(_ended(state))


def _ended(state: TaskState | None) -> str:
    return f"attempt ended: {state.value if state else 'discarded (no longer owned)'}"


def _append_to_task_log(path: Path, message: str) -> None:
    """A line in the attempt's log, written by the supervisor once the attempt's process is
    done with it."""
    record = logging.LogRecord("headwater.task", logging.INFO, __file__, 0, message, None, None)
    try:
        with open(path, "a") as f:
            f.write(_TASK_LOG_FORMAT.format(record) + "\n")
    except OSError as exc:
        log.warning("cannot write to the task log %s: %s", path, exc)


def _record(engine: Engine, w: Workload, task: Any, result: AttemptResult) -> TaskState | None:
    """Store the attempt's end, retrying while the store is unreachable (up to
    ``STORE_RETRY_SECONDS``): a finished task whose outcome is lost would run again."""
    deadline = time.monotonic() + STORE_RETRY_SECONDS
    for delay in backoff_delays():
        try:
            return _record_once(engine, w, task, result)
        except Exception as exc:  # noqa: BLE001
            if not is_disconnect(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("cannot store the end of %s yet (%s); retrying in %.1f s",
                        w.task_id, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


#: How long a worker keeps trying to store an attempt's outcome while the store is down.
STORE_RETRY_SECONDS = 300.0


def _record_once(engine: Engine, w: Workload, task: Any, result: AttemptResult
                 ) -> TaskState | None:
    # Jitter spreads the retries of tasks that failed together (e.g. on a shared outage).
    jitter = random.uniform(0.0, 0.2) if getattr(task, "retry_exponential_backoff", False) else 0.0
    if result.outcome == TaskState.DEFERRED and result.defer is not None:
        from datetime import timedelta

        now, timeout = utcnow(), result.defer.get("timeout")
        with session_scope(engine) as session:
            return commands.defer_attempt(
                session, ti_id=w.ti_id, try_number=w.try_number,
                signal_name=result.defer["signal"], soft_fail=bool(result.defer["soft_fail"]),
                timeout_at=None if timeout is None else now + timedelta(seconds=timeout),
                now=now)
    with session_scope(engine) as session:
        return commands.finish_attempt(
            session, ti_id=w.ti_id, try_number=w.try_number, outcome=result.outcome,
            task=task, xcoms=result.xcoms, error=result.error, now=utcnow(), jitter=jitter,
            reschedule_at=result.reschedule_at, no_retry=result.no_retry)


def _record_failure(engine: Engine, w: Workload, task: Any, reason: str) -> None:
    """The attempt could not report its own end (it died, or timed out): record it for it."""
    with session_scope(engine) as session:
        ti = session.get(TaskInstance, w.ti_id)
        if ti is None:
            return
        if ti.state == TaskState.QUEUED.value and ti.claim == w.claim:
            # It failed before it even started: start and fail the attempt so it counts.
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
    on_recorded: Callable[[TaskState | None], None] | None = None,
    forks: AttemptForkServer | None = None,
) -> TaskState | None:
    """See the attempt of ``w`` through: claim it, run it in a child process, record its end.

    This (long-lived, warmed-up) process does every store write of the attempt; the child
    only runs user code and reports its result over a pipe, so an attempt costs a fork and
    no per-process database warm-up. With ``forks``, the child comes from the worker's fork
    server instead of a fork of this process (see :mod:`scheduler.forkserver`).
    ``on_recorded`` is called as soon as the outcome is
    stored (before the child's callbacks finish), to wake the scheduler. Returns the recorded
    state, or None when the claim was stale (somebody else owns the task instance now).
    """
    from scheduler.core.serialized import SerializedTask

    if w.callback:
        _run_dag_callback(w, settings, engine, dags)
        return None
    try:
        loaded = dags.get(w.version_id, w.dag_id)
    except BaseException as exc:  # noqa: BLE001
        reason = f"could not load DAG {w.dag_id} (version {w.version_id}): {exc}"
        log.error(reason)
        _record_failure(engine, w, SerializedTask(task_id=w.task_id), reason)
        return TaskState.FAILED
    stask = loaded.serialized.task_dict.get(w.task_id)
    if stask is None:
        stask = next((t for t in loaded.serialized.compensations if t.task_id == w.task_id),
                     SerializedTask(task_id=w.task_id))
    log_path = log_path_for(settings, w)
    with session_scope(engine) as session:
        ti_row = commands.start_attempt(
            session, ti_id=w.ti_id, claim=w.claim, hostname=HOSTNAME, pid=os.getpid(),
            log_path=str(log_path), now=utcnow())
        if ti_row is None:
            return None
        # The run's row for the attempt's context (read with Core: no identity map to fill).
        runs = cast(Table, DagRun.__table__)
        run_values = dict(session.connection().execute(
            select(runs).where(runs.c.id == ti_row.run_pk)).one()._mapping)

    if forks is None:
        child = _fork_attempt(partial(_attempt_main, settings, engine, dags),
                              w, ti_row, run_values, log_path)
        return _watch(w, child, engine, stask, settings, on_recorded, log_path)
    for last in (False, True):
        try:
            served = forks.spawn(w, ti_row, run_values, log_path)
            return _watch(w, served, engine, stask, settings, on_recorded, log_path)
        except _NotStarted as exc:
            if last:
                _record_failure(engine, w, stask, f"{exc}, twice")
                if on_recorded:
                    on_recorded(TaskState.FAILED)
                return TaskState.FAILED
            log.warning("%s; starting another server and the attempt again", exc)
    raise AssertionError("unreachable")


class _NotStarted(ChildProcessError):
    """An attempt's process was never forked: its fork server died first."""


def _attempt_main(settings: Settings, engine: Engine, dags: DagCache, conn: Connection,
                  w: Workload, ti_row: commands.StartedAttempt, run_values: dict[str, Any],
                  log_path: Path) -> None:
    """The body of an attempt's process (forked by the worker or by its fork server, both
    holding the DAG already loaded)."""
    loaded = dags.loaded(w.version_id)
    _execute(w, settings, engine, loaded, log_path, ti_row, DagRun(**run_values), conn)


class _AttemptChild(Protocol):
    """An attempt's process as its supervisor sees it: the pipe to it, and its end."""

    conn: Connection

    @property
    def started(self) -> bool: ...

    def stop(self, grace: float) -> int | None: ...

    def wait(self) -> int: ...


class _ForkedChild:
    """An attempt's process forked by this (the supervising) process."""

    def __init__(self, pid: int, conn: Connection) -> None:
        self.pid, self.conn = pid, conn

    @property
    def started(self) -> bool:
        return True  # forked here, before anything else

    def stop(self, grace: float) -> int | None:
        return _stop_child(self.pid, grace)

    def wait(self) -> int:
        return os.waitpid(self.pid, 0)[1]


def _fork_attempt(main: Callable[..., None], *args: Any) -> _ForkedChild:
    parent_conn, child_conn = Pipe(duplex=True)
    # Move every object made so far out of the collector's reach: a collection in the child
    # would otherwise touch the whole inherited heap and copy it page by page (tens of ms).
    gc.freeze()
    def attempt() -> None:  # the attempt's own process
        parent_conn.close()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        main(child_conn, *args)

    pid = fork_running(attempt)
    child_conn.close()
    return _ForkedChild(pid, parent_conn)


def _prepare_fork_server() -> None:
    """What a worker's fork server sets up once for all the attempts it forks."""
    prepare_task_logging()
    untrack_all_before_fork()  # it holds no store connection


class AttemptForkServer:
    """A worker's fork server for its attempts (see :mod:`scheduler.forkserver`), restarted
    whenever an attempt needs a DAG version loaded after the server was forked."""

    def __init__(self, settings: Settings, engine: Engine, dags: DagCache,
                 close_in_server: Sequence[Connection] = ()) -> None:
        self._dags = dags
        self._server = ForkServer(partial(_attempt_main, settings, engine, dags),
                                  close_in_server=close_in_server, prepare=_prepare_fork_server)
        self._versions: frozenset[int] = frozenset()

    def spawn(self, w: Workload, *args: Any) -> _AttemptChild:
        for last in (False, True):
            if w.version_id not in self._versions or not self._server.alive:
                self._server.start()
                self._versions = self._dags.versions()
            try:
                return self._server.spawn(w, *args)
            except ForkServerGone:
                if last:
                    raise
                log.warning("the fork server of worker %d died; starting another", os.getpid())
        raise AssertionError("unreachable")

    @property
    def pid(self) -> int | None:
        """The fork server's process id (None while it is not running)."""
        return self._server.pid

    def stop(self) -> None:
        self._server.stop()


#: How long a task's callbacks may run after its outcome is recorded.
CALLBACK_TIMEOUT = 60.0
#: How long a task process has to stop (its ``on_kill`` runs) before it is killed.
KILL_GRACE = 5.0


def _stop_child(pid: int, grace: float = KILL_GRACE) -> int | None:
    """SIGTERM a child process of ours (an attempt's handler runs the operator's ``on_kill``,
    which stops e.g. a Bash command's process group), then SIGKILL it if it has not exited
    within ``grace``. Returns its exit status if it was reaped here."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return None


def _watch(
    w: Workload, child: _AttemptChild, engine: Engine, stask: Any, settings: Settings,
    on_recorded: Callable[[TaskState | None], None] | None, log_path: Path,
) -> TaskState | None:
    """Heartbeat while the child runs, enforce its timeout, record what it reports (or that it
    died), then wait for it to exit."""
    started = time.monotonic()
    timeout = w.execution_timeout
    recorded: TaskState | None = None
    reported_at: float | None = None
    failure: str | None = None
    status: int | None = None
    conn = child.conn
    try:
        while True:
            reported = reported_at is not None
            wait_for = settings.heartbeat_interval
            if timeout is not None and not reported:
                wait_for = max(0.0, min(wait_for, started + timeout - time.monotonic()))
            if conn.poll(wait_for):
                try:
                    payload = json.loads(conn.recv_bytes())
                except EOFError:
                    break  # the child exited (after reporting, or without)
                at = payload.get("reschedule_at")
                result = AttemptResult(TaskState(payload["outcome"]), payload["xcoms"],
                                       payload["error"], datetime.fromisoformat(at) if at else None)
                result.defer = payload.get("defer")
                result.no_retry = bool(payload.get("no_retry"))
                recorded = _record(engine, w, stask, result)
                reported_at = time.monotonic()
                if on_recorded:
                    on_recorded(recorded)
                if not payload.get("waits", True):  # the child has exited (or is exiting)
                    _append_to_task_log(log_path, _ended(recorded))
                    continue
                try:  # the child runs the callbacks of the recorded state, then exits
                    conn.send_bytes((recorded.value if recorded else "").encode())
                except OSError:
                    pass
                continue
            if timeout is not None and not reported and time.monotonic() - started >= timeout:
                status = child.stop(KILL_GRACE)
                failure = (f"execution_timeout of {timeout:g} s exceeded; the task process "
                           "was stopped")
                break
            if reported_at is not None and time.monotonic() - reported_at > CALLBACK_TIMEOUT:
                log.error("callbacks of %s ran longer than %s s; stopping them", w.task_id,
                          CALLBACK_TIMEOUT)
                status = child.stop(KILL_GRACE)
                break
            if not reported:
                try:
                    with session_scope(engine) as session:
                        commands.heartbeat(session, w.ti_id, w.try_number, utcnow())
                except Exception as exc:  # noqa: BLE001 - the next beat may get through
                    if not is_disconnect(exc):
                        raise
                    log.warning("heartbeat of %s not stored (store unreachable): %s",
                                w.task_id, exc)
    finally:
        conn.close()
    if status is None:
        try:
            status = child.wait()
        except ChildProcessError as exc:  # its fork server died: the exit status is lost
            if reported_at is None and failure is None and not child.started:
                # The server died with the attempt's pipe in hand, before forking it: the
                # attempt never ran, so it may be started again.
                raise _NotStarted(f"the fork server died before starting {w.task_id}") from exc
            log.error("cannot learn how the process of %s ended: %s", w.task_id, exc)
    if reported_at is None:
        if failure is None:
            how = ("ended (how is unknown: its fork server died)" if status is None else
                   f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exited with code {os.WEXITSTATUS(status)}")
            failure = f"the task process {how} before reporting its end"
        _record_failure(engine, w, stask, failure)
        recorded = TaskState.FAILED
        if on_recorded:
            on_recorded(recorded)
    return recorded


def _run_dag_callback(w: Workload, settings: Settings, engine: Engine, dags: DagCache) -> None:
    """Run a DAG's ``on_success_callback`` / ``on_failure_callback`` for a finished run, in a
    child process (it is user code), logging to ``dag_callback.log`` beside the run's task
    logs. A failing callback is logged; it never changes the run."""
    try:
        loaded = dags.get(w.version_id, w.dag_id)
    except BaseException as exc:  # noqa: BLE001
        log.error("could not load DAG %s for its %s callback: %s", w.dag_id, w.callback, exc)
        return
    callbacks = getattr(loaded.dag, f"{w.callback}_callback", None)
    if not callbacks:
        return
    with session_scope(engine, readonly=True) as session:
        run = session.scalars(select(DagRun).where(
            DagRun.dag_id == w.dag_id, DagRun.run_id == w.run_id)).first()
    if run is None:
        return
    safe = [f"dag_id={w.dag_id}", f"run_id={w.run_id}"]
    log_path = Path(settings.base_log_folder).joinpath(
        *[p.replace("/", "_").replace("..", "_") for p in safe], "dag_callback.log")
    gc.freeze()

    def callback() -> None:  # the callback's own process
        engine.dispose(close=False)
        _setup_task_logging(log_path)
        logging.getLogger("headwater.task").info("running the DAG's %s callback", w.callback)
        context = {"dag": loaded.dag, "dag_run": run, "run_id": run.run_id,
                   "logical_date": run.logical_date,
                   "ds": run.logical_date.strftime("%Y-%m-%d"),
                   "reason": "success" if w.callback == "on_success" else "failed",
                   "params": dict(run.conf or {})}
        _run_callbacks(callbacks, context)

    pid = fork_running(callback)
    deadline = time.monotonic() + CALLBACK_TIMEOUT
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    log.error("the %s callback of %s ran longer than %s s; stopping it", w.callback, w.dag_id,
              CALLBACK_TIMEOUT)
    if _stop_child(pid, KILL_GRACE) is None:
        os.waitpid(pid, 0)

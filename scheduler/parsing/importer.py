"""Importing DAG files. The only module (with the worker) that runs user DAG code.

:func:`exec_dag_source` turns a file's source into its DAG objects in the calling process;
:func:`import_files` does it for many files in forked children, each file with its own time
limit, so that a file that hangs, crashes or leaks cannot hurt the caller or the other files.

A child imports several files one after another (the parent hands out the next file when the
child answers the last one): a fork and the first import in a fresh process cost about ten
times the import of a small file itself, so a fork per file made the cold parse mostly fork
overhead.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path
from typing import Any, cast

from scheduler.errors import DagDefinitionError
from scheduler.forkserver import fork_running


@dataclass
class ImportFailure:
    message: str
    lineno: int | None
    traceback: str


@dataclass
class FileResult:
    """What importing one file gave: its DAGs serialized, its source, or the error."""

    fileloc: str
    source: str = ""
    dags: list[dict[str, Any]] = field(default_factory=list)
    error: ImportFailure | None = None
    duration: float = 0.0


def _module_name(fileloc: str) -> str:
    return "headwater_dag_" + hashlib.sha1(fileloc.encode()).hexdigest()[:16]


def _extend_sys_path(paths: Iterable[Path | str]) -> None:
    for p in paths:
        s = str(p)
        if s not in sys.path:
            sys.path.insert(0, s)


def exec_dag_source(
    fileloc: str, source: str, *, extra_paths: Sequence[Path | str] = ()
) -> dict[str, Any]:
    """Execute ``source`` as the module of ``fileloc`` and return its DAGs by dag_id.

    Raises whatever the file raises; :class:`DagDefinitionError` for invalid DAGs, with the file
    and line filled in where the authoring API could not know them.
    """
    from scheduler.core.dag import DAG, collect_dags

    _extend_sys_path([*extra_paths, Path(fileloc).parent])
    name = _module_name(fileloc)
    module = types.ModuleType(name)
    module.__file__ = fileloc
    sys.modules[name] = module
    code = compile(source, fileloc, "exec")
    with collect_dags() as created:
        exec(code, module.__dict__)
    dags: dict[str, Any] = {}
    for candidate in [*created, *module.__dict__.values()]:
        if isinstance(candidate, DAG) and candidate.dag_id not in dags:
            dags[candidate.dag_id] = candidate
    for dag in dags.values():
        try:
            dag.validate()
        except DagDefinitionError as exc:
            if exc.fileloc is None:
                exc.fileloc = fileloc
            raise
    return dags


def _error_from_exception(exc: BaseException, fileloc: str) -> ImportFailure:
    lineno: int | None = None
    if isinstance(exc, DagDefinitionError) and exc.lineno:
        lineno = exc.lineno
    elif isinstance(exc, SyntaxError) and exc.filename == fileloc:
        lineno = exc.lineno
    else:
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename == fileloc:
                lineno = frame.lineno
                break
    message = str(exc) if isinstance(exc, DagDefinitionError) else (
        f"{type(exc).__name__}: {exc}"
    )
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ImportFailure(message=message, lineno=lineno, traceback=tb)


# A child imports at most this many files before it is replaced by a fresh fork: enough that
# the fork and the first (cold) import are paid rarely, few enough to bound what the modules it
# keeps alive cost in memory and what a file's side effects could leak into the next ones.
FILES_PER_CHILD = 100


def _import_one(fileloc: str, extra_paths: Sequence[str]) -> dict[str, Any]:
    """Import one file in this (child) process; the payload sent back to the parent.

    ``reusable`` is false when this process should import nothing more: the file failed, so it
    may have left the interpreter in any state; it left a ``with DAG`` block open, which would
    capture the next file's tasks; or it started a thread, which could still act (or crash the
    process) while the next file is imported and be blamed on it.
    """
    from scheduler.core.dag import current_dag
    from scheduler.core.serialize import serialize_dag

    result: dict[str, Any] = {"dags": [], "error": None, "source": "", "reusable": True}
    try:
        source = Path(fileloc).read_text()
        result["source"] = source
        dags = exec_dag_source(fileloc, source, extra_paths=extra_paths)
        result["dags"] = [serialize_dag(d) for d in dags.values()]
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is reported
        result["dags"] = []
        result["error"] = _error_from_exception(exc, fileloc).__dict__
        result["reusable"] = False
    if current_dag() is not None or threading.active_count() > 1:
        result["reusable"] = False
    # The DAGs are serialized: drop the module so that a long-lived child does not keep them.
    sys.modules.pop(_module_name(fileloc), None)
    return result


def _child_main(conn: Connection, extra_paths: Sequence[str]) -> None:
    """Import the files the parent sends, one at a time, answering each with its payload;
    return when the parent closes the pipe."""
    while True:
        try:
            fileloc = conn.recv_bytes().decode()
        except EOFError:
            return
        conn.send_bytes(json.dumps(_import_one(fileloc, extra_paths), default=str).encode())


@dataclass
class _Child:
    """A forked import process, as the parent sees it."""

    pid: int
    conn: Connection
    fileloc: str = ""  # the file it is importing now (a child in the pool is always busy)
    started: float = 0.0
    imported: int = 0

    def send(self, fileloc: str) -> None:
        self.conn.send_bytes(fileloc.encode())
        self.fileloc, self.started = fileloc, time.monotonic()
        self.imported += 1

    def stop(self, *, kill: bool = False) -> None:
        """End the process (an idle one exits when its pipe closes) and reap it."""
        if kill:
            os.kill(self.pid, signal.SIGKILL)
        self.conn.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _fork_child(extra_paths: Sequence[str], siblings: Iterable[Connection]) -> _Child:
    """Fork an import process. ``siblings`` are the parent's ends of the other children's pipes:
    the new child closes its copies, or a sibling would never see its pipe close."""
    parent_end, child_end = Pipe(duplex=True)
    gc.freeze()  # keep the child from copying our heap when it collects

    def child() -> None:
        parent_end.close()
        for conn in siblings:
            conn.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        _child_main(child_end, extra_paths)

    pid = fork_running(child)
    child_end.close()
    return _Child(pid, parent_end)


def _died(fileloc: str) -> FileResult:
    return FileResult(
        fileloc=fileloc,
        source=_read(fileloc),
        error=ImportFailure(
            "the import process died without a result (it may have called os._exit() or "
            "crashed the interpreter)", None, ""),
    )


def _timed_out(fileloc: str, timeout: float) -> FileResult:
    return FileResult(
        fileloc=fileloc,
        source=_read(fileloc),
        error=ImportFailure(
            f"importing the file took longer than {timeout:g} s and was stopped. "
            "Move slow work (network calls, big queries) out of the module's top "
            "level into tasks, or raise [core] dag_file_processor_timeout",
            None, ""),
    )


def import_files(
    files: Sequence[str],
    *,
    timeout: float,
    extra_paths: Sequence[str] = (),
    concurrency: int = 2,
    plugins_folder: str | None = None,
) -> list[FileResult]:
    """Import the files in forked processes, ``concurrency`` at a time, and return one result
    per file, in ``files`` order.

    Each child imports one file at a time, as the parent hands them out, and answers each
    separately, so every file keeps its own result, error and time limit: a file that takes
    longer than ``timeout`` seconds has its child killed and is reported as an import error, and
    a child that dies without answering is reported against the file it was importing. The
    files not yet handed out go on in other children. A child is replaced after a file that
    failed or left state behind that could affect the next file (see :func:`_import_one`), and
    after :data:`FILES_PER_CHILD` files.
    """
    # Import the authoring layer once here, so each child inherits it instead of importing it.
    import scheduler.core.serialize  # noqa: F401
    import scheduler.decorators  # noqa: F401
    import scheduler.operators  # noqa: F401
    from scheduler.plugins import load_plugins

    # Plugins too (their operators and macros), once, before the children fork.
    load_plugins(plugins_folder)

    results: dict[str, FileResult] = {}
    pending = list(reversed(files))  # popped from the end: files order
    children: dict[Connection, _Child] = {}
    try:
        while pending or children:
            while pending and len(children) < max(1, concurrency):
                child = _fork_child(extra_paths, children)
                children[child.conn] = child
                child.send(pending.pop())
            deadline = min(c.started for c in children.values()) + timeout
            ready = wait(list(children), timeout=max(0.0, deadline - time.monotonic()))
            for ready_conn in ready:
                child = children[cast(Connection, ready_conn)]
                fileloc = child.fileloc
                try:
                    payload = json.loads(child.conn.recv_bytes())
                except (EOFError, OSError, ValueError):
                    results[fileloc] = _died(fileloc)
                    payload = {"reusable": False}
                else:
                    error = payload["error"]
                    results[fileloc] = FileResult(
                        fileloc=fileloc,
                        source=payload["source"],
                        dags=payload["dags"],
                        error=ImportFailure(**error) if error else None,
                    )
                results[fileloc].duration = time.monotonic() - child.started
                if pending and payload["reusable"] and child.imported < FILES_PER_CHILD:
                    try:
                        child.send(pending[-1])
                    except OSError:  # it died between two files: the file goes to another
                        pass
                    else:
                        pending.pop()
                        continue
                del children[child.conn]
                child.stop()
            now = time.monotonic()
            for child in [c for c in children.values() if now - c.started >= timeout]:
                del children[child.conn]
                child.stop(kill=True)
                results[child.fileloc] = _timed_out(child.fileloc, timeout)
                results[child.fileloc].duration = now - child.started
    finally:
        # Only reached with children left when interrupted: leave no process behind.
        for child in children.values():
            child.stop(kill=True)
    return [results[f] for f in files]


def _read(fileloc: str) -> str:
    try:
        return Path(fileloc).read_text()
    except OSError:
        return ""

"""Importing DAG files. The only module (with the worker) that runs user DAG code.

:func:`exec_dag_source` turns a file's source into its DAG objects in the calling process;
:func:`import_files` does it for many files, each in a forked child with a time limit, so that a
file that hangs, crashes or leaks cannot hurt the caller or the other files.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import sys
import time
import traceback
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path
from typing import Any, cast

from scheduler.errors import DagDefinitionError


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


def _child_main(conn: Connection, fileloc: str, extra_paths: Sequence[str]) -> None:
    from scheduler.core.serialize import serialize_dag

    result: dict[str, Any] = {"dags": [], "error": None, "source": ""}
    try:
        source = Path(fileloc).read_text()
        result["source"] = source
        dags = exec_dag_source(fileloc, source, extra_paths=extra_paths)
        result["dags"] = [serialize_dag(d) for d in dags.values()]
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is reported
        result["dags"] = []
        result["error"] = _error_from_exception(exc, fileloc).__dict__
    conn.send_bytes(json.dumps(result, default=str).encode())
    conn.close()


def _fork_import(fileloc: str, extra_paths: Sequence[str]) -> tuple[int, Connection]:
    reader, writer = Pipe(duplex=False)
    gc.freeze()  # keep the child from copying our heap when it collects
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            reader.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            _child_main(writer, fileloc, extra_paths)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    writer.close()
    return pid, reader


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def import_files(
    files: Sequence[str],
    *,
    timeout: float,
    extra_paths: Sequence[str] = (),
    concurrency: int = 2,
    plugins_folder: str | None = None,
) -> list[FileResult]:
    """Import each file in its own forked process, ``concurrency`` at a time.

    A file that takes longer than ``timeout`` seconds is killed and reported as an import error;
    a child that dies without answering is reported too. Results come back in ``files`` order.
    """
    # Import the authoring layer once here, so each child inherits it instead of importing it.
    import scheduler.core.serialize  # noqa: F401
    import scheduler.decorators  # noqa: F401
    import scheduler.operators  # noqa: F401
    from scheduler.plugins import load_plugins

    # Plugins too (their operators and macros), once, before the children fork.
    load_plugins(plugins_folder)

    results: dict[str, FileResult] = {}
    pending = list(files)
    running: dict[Connection, tuple[str, int, float]] = {}
    while pending or running:
        while pending and len(running) < max(1, concurrency):
            fileloc = pending.pop(0)
            pid, conn = _fork_import(fileloc, extra_paths)
            running[conn] = (fileloc, pid, time.monotonic())
        deadline = min(started + timeout for _, _, started in running.values())
        ready = wait(list(running), timeout=max(0.0, deadline - time.monotonic()))
        for ready_conn in ready:
            conn = cast(Connection, ready_conn)
            fileloc, pid, started = running.pop(conn)
            try:
                payload = json.loads(conn.recv_bytes())
                error = payload["error"]
                results[fileloc] = FileResult(
                    fileloc=fileloc,
                    source=payload["source"],
                    dags=payload["dags"],
                    error=ImportFailure(**error) if error else None,
                )
            except (EOFError, OSError, ValueError):
                results[fileloc] = FileResult(
                    fileloc=fileloc,
                    source=_read(fileloc),
                    error=ImportFailure(
                        "the import process died without a result (it may have called "
                        "sys.exit() or crashed the interpreter)", None, ""),
                )
            conn.close()
            _reap(pid)
            results[fileloc].duration = time.monotonic() - started
        now = time.monotonic()
        for conn, (fileloc, pid, started) in list(running.items()):
            if now - started >= timeout:
                running.pop(conn)
                os.kill(pid, signal.SIGKILL)
                _reap(pid)
                conn.close()
                results[fileloc] = FileResult(
                    fileloc=fileloc,
                    source=_read(fileloc),
                    error=ImportFailure(
                        f"importing the file took longer than {timeout:g} s and was stopped. "
                        "Move slow work (network calls, big queries) out of the module's top "
                        "level into tasks, or raise [core] dag_file_processor_timeout",
                        None, ""),
                    duration=now - started,
                )
    return [results[f] for f in files]


def _read(fileloc: str) -> str:
    try:
        return Path(fileloc).read_text()
    except OSError:
        return ""

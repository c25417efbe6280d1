"""The ground every workload stands on: a temporary ``HEADWATER_HOME`` with its own store (the
embedded SQLite file, or a fresh PostgreSQL database made for the workload and dropped after),
real ``headwater`` processes started in their own process group, and reads of the store's own
timestamps through SQLAlchemy, so the same code measures both backends."""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine, make_url

HEADWATER = [sys.executable, "-m", "scheduler.cli"]
REPO = Path(__file__).resolve().parent.parent
FINISHED = ("success", "failed")


class NotAvailable(Exception):  # noqa: N818 - a verdict, not an error of the harness
    """The feature a figure measures does not exist (yet): the figure is printed as ``n/a``."""


@dataclass(frozen=True)
class Options:
    """How the workloads run: the store (None: embedded SQLite; else the admin URL of a
    PostgreSQL server), the executor for the workloads it applies to, and small sizes."""

    db: str | None = None
    executor: str = "local"
    small: bool = False
    #: A folder: run every scheduler under cProfile and write its stats there.
    profile: str | None = None
    #: A folder: sample every scheduler and all its processes (workers, attempts, DAG
    #: processor) with py-spy; collapsed stacks there, for ``python -m bench.stacks``.
    py_spy: str | None = None

    @property
    def store_kind(self) -> str:
        return "sqlite" if self.db is None else make_url(self.db).get_backend_name()


def celery_available() -> bool:
    return importlib.util.find_spec("scheduler.executors.celery") is not None


class PostgresDatabase:
    """A database created on the server of ``admin_url`` for one workload; :meth:`drop`
    removes it (and any connection a killed process left behind)."""

    def __init__(self, admin_url: str) -> None:
        import psycopg

        url = make_url(admin_url)
        if url.get_backend_name() != "postgresql":
            raise SystemExit(f"--db {admin_url}: only PostgreSQL URLs are supported "
                             "(postgresql+psycopg://postgres@127.0.0.1:5432/test)")
        self._admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.name = f"hwbench_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = url.set(drivername="postgresql+psycopg", database=self.name).render_as_string(
            hide_password=False)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Home:
    """A temporary HEADWATER_HOME: DAGs folder, store, and the scheduler process.

    Use as a context manager; leaving it stops every process it started and removes the home
    (and the PostgreSQL database, if any).
    """

    def __init__(self, options: Options, *, parallelism: int | None = None,
                 executor: str | None = None) -> None:
        self.options = options
        self._tmp = tempfile.TemporaryDirectory(prefix="hwbench-")
        self.path = Path(self._tmp.name)
        (self.path / "dags").mkdir()
        (self.path / "plugins").mkdir()
        self.pg = PostgresDatabase(options.db) if options.db else None
        self.store_url = self.pg.url if self.pg else f"sqlite:///{self.path / 'headwater.db'}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER")}
        self.env["HEADWATER_HOME"] = str(self.path)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        if self.pg:
            self.env["HEADWATER__DATABASE__SQL_ALCHEMY_CONN"] = self.pg.url
        if parallelism:
            self.env["HEADWATER__CORE__PARALLELISM"] = str(parallelism)
        if executor and executor != "local":
            self.env["HEADWATER__CORE__EXECUTOR"] = executor
        self.procs: list[subprocess.Popen[bytes]] = []
        self.samplers: list[subprocess.Popen[bytes]] = []
        self.scheduler: subprocess.Popen[bytes] | None = None
        self._engine: Engine | None = None

    def __enter__(self) -> Home:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- files ---------------------------------------------------------------------------------

    def write_dag(self, name: str, source: str) -> Path:
        path = self.path / "dags" / name
        path.write_text(textwrap.dedent(source).lstrip())
        return path

    # -- processes -----------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 600) -> str:
        """Run ``headwater ARGS`` to the end; its stdout. Raises RuntimeError with its stderr."""
        proc = subprocess.run([*HEADWATER, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"headwater {' '.join(args)} exited {proc.returncode}:\n"
                               f"{proc.stderr[-3000:]}")
        return proc.stdout

    def cli_cpu(self, *args: str, timeout: float = 600) -> float:
        """Run ``headwater ARGS`` to the end, as :meth:`cli`; the CPU seconds of that process
        itself (not of its children), read once it has exited but before it is reaped."""
        log = self.path / f"cli-{secrets.token_hex(3)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*HEADWATER, *args], env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        try:
            # WNOWAIT leaves the exited process a zombie, whose /proc entry still has its times.
            while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"headwater {' '.join(args)} took over {timeout:.0f} s")
                time.sleep(0.02)
            cpu = proc_cpu_seconds(proc.pid)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"headwater {' '.join(args)} exited {proc.returncode}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        return cpu

    def python(self, code: str, *args: str, timeout: float = 600) -> str:
        """Run ``code`` in a fresh interpreter with this home's environment; its stdout."""
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"probe exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        return proc.stdout

    def spawn(self, args: Sequence[str], log_name: str,
              prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """Start ``headwater ARGS`` in a new process group (its own children join it)."""
        log = open(self.path / log_name, "ab")  # noqa: SIM115 - the child keeps it
        command = [*prefix, *HEADWATER[1:]] if prefix else HEADWATER
        proc = subprocess.Popen([*command, *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        prefix: list[str] = []
        if self.options.profile:
            folder = Path(self.options.profile).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            out = folder / f"scheduler-{time.strftime('%H%M%S')}-{secrets.token_hex(2)}.prof"
            prefix = [sys.executable, "-m", "cProfile", "-o", str(out)]
        self.scheduler = self.spawn(["scheduler"], "scheduler.log", prefix)
        if self.options.py_spy:
            self._sample(self.scheduler.pid, "scheduler")
        return self.scheduler

    def _sample(self, pid: int, name: str) -> None:
        """Record ``pid`` and its descendants with py-spy until it exits (CPU only, no idle
        threads), as collapsed stacks."""
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            raise RuntimeError("--py-spy needs py-spy (pip install py-spy)")
        folder = Path(self.options.py_spy or ".").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{name}-{time.strftime('%H%M%S')}-{secrets.token_hex(2)}.txt"
        self.samplers.append(subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--subprocesses", "--rate", "500",
             "--format", "raw", "--nonblocking", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def kill_scheduler_group(self) -> None:
        """SIGKILL the scheduler and every process of its group (its workers, its DAG
        processor), as a power cut would, and reap the scheduler."""
        assert self.scheduler is not None
        try:
            os.killpg(self.scheduler.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.scheduler.wait(30)
        self._wait_group_gone(self.scheduler.pid, 30)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        """SIGTERM ``proc`` (graceful stop); SIGKILL its group if it lingers."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait(30)

    @staticmethod
    def _wait_group_gone(pgid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)

    def log_tail(self, name: str = "scheduler.log", lines: int = 30) -> str:
        path = self.path / name
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- the store -----------------------------------------------------------------------------

    def engine(self) -> Engine:
        if self._engine is None:
            from scheduler.store.db import ensure_schema, make_engine

            self._engine = make_engine(self.store_url)
            ensure_schema(self._engine)
        return self._engine

    def read(self, stmt: Any) -> list[Any]:
        """Rows of ``stmt`` from a read-only session (never takes SQLite's write lock)."""
        from scheduler.store.db import session_scope

        with session_scope(self.engine(), readonly=True) as session:
            return list(session.execute(stmt).all())

    def scalar(self, stmt: Any) -> Any:
        rows = self.read(stmt)
        return rows[0][0] if rows else None

    def wait_dags(self, count: int, timeout: float = 300) -> None:
        """Wait until ``count`` DAGs have a stored version (the parser got to them)."""
        from scheduler.store.models import DagModel

        stmt = select(func.count()).select_from(DagModel).where(
            DagModel.latest_version_id.is_not(None))
        self.wait(lambda: (self.scalar(stmt) or 0) >= count, timeout,
                  f"{count} DAGs to be parsed")

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        from scheduler.store.models import DagRun

        return self.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id,
                                                     DagRun.run_id == run_id))

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait until the run is finished; its state."""
        state = self.wait(lambda: (s := self.run_state(dag_id, run_id)) in FINISHED and s,
                          timeout, f"run {run_id} of {dag_id} to finish")
        return str(state)

    def run_span(self, dag_id: str, run_id: str) -> tuple[datetime, datetime]:
        """(created_at, end_date) of a finished run, from the store."""
        from scheduler.store.models import DagRun

        created, end = self.read(select(DagRun.created_at, DagRun.end_date).where(
            DagRun.dag_id == dag_id, DagRun.run_id == run_id))[0]
        return created, end

    def wait(self, predicate: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.scheduler is not None and self.scheduler.poll() is not None:
                raise RuntimeError(f"the scheduler exited ({self.scheduler.returncode}) while "
                                   f"waiting for {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; "
                                   f"scheduler log:\n{self.log_tail()}")
            time.sleep(interval)

    # -- cleanup -------------------------------------------------------------------------------

    def close(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception as exc:  # noqa: BLE001 - cleanup goes on
                print(f"bench: could not stop pid {proc.pid}: {exc}", file=sys.stderr)
        for sampler in self.samplers:  # each ends (and writes its file) when its target does
            try:
                sampler.wait(60)
            except subprocess.TimeoutExpired:
                sampler.send_signal(signal.SIGINT)
                sampler.wait(30)
        if self._engine is not None:
            self._engine.dispose()
        if self.pg is not None:
            try:
                self.pg.drop()
            except Exception as exc:  # noqa: BLE001
                print(f"bench: could not drop database {self.pg.name}: {exc}", file=sys.stderr)
        self._tmp.cleanup()


def proc_status_mb(pid: int, field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of one process, in MB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def _stat_fields(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after it are plain numbers.
    return stat[stat.rindex(")") + 2:].split()


def proc_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of one process itself (not its children), from
    /proc/<pid>/stat."""
    fields = _stat_fields(pid)
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name))
            except (OSError, ValueError):
                continue  # it ended meanwhile
    return children


def _ticks(pid: int, *, reaped: bool) -> int:
    """Clock ticks of one process itself, plus those of its reaped children if ``reaped``
    (fields 14 to 17 of proc(5)); 0 if it is gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0
    return sum(int(f) for f in fields[11:15 if reaped else 13])


def _subtree_ticks(pid: int, children: dict[int, list[int]]) -> int:
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += _ticks(current, reaped=True)
        todo.extend(children.get(current, []))
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of all its descendants: those alive now (their own time)
    and those already reaped (counted in their parent's cutime and cstime, fields 16 and 17
    of proc(5))."""
    return _subtree_ticks(pid, _children()) / os.sysconf("SC_CLK_TCK")


#: The groups of :func:`cpu_by_role`.
ROLES = ("scheduler", "workers", "attempts", "other")


def cpu_by_role(pid: int) -> dict[str, float]:
    """CPU seconds so far of a scheduler (LocalExecutor) and its processes, by role:
    ``scheduler``, the scheduler process itself; ``workers``, its children that have children
    of their own (a worker and its fork server), themselves only; ``attempts``, everything
    under the workers (fork servers, attempt processes, reaped or alive); ``other``, the rest
    (the DAG processor and its import processes, reaped workers)."""
    children = _children()
    ticks = dict.fromkeys(ROLES, 0)
    ticks["scheduler"] = _ticks(pid, reaped=False)
    for child in children.get(pid, []):
        if children.get(child):
            ticks["workers"] += _ticks(child, reaped=False)
            ticks["attempts"] += _subtree_ticks(child, children) - _ticks(child, reaped=False)
        else:
            ticks["other"] += _subtree_ticks(child, children)
    try:
        reaped = _stat_fields(pid)[13:15]  # workers that died, the processor's restarts
        ticks["other"] += sum(int(f) for f in reaped)
    except OSError:
        pass
    hz = os.sysconf("SC_CLK_TCK")
    return {role: t / hz for role, t in ticks.items()}

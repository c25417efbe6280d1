"""Starting real headwater processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

HEADWATER = [sys.executable, "-m", "scheduler.cli"]

#: Commands that only read the store. Tests poll them while a scheduler works, so they run in
#: the test's process: click's CliRunner on the very command `headwater` runs, with the store
#: and settings of the test's processes, giving its stdout, stderr and exit code. A new
#: interpreter would cost about 0.5 s of CPU per call, taken from the scheduler under test on
#: a small machine. Every other command (and `headwater` as a process) runs for real.
READ_ONLY_COMMANDS = frozenset({
    ("dags", "list-runs"), ("tasks", "states-for-run"), ("tasks", "logs"), ("xcom", "get"),
    ("runs", "history"), ("signals", "list"),
})

# The settings and store of in-process commands, one per environment, kept open until the
# test ends (``close_in_process_stores``, called by an autouse fixture): a read then costs a
# query, and the test's process does not open and close a store connection per poll.
_APPS: dict[tuple[tuple[str, str], ...], Any] = {}


def _app_for(env: dict[str, str]) -> Any:
    from scheduler.cli._common import AppContext
    from scheduler.config import load_settings

    key = tuple(sorted((k, v) for k, v in env.items() if k.startswith("HEADWATER")))
    if key not in _APPS:
        _APPS[key] = AppContext(load_settings(env=dict(key)))
    return _APPS[key]


def close_in_process_stores() -> None:
    """Close the store connections that in-process commands opened."""
    while _APPS:
        _, app = _APPS.popitem()
        if app._engine is not None:
            app._engine.dispose()


def hw_in_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``headwater ARGS`` in this process with the settings of ``env``; the result is what
    the process would have given (an exception that escaped is a traceback on stderr and exit
    code 1)."""
    from click.testing import CliRunner

    from scheduler.cli import main

    result = CliRunner().invoke(main, list(args), obj=_app_for(env), prog_name="headwater")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["headwater", *args], result.exit_code, result.stdout,
                                       stderr)


def hw(env: dict[str, str], *args: str, check: bool = True, timeout: float = 120
       ) -> subprocess.CompletedProcess[str]:
    """Run one headwater command to its end: a read-only one (``READ_ONLY_COMMANDS``) in this
    process, any other as a process of its own."""
    if tuple(args[:2]) in READ_ONLY_COMMANDS:
        proc = hw_in_process(env, *args)
    else:
        proc = subprocess.run([*HEADWATER, *args], env=env, capture_output=True, text=True,
                              timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"headwater {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def hw_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(hw(env, *args, "--output", "json").stdout)


class Service:
    """A long-running headwater command (scheduler, standalone) in its own process group."""

    def __init__(self, env: dict[str, str], *args: str, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([*HEADWATER, *args], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill_scheduler_only(self) -> None:
        """SIGKILL the main process only; its worker processes are left orphaned."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def kill_all(self) -> None:
        """SIGKILL the whole process group: scheduler, workers, task processes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill_all()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def diagnose(self, log_lines: int = 40) -> str:
        """What a test that timed out should show: the end of the log and, for every process
        of the service's group still alive, its Python stacks (``py-spy dump``)."""
        lines = self.output().splitlines()[-log_lines:]
        parts = [f"--- {self.log_path.name}: last {len(lines)} lines", *lines]
        spy = Path(sys.executable).with_name("py-spy")
        for pid in live_group_members(self.proc.pid):
            if not spy.exists():
                parts.append(f"--- pid {pid}: py-spy is not installed")
                break
            dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True,
                                  text=True, timeout=30)
            parts.append(f"--- py-spy dump --pid {pid}\n{dump.stdout}{dump.stderr}")
        return "\n".join(parts)


def live_group_members(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``, from /proc (zombies waiting to be
    reaped do not count)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after its ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return sorted(members)


def runs_of(env: dict[str, str], dag_id: str) -> list[dict[str, Any]]:
    """The DAG's runs, or [] while the scheduler has not parsed its file yet."""
    proc = hw(env, "dags", "list-runs", dag_id, "--output", "json", check=False)
    if proc.returncode != 0:
        if "no DAG" in proc.stderr:
            return []
        raise AssertionError(f"dags list-runs {dag_id} failed: {proc.stderr}")
    return json.loads(proc.stdout)


def ledger_dag_source(ledger: Path, n_tasks: int, *, work_seconds: float, retries: int) -> str:
    """DAG "many": ``n_tasks`` Python tasks (chains of three) that each append their task id
    to ``ledger`` once their work is done — the side effect that must happen once per task."""
    return f"""
        import os, time
        from datetime import datetime, timedelta
        from scheduler import DAG
        from scheduler.operators import PythonOperator

        def work(task):
            time.sleep({work_seconds})
            fd = os.open({str(ledger)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, (task.task_id + "\\n").encode())
            os.close(fd)

        with DAG("many", schedule=None, start_date=datetime(2024, 1, 1)):
            prev = None
            for i in range({n_tasks}):
                t = PythonOperator(task_id=f"t{{i:02d}}", python_callable=work,
                                   retries={retries}, retry_delay=timedelta(0))
                if i % 3 and prev is not None:
                    prev >> t
                prev = t
    """


def run_state(env: dict[str, str], dag_id: str, run_id: str) -> str | None:
    """The state of run ``run_id`` of ``dag_id``, or None while it does not exist."""
    return next((r["state"] for r in runs_of(env, dag_id) if r["run_id"] == run_id), None)

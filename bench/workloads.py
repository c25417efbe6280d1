"""Workloads: each builds DAG files in a temporary HEADWATER_HOME, runs the real scheduler as a
separate process, and reads its figures from the store's own timestamps."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

HEADWATER = [sys.executable, "-m", "scheduler.cli"]


@dataclass
class Figure:
    name: str
    value: float
    unit: str


class Home:
    """A temporary HEADWATER_HOME with a DAGs folder and a scheduler process."""

    def __init__(self, parallelism: int | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="headwater-bench-")
        self.path = Path(self._tmp.name)
        (self.path / "dags").mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER")}
        self.env["HEADWATER_HOME"] = str(self.path)
        self.env["HEADWATER__SCHEDULER__DAG_DIR_LIST_INTERVAL"] = "0.5"
        if parallelism:
            self.env["HEADWATER__CORE__PARALLELISM"] = str(parallelism)
        self.scheduler: subprocess.Popen[bytes] | None = None

    def write_dag(self, name: str, source: str) -> None:
        (self.path / "dags" / name).write_text(textwrap.dedent(source).lstrip())

    def cli(self, *args: str) -> str:
        proc = subprocess.run([*HEADWATER, *args], env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"headwater {' '.join(args)} failed:\n{proc.stderr}")
        return proc.stdout

    def start_scheduler(self) -> None:
        log = open(self.path / "scheduler.log", "ab")  # noqa: SIM115
        self.scheduler = subprocess.Popen([*HEADWATER, "scheduler"], env=self.env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    def wait_dag(self, dag_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if dag_id in self.cli("dags", "list", "--output", "json"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"DAG {dag_id} never appeared")

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path / "headwater.db")

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.db() as conn:
                row = conn.execute("SELECT state FROM dag_run WHERE dag_id=? AND run_id=?",
                                   (dag_id, run_id)).fetchone()
            if row and row[0] in ("success", "failed"):
                return str(row[0])
            time.sleep(0.05)
        raise TimeoutError(f"run {run_id} of {dag_id} did not finish")

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.send_signal(signal.SIGTERM)
            try:
                self.scheduler.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.scheduler.pid, signal.SIGKILL)
        self._tmp.cleanup()


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _run_span(home: Home, dag_id: str, run_id: str) -> tuple[float, float]:
    with home.db() as conn:
        queued, end = conn.execute(
            "SELECT created_at, end_date FROM dag_run WHERE dag_id=? AND run_id=?",
            (dag_id, run_id)).fetchone()
    return _ts(queued), _ts(end)


def chain(n: int) -> list[Figure]:
    """A chain of ``n`` no-op Python tasks: hop latency (start of a task minus end of its
    upstream) and the run's wall time."""
    home = Home()
    try:
        home.write_dag("chain.py", f"""
            from datetime import datetime
            from scheduler import DAG, chain
            from scheduler.operators import PythonOperator

            with DAG("chain_{n}", schedule=None, start_date=datetime(2024, 1, 1)):
                chain(*[PythonOperator(task_id=f"t{{i:04d}}", python_callable=lambda: None)
                        for i in range({n})])
        """)
        home.start_scheduler()
        home.wait_dag(f"chain_{n}")
        home.cli("dags", "trigger", f"chain_{n}", "--run-id", "bench")
        assert home.wait_run(f"chain_{n}", "bench") == "success"
        with home.db() as conn:
            rows = conn.execute(
                "SELECT task_id, start_date, end_date FROM task_instance "
                "WHERE dag_id=? ORDER BY task_id", (f"chain_{n}",)).fetchall()
        hops = [(_ts(b[1]) - _ts(a[2])) * 1000 for a, b in zip(rows, rows[1:], strict=False)]
        created, end = _run_span(home, f"chain_{n}", "bench")
        hops.sort()
        p95 = hops[min(len(hops) - 1, int(round(0.95 * (len(hops) - 1))))]
        return [Figure(f"chain_{n}.hop_median", statistics.median(hops), "ms"),
                Figure(f"chain_{n}.hop_p95", p95, "ms"),
                Figure(f"chain_{n}.wall", end - created, "s")]
    finally:
        home.close()


def fanout(n: int, bash: bool = False) -> list[Figure]:
    """``n`` independent no-op tasks: trigger-to-success wall time and tasks per second."""
    name = f"{'bash_' if bash else ''}fanout_{n}"
    op = ('BashOperator(task_id=f"t{i:04d}", bash_command="true")' if bash else
          'PythonOperator(task_id=f"t{i:04d}", python_callable=lambda: None)')
    home = Home()
    try:
        home.write_dag("fanout.py", f"""
            from datetime import datetime
            from scheduler import DAG
            from scheduler.operators import BashOperator, PythonOperator

            with DAG("{name}", schedule=None, start_date=datetime(2024, 1, 1),
                     max_active_tasks={n}):
                for i in range({n}):
                    {op}
        """)
        home.start_scheduler()
        home.wait_dag(name)
        home.cli("dags", "trigger", name, "--run-id", "bench")
        assert home.wait_run(name, "bench") == "success"
        created, end = _run_span(home, name, "bench")
        wall = end - created
        return [Figure(f"{name}.wall", wall, "s"), Figure(f"{name}.tasks_per_s", n / wall, "1/s")]
    finally:
        home.close()


WORKLOADS: dict[str, Callable[[], list[Figure]]] = {
    "chain_50": lambda: chain(50),
    "fanout_200": lambda: fanout(200),
    "bash_fanout_200": lambda: fanout(200, bash=True),
}


def to_json(figures: list[Figure]) -> list[dict[str, Any]]:
    return [f.__dict__ for f in figures]


def dump(figures: list[Figure], path: str) -> None:
    Path(path).write_text(json.dumps(to_json(figures), indent=2))

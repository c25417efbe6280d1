"""The profiling tools beside the harness: ``bench.attempt`` (the worker's cost per attempt) and
``bench.stacks`` (py-spy samples summed by role and function). No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.stacks import summarise
from tests.conftest import REPO


def test_the_attempt_tool_runs_attempts_and_prints_each_figure() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER")}
    proc = subprocess.run([sys.executable, "-m", "bench.attempt", "--tasks", "4"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    figures = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()
               if line and not line.startswith("#")}
    assert set(figures) == {f"attempt.python.{name}" for name in (
        "wall", "worker_cpu", "process_cpu", "worker_faults", "process_faults", "server_cpu",
        "server_faults")}
    assert all(float(value) >= 0 for value, _unit in figures.values())
    assert "# 3 attempts" in proc.stdout
    # Forked by the worker itself (as the Celery worker does): no fork server to report.
    direct = subprocess.run([sys.executable, "-m", "bench.attempt", "--tasks", "3", "--direct"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert direct.returncode == 0, direct.stderr
    assert {line.split()[0] for line in direct.stdout.splitlines()
            if line and not line.startswith("#")} == {f"attempt.python.direct.{name}" for name in (
                "wall", "worker_cpu", "process_cpu", "worker_faults", "process_faults")}


def test_stacks_are_summed_by_role_and_function(tmp_path: Path) -> None:
    loop = "Scheduler.run (scheduler/loop.py:300);Scheduler.step (scheduler/loop.py:360)"
    worker = "_worker_main (scheduler/executors/local.py:64);supervise (scheduler/worker.py:420)"
    samples = tmp_path / "s.txt"
    samples.write_text("\n".join([
        f'process 1:"python -m scheduler.cli scheduler";{loop};_plan (scheduler/loop.py:551) 6',
        f'process 1:"python -m scheduler.cli scheduler";{loop};_apply (scheduler/loop.py:680) 2',
        f'process 2:"x";{worker};finish_attempt (scheduler/store/commands.py:450) 1',
        f'process 2:"x";{worker};_execute (scheduler/worker.py:230);noop (dags/f.py:3) 1',
        "not a sample line",
    ]) + "\n")
    text = summarise([samples], top=10, role_filter=None, match=None)
    assert text.splitlines()[0] == "10 samples in 1 file(s)"
    assert "== scheduler: 8 samples (80.0% of all)" in text
    assert "== worker: 1 samples (10.0% of all)" in text
    assert "== attempt: 1 samples (10.0% of all)" in text
    # Inclusive shares are of the role's samples; lines of one function add up.
    assert " 75.0%  _plan (scheduler/loop.py)" in text
    assert "100.0%  Scheduler.step (scheduler/loop.py)" in text
    only = summarise([samples], top=10, role_filter="worker", match=None)
    assert "== scheduler" not in only and "== worker" in only

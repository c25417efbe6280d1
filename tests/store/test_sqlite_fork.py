"""SQLite and fork: a process forked by another that held a store connection keeps its commits
after that parent dies. (A scheduler killed with ``kill -9`` leaves its LocalExecutor workers
running; they must still be able to record what they finish.)"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from scheduler.forkserver import fork_running
from scheduler.store.db import make_engine


def _count(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one())
    finally:
        engine.dispose()  # this process's last connection closes here


def test_commits_of_an_orphaned_child_survive_another_process_closing_the_store(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    setup = make_engine(url)
    with setup.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    setup.dispose()
    pid_r, pid_w = os.pipe()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()

    def worker() -> None:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        os.write(done_w, b"1")

    def scheduler() -> None:
        engine = make_engine(url)
        with engine.connect() as conn:  # leaves an idle connection in the pool, as a loop does
            conn.exec_driver_sql("SELECT count(*) FROM t").all()
        os.write(pid_w, str(fork_running(worker)).encode())
        time.sleep(120)  # until killed

    scheduler_pid = fork_running(scheduler)
    worker_pid = int(os.read(pid_r, 32))
    assert os.read(ready_r, 1) == b"1"
    os.kill(scheduler_pid, signal.SIGKILL)
    os.waitpid(scheduler_pid, 0)
    # Another process (this one, like a restarted scheduler or a CLI command) opens the store
    # and closes its last connection while the orphaned worker still has work to record.
    assert _count(url) == 1
    os.write(go_w, b"1")
    assert os.read(done_r, 1) == b"1"
    assert _count(url) == 2, f"the commit of orphaned process {worker_pid} was lost"

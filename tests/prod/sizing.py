"""Measure tasks per second of the CeleryExecutor with 1, 2 and 4 worker processes (the sizing
table of docs/deploy.md). Not a test: run it on an otherwise idle machine with

    .venv/bin/python -m tests.prod.sizing 1,2,4

Each measurement: a fresh PostgreSQL database, a Redis server of its own, one scheduler, one
`headwater worker --concurrency N`, and one run of N_TASKS independent no-op tasks, timed from
the first attempt's start to the last attempt's end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from sqlalchemy import func, select

from scheduler.store.db import make_engine, session_scope
from scheduler.store.models import DagRun, TaskInstance
from tests.prod.conftest import RedisServer
from tests.prod.pg import temporary_database

N_TASKS = int(os.environ.get("N_TASKS", "200"))
HW = [sys.executable, "-m", "scheduler.cli"]
DAG = """
    from datetime import datetime
    from scheduler import DAG
    from scheduler.operators import PythonOperator

    def noop(**_):
        return None

    with DAG("bench", schedule=None, start_date=datetime(2024, 1, 1), max_active_tasks=10000):
        for i in range({n}):
            PythonOperator(task_id=f"t{{i}}", python_callable=noop)
"""


def measure(concurrency: int) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix=f"hw-sizing-{concurrency}-"))
    (home / "dags").mkdir()
    (home / "dags" / "bench.py").write_text(textwrap.dedent(DAG.format(n=N_TASKS)))
    redis = RedisServer(home / "redis")
    redis.start()
    try:
        with temporary_database("hw_sizing") as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER")}
            env.update(HEADWATER_HOME=str(home), HEADWATER__DATABASE__SQL_ALCHEMY_CONN=url,
                       HEADWATER__CORE__EXECUTOR="celery",
                       HEADWATER__CELERY__BROKER_URL=redis.url)
            subprocess.run([*HW, "db", "migrate"], env=env, check=True, capture_output=True)
            subprocess.run([*HW, "pools", "set", "default_pool", "10000"], env=env,
                           check=True, capture_output=True)
            procs = [subprocess.Popen([*HW, *args], env=env, start_new_session=True,
                                      stdout=open(home / f"{args[0]}.log", "w"),  # noqa: SIM115
                                      stderr=subprocess.STDOUT)
                     for args in (["worker", "-c", str(concurrency)], ["scheduler"])]
            engine = make_engine(url)
            try:
                while subprocess.run([*HW, "dags", "trigger", "bench", "--run-id", "r"],
                                     env=env, capture_output=True).returncode:
                    time.sleep(0.5)  # not parsed yet
                while True:
                    with session_scope(engine, readonly=True) as s:
                        state = s.scalar(select(DagRun.state))
                    if state in ("success", "failed"):
                        break
                    time.sleep(0.5)
                with session_scope(engine, readonly=True) as s:
                    first = s.scalar(select(func.min(TaskInstance.start_date)))
                    last = s.scalar(select(func.max(TaskInstance.end_date)))
                    ok = s.scalar(select(func.count()).where(TaskInstance.state == "success"))
            finally:
                engine.dispose()
                for p in procs:
                    os.killpg(p.pid, signal.SIGTERM)
                for p in procs:
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        os.killpg(p.pid, signal.SIGKILL)
    finally:
        redis.stop()
    seconds = (last - first).total_seconds()
    return {"concurrency": concurrency, "state": state, "succeeded": ok,
            "seconds": round(seconds, 2), "tasks_per_second": round((ok or 0) / seconds, 1)}


if __name__ == "__main__":
    for n in sys.argv[1].split(",") if len(sys.argv) > 1 else ["1", "2", "4"]:
        print(json.dumps(measure(int(n))), flush=True)

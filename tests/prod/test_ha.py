"""High availability: two schedulers and two Celery workers on one PostgreSQL store; one of
each is SIGKILLed mid-way, and every run still ends green with each task succeeding once."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from scheduler.store.db import make_engine, session_scope
from scheduler.store.models import DagRun, TaskAttempt, TaskInstance
from tests.conftest import wait_for
from tests.e2e.procs import Service, hw

pytestmark = pytest.mark.slow

N_DAGS = 20
LAYERS, WIDTH = 4, 5  # 20 tasks per DAG, each layer depending on the whole previous one

DAG_FILE = """
    import os
    from datetime import datetime, timedelta
    from scheduler import DAG
    from scheduler.operators import PythonOperator

    SIDE_EFFECTS = {side_effects!r}

    def work(ti, **_):
        import time
        time.sleep(0.05)
        line = f"{{ti.dag_id}},{{ti.run_id}},{{ti.task_id}},{{ti.try_number}}\\n"
        fd = os.open(SIDE_EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, line.encode())  # one short O_APPEND write: atomic among processes
        os.close(fd)

    for n in range({n_dags}):
        with DAG(f"ha_{{n:02d}}", schedule="@once", start_date=datetime(2024, 1, 1),
                 default_args={{"retries": 3, "retry_delay": timedelta(seconds=1)}}) as dag:
            previous = []
            for layer in range({layers}):
                current = [PythonOperator(task_id=f"t{{layer}}_{{i}}", python_callable=work)
                           for i in range({width})]
                for up in previous:
                    up >> current
                previous = current
        globals()[dag.dag_id] = dag
"""


def _side_effects(path: Path) -> Counter[tuple[str, str, str, int]]:
    if not path.exists():
        return Counter()
    lines = [ln.split(",") for ln in path.read_text().splitlines() if ln]
    return Counter((d, r, t, int(n)) for d, r, t, n in lines)


def test_two_schedulers_two_workers_survive_sigkill_and_run_everything_once(
        prod_env, rabbit_broker, pg_url, home, write_dag, services) -> None:
    env = {**prod_env, "HEADWATER__CELERY__BROKER_URL": rabbit_broker,
           "HEADWATER__SCHEDULER__DAG_DIR_LIST_INTERVAL": "2"}
    side_effects = home / "side_effects.txt"
    write_dag("ha.py", DAG_FILE.format(side_effects=str(side_effects), n_dags=N_DAGS,
                                       layers=LAYERS, width=WIDTH))
    hw(env, "db", "migrate")
    total = N_DAGS * LAYERS * WIDTH
    workers = [services(env, "worker", "--concurrency", "2", name=f"worker-{i}")
               for i in range(2)]
    schedulers = [services(env, "scheduler", name=f"scheduler-{i}") for i in range(2)]
    engine = make_engine(pg_url)
    try:
        def succeeded() -> int:
            with session_scope(engine, readonly=True) as s:
                return s.scalar(select(func.count()).where(
                    TaskInstance.state == "success")) or 0

        wait_for(lambda: succeeded() >= total // 4, timeout=240, interval=0.2,
                 message="a quarter of the task instances to succeed")
        _kill_group(schedulers[0])
        _kill_group(workers[1])
        assert succeeded() < total, "killed too late: everything had already finished"

        def all_runs_done() -> bool:
            with session_scope(engine, readonly=True) as s:
                states = s.scalars(select(DagRun.state)).all()
            return len(states) == N_DAGS and all(st in ("success", "failed") for st in states)

        wait_for(all_runs_done, timeout=300, interval=0.2,
                 message="every run to finish after the kills "
                         f"(survivors' logs: {schedulers[1].log_path}, {workers[0].log_path})")

        with session_scope(engine, readonly=True) as s:
            runs = {r.dag_id: r.state for r in s.scalars(select(DagRun))}
            tis = s.scalars(select(TaskInstance)).all()
            attempts = s.scalars(select(TaskAttempt)).all()
        assert runs == {f"ha_{n:02d}": "success" for n in range(N_DAGS)}
        assert len(tis) == total
        assert Counter(ti.state for ti in tis) == {"success": total}  # none queued/running
        ti_by_id = {ti.id: ti for ti in tis}
        successes = Counter(a.ti_id for a in attempts if a.state == "success")
        assert set(successes) == set(ti_by_id) and set(successes.values()) == {1}
        tries_in_store = Counter(a.ti_id for a in attempts)
        effects = _side_effects(side_effects)
        for ti in tis:
            # The successful try ran its side effect exactly once; a try the kill cut short
            # may have run it too, but never a try the store does not know of.
            assert effects[(ti.dag_id, ti.run_id, ti.task_id, ti.try_number)] == 1, ti.task_id
            lines = sum(c for (d, r, t, _n), c in effects.items()
                        if (d, r, t) == (ti.dag_id, ti.run_id, ti.task_id))
            assert lines <= tries_in_store[ti.id]
        assert sum(effects.values()) <= len(attempts)
    finally:
        engine.dispose()


def _kill_group(svc: Service) -> None:
    """SIGKILL the service and every process it started (a machine lost)."""
    os.killpg(svc.pid, signal.SIGKILL)
    svc.proc.wait(10)

"""Workloads that run pipelines: a real ``headwater scheduler`` process (with its executor's
worker processes) in a temporary home, a run triggered with ``headwater dags trigger``, and
figures read from the store's own timestamps.

Each function returns ``{figure suffix: value}``; :mod:`bench.registry` names the figures.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from bench.dags import chain_dag, fanout_dag, parse_dag
from bench.home import (
    Home,
    NotAvailable,
    Options,
    celery_available,
    cpu_by_role,
    proc_cpu_seconds,
    proc_status_mb,
    tree_cpu_seconds,
)

Values = dict[str, float | None]


def _seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


#: The Redis database the Celery workloads use as broker (apart from db 0, which tests use).
CELERY_BROKER = "redis://127.0.0.1:6379/12"


def _start_workers(home: Home, executor: str) -> None:
    """Start what the executor needs besides the scheduler: for Celery, one ``headwater
    worker`` of 4 processes (the LocalExecutor's default parallelism on 2 cores), waited for
    until it is ready."""
    if executor != "celery":
        return
    if not celery_available():
        raise NotAvailable("scheduler/executors/celery.py does not exist yet")
    try:
        home.cli("worker", "--help", timeout=60)
    except RuntimeError:
        raise NotAvailable("no `headwater worker` command to start a Celery worker")
    home.env["HEADWATER__CELERY__BROKER_URL"] = CELERY_BROKER
    home.spawn(["worker", "--concurrency", "4"], "celery-worker.log")
    log = home.path / "celery-worker.log"
    home.wait(lambda: " ready." in log.read_text(errors="replace"), 60,
              "the Celery worker to be ready", interval=0.1)


def _trigger(home: Home, dag_id: str, run_id: str = "bench") -> None:
    home.cli("dags", "trigger", dag_id, "--run-id", run_id)


def _run_one(home: Home, dag_id: str, source: str, timeout: float,
             before_trigger: Callable[[], None] | None = None) -> tuple[datetime, datetime]:
    """Write the DAG, start the scheduler, trigger one run and wait for its success;
    (created_at, end_date) of the run."""
    home.write_dag(f"{dag_id}.py", source)
    home.start_scheduler()
    home.wait_dags(1)
    if before_trigger is not None:
        before_trigger()
    _trigger(home, dag_id)
    state = home.wait_run(dag_id, "bench", timeout)
    if state != "success":
        raise RuntimeError(f"run of {dag_id} ended {state}:\n{home.log_tail()}")
    return home.run_span(dag_id, "bench")


def chain(options: Options, n: int) -> Values:
    """A chain of ``n`` no-op Python tasks: hop latency (start of a task minus end of its
    upstream, median and p95, ms) and the run's wall time (created to end, s)."""
    from scheduler.store.models import TaskInstance as TI

    executor = options.executor
    with Home(options, executor=executor) as home:
        _start_workers(home, executor)
        dag_id = f"chain_{n}"
        created, end = _run_one(home, dag_id, chain_dag(dag_id, n), timeout=60 + n)
        rows = home.read(select(TI.task_id, TI.queued_at, TI.start_date, TI.end_date)
                         .where(TI.dag_id == dag_id).order_by(TI.task_id))
    pairs = list(zip(rows, rows[1:], strict=False))
    hops = sorted(_seconds(a.end_date, b.start_date) * 1000 for a, b in pairs)
    p95 = hops[max(0, math.ceil(0.95 * len(hops)) - 1)]
    # The two halves of a hop: the scheduler seeing the end and queueing the downstream task,
    # then the executor and worker starting it.
    react = [_seconds(a.end_date, b.queued_at) * 1000 for a, b in pairs]
    start = [_seconds(b.queued_at, b.start_date) * 1000 for _, b in pairs]
    return {"hop_median": statistics.median(hops), "hop_p95": p95,
            "hop_queue_median": statistics.median(react),
            "hop_start_median": statistics.median(start), "wall": _seconds(created, end)}


def fanout(options: Options, n: int, *, bash: bool = False) -> Values:
    """``n`` independent no-op tasks: trigger-to-success wall time (s), tasks per second, the
    CPU seconds of the scheduler process itself (its parse, start and loop; not its workers or
    DAG processor) and of the scheduler with all its processes (workers, their fork servers
    and attempts, DAG processor), until the run succeeded."""
    executor = "local" if bash else options.executor
    local = executor == "local"
    before: dict[str, float] = {}
    with Home(options, executor=executor) as home:
        _start_workers(home, executor)
        dag_id = f"{'bash_' if bash else ''}fanout_{n}"

        def snapshot() -> None:
            assert home.scheduler is not None
            before.update(cpu_by_role(home.scheduler.pid))

        created, end = _run_one(home, dag_id, fanout_dag(dag_id, n, bash=bash),
                                timeout=60 + n, before_trigger=snapshot if local else None)
        assert home.scheduler is not None
        cpu = proc_cpu_seconds(home.scheduler.pid)
        # (Celery's workers are not the scheduler's processes: not counted, so not given.)
        total = tree_cpu_seconds(home.scheduler.pid) if local else None
        after = cpu_by_role(home.scheduler.pid) if local else {}
    wall = _seconds(created, end)

    def per_task(role: str) -> float | None:
        # CPU of one role from the trigger to a moment after the run's end, per task (ms).
        return 1000 * (after[role] - before[role]) / n if local else None

    return {"wall": wall, "tasks_per_s": n / wall, "scheduler_cpu": cpu, "total_cpu": total,
            "loop_ms_per_task": per_task("scheduler"),
            "worker_ms_per_task": per_task("workers"),
            "attempt_ms_per_task": per_task("attempts")}


def scheduler_rss(options: Options, n_tasks: int, n_files: int) -> Values:
    """Peak resident memory (VmHWM, MB) of the scheduler process itself (not its workers or
    DAG processor) over a fanout of ``n_tasks``; then of a fresh scheduler idle with
    ``n_files`` DAG files of 10 tasks parsed."""
    with Home(options) as home:
        dag_id = f"fanout_{n_tasks}"
        _run_one(home, dag_id, fanout_dag(dag_id, n_tasks), timeout=60 + n_tasks)
        assert home.scheduler is not None
        busy = proc_status_mb(home.scheduler.pid, "VmHWM")
    with Home(options) as home:
        for i in range(n_files):
            home.write_dag(f"idle_{i:04d}.py", parse_dag(f"idle_{i:04d}", schedule=None))
        home.start_scheduler()
        home.wait_dags(n_files, timeout=120 + n_files)
        time.sleep(0.5 if options.small else 2.0)  # idle: let the loop settle
        assert home.scheduler is not None
        idle = proc_status_mb(home.scheduler.pid, "VmHWM")
    return {"fanout_peak": busy, "idle_peak": idle}


def recovery(options: Options, n: int) -> Values:
    """kill -9 of the scheduler's process group while a fanout of ``n`` ledger-writing tasks
    runs, then a restart. Figures: seconds from the restart to the end of the run (store
    timestamp; the run succeeded iff ``tasks_failed`` is 0), how many tasks the run ended with
    failed, how many tasks ran twice (ledger lines), and how many of those had already finished
    (stored as success) before the kill."""
    from scheduler.store.models import TaskInstance as TI

    with Home(options) as home:
        if options.small:
            # Keep the harness's own test short should lost attempts wait for the zombie check.
            home.env["HEADWATER__SCHEDULER__TASK_HEARTBEAT_TIMEOUT"] = "5"
            home.env["HEADWATER__SCHEDULER__HEARTBEAT_INTERVAL"] = "1"
        dag_id = f"recovery_{n}"
        ledger = home.path / "ledger.txt"
        ledger.touch()
        home.write_dag(f"{dag_id}.py", fanout_dag(dag_id, n, ledger=str(ledger)))
        home.start_scheduler()
        home.wait_dags(1)
        _trigger(home, dag_id)
        kill_at = max(1, n // 4)
        home.wait(lambda: len(ledger.read_text().splitlines()) >= kill_at, 120,
                  f"{kill_at} tasks to run")
        home.kill_scheduler_group()
        done_before = {r.task_id for r in home.read(
            select(TI.task_id).where(TI.dag_id == dag_id, TI.state == "success"))}
        if len(done_before) == n:
            print(f"bench: recovery_{n}: the run finished before the kill landed",
                  file=sys.stderr)
        restarted = datetime.now().astimezone()
        home.start_scheduler()
        state = home.wait_run(dag_id, "bench", timeout=180 + n)
        _, end = home.run_span(dag_id, "bench")
        failed = [r.task_id for r in home.read(
            select(TI.task_id).where(TI.dag_id == dag_id, TI.state != "success"))]
        if state != "success":
            print(f"bench: recovery_{n}: the run ended {state} after the restart; tasks not "
                  f"successful: {', '.join(failed)}", file=sys.stderr)
        counts = Counter(ledger.read_text().split())
    twice = {task for task, c in counts.items() if c > 1}
    return {"restart_to_end": _seconds(restarted, end), "tasks_failed": len(failed),
            "tasks_run_twice": len(twice), "finished_rerun": len(twice & done_before)}

"""The cost of one attempt on the worker side, without a scheduler: what ``supervise()`` costs
per no-op task, split between the worker process and the attempt's own (forked) process.

    python -m bench.attempt [--tasks 200] [--bash]

It builds a one-run store in a temporary ``HEADWATER_HOME``, queues every task instance, then
runs ``supervise()`` on each in turn, in this process, as a LocalExecutor worker would. Printed:
wall time, CPU (user + system) of this process and of the attempt processes, and minor page
faults of each, per attempt. The first attempt (which loads the DAG) is left out. Use it to
see what a change in ``scheduler/worker.py`` or the attempt's store commands costs; the
workloads of ``python -m bench`` show the effect on whole runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.dags import fanout_dag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attempt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200, help="attempts to run (default 200)")
    parser.add_argument("--bash", action="store_true", help='BashOperator("true") tasks')
    parser.add_argument("--direct", action="store_true",
                        help="fork each attempt from the worker itself, not from its fork "
                             "server (as the Celery worker does)")
    args = parser.parse_args(argv)
    if args.tasks < 2:
        parser.error("--tasks must be at least 2")

    with tempfile.TemporaryDirectory(prefix="hw-attempt-") as home:
        os.environ["HEADWATER_HOME"] = home
        for key in [k for k in os.environ if k.startswith("HEADWATER__")]:
            del os.environ[key]
        Path(home, "dags").mkdir()
        Path(home, "dags", "attempts.py").write_text(
            textwrap.dedent(fanout_dag("attempts", args.tasks, bash=args.bash)))

        from sqlalchemy import select

        from scheduler.config import load_settings
        from scheduler.core.states import TaskState
        from scheduler.loop import trigger_run
        from scheduler.parsing.processor import parse_dags_folder
        from scheduler.store import commands
        from scheduler.store.db import ensure_schema, make_engine, session_scope
        from scheduler.store.models import TaskInstance
        from scheduler.worker import (
            AttemptForkServer,
            DagCache,
            preload_authoring_api,
            supervise,
            warm_up,
        )

        settings = load_settings()
        engine = make_engine(settings.sql_alchemy_conn)
        ensure_schema(engine)
        parse_dags_folder(engine, settings)
        now = datetime.now(UTC)
        with session_scope(engine) as session:
            run = trigger_run(session, dag_id="attempts", now=now)
            session.flush()
            tis = session.scalars(select(TaskInstance).where(TaskInstance.run_pk == run.id)
                                  .order_by(TaskInstance.id)).all()
            for ti in tis:
                commands.set_task_state(session, ti, TaskState.SCHEDULED, now=now,
                                        reason="bench", actor="bench")
            workloads = commands.queue_task_instances(
                session, tis, version_id_of={run.id: run.version_id}, timeout_of={},
                job_id=None, now=now)
        preload_authoring_api()
        warm_up(engine)
        dags = DagCache(engine, settings)
        forks = None if args.direct else AttemptForkServer(settings, engine, dags)
        supervise(workloads[0], settings=settings, engine=engine, dags=dags, forks=forks)

        self0 = resource.getrusage(resource.RUSAGE_SELF)
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        for workload in workloads[1:]:
            supervise(workload, settings=settings, engine=engine, dags=dags, forks=forks)
        wall = time.perf_counter() - t0
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        server = _proc_stat(forks.pid) if forks is not None and forks.pid else None
        if forks is not None:
            forks.stop()  # (its children's use counts once it is reaped)
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        engine.dispose()

    n = len(workloads) - 1

    def per(a: float, b: float, scale: float = 1000.0) -> str:
        return f"{scale * (b - a) / n:.2f}"

    kind = ("bash" if args.bash else "python") + (".direct" if args.direct else "")
    print(f"attempt.{kind}.wall {per(0, wall)} ms")
    print(f"attempt.{kind}.worker_cpu "
          f"{per(self0.ru_utime + self0.ru_stime, self1.ru_utime + self1.ru_stime)} ms")
    print(f"attempt.{kind}.process_cpu "
          f"{per(kids0.ru_utime + kids0.ru_stime, kids1.ru_utime + kids1.ru_stime)} ms")
    print(f"attempt.{kind}.worker_faults {per(self0.ru_minflt, self1.ru_minflt, 1)} pages")
    print(f"attempt.{kind}.process_faults {per(kids0.ru_minflt, kids1.ru_minflt, 1)} pages")
    if server is not None:  # the fork server's own share (all attempts, first included)
        cpu, faults = server
        print(f"attempt.{kind}.server_cpu {1000 * cpu / (n + 1):.2f} ms")
        print(f"attempt.{kind}.server_faults {faults / (n + 1):.2f} pages")
    print(f"# {n} attempts, one at a time, in one worker process (pid {os.getpid()}); "
          + ("each forked by the worker" if args.direct else
             "forked by its fork server, whose own CPU and faults count in process_*"))
    return 0


def _proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds, minor faults) of a live process itself, its children not counted."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks, int(fields[7])


if __name__ == "__main__":
    raise SystemExit(main())

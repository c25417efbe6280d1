"""``headwater worker``: a Celery worker that runs task instances for the CeleryExecutor."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

import click

from scheduler.cli._common import AppContext, handle_errors, pass_app
from scheduler.store.db import backoff_delays


def celery_worker_argv(queues: str, concurrency: int, hostname: str | None) -> list[str]:
    """The ``celery worker`` arguments for these options (a function, so tests can check it)."""
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        raise click.BadParameter("name at least one queue, e.g. --queues default,etl",
                                 param_hint="--queues")
    node = hostname or f"headwater-{os.getpid()}@{socket.gethostname()}"
    return [
        "worker", "--loglevel=INFO", "--pool=prefork", f"--concurrency={concurrency}",
        f"--queues={','.join(names)}", f"--hostname={node}",
        # No worker-to-worker chatter: Headwater's state lives in the store, not in Celery.
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]


@click.command("worker")
@click.option("--queues", "-q", default="default", show_default=True,
              help="Comma-separated queues to consume (a task's `queue=` argument).")
@click.option("--concurrency", "-c", type=int, default=None,
              help="Task instances run at once (default: the number of CPUs).")
@click.option("--hostname", "-n", default=None,
              help="Celery node name (default: headwater-PID@HOST).")
@pass_app
@handle_errors
def worker(app: AppContext, queues: str, concurrency: int | None, hostname: str | None) -> None:
    """Run a Celery worker for the CeleryExecutor ([core] executor = "celery").

    It consumes workloads from [celery] broker_url and runs each like the local executor does:
    a process per attempt, its log under [logging] base_log_folder, heartbeats and
    execution_timeout, the outcome written to the store ([database] sql_alchemy_conn). Every
    worker machine needs the same store, broker, DAGs folder and (for the UI) logs folder.
    SIGTERM stops it after the running attempts end; SIGKILL leaves them to be retried.
    """
    from scheduler.executors.celery import make_celery_app

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(name)s - %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    n = concurrency or os.cpu_count() or 1
    if n < 1:
        raise click.BadParameter("must be 1 or more", param_hint="--concurrency")
    argv = celery_worker_argv(queues, n, hostname)
    # Check (or create) the schema once here; each pool process opens its own connections.
    app.engine().dispose()
    celery_app = make_celery_app(app.settings)
    from scheduler.worker import preload_authoring_api

    preload_authoring_api()  # before Celery forks its pool processes
    logging.getLogger("headwater.worker").info(
        "worker starting (queues %s, concurrency %d, broker %s)", queues, n,
        celery_app.connection_for_write().as_uri())
    supervise_celery_worker(lambda: celery_app.worker_main(argv))


def supervise_celery_worker(run: Callable[[], object]) -> None:
    """Run the Celery worker in a child process and start a new one if it ends while nobody
    asked it to: Celery gives up for good on some broker failures ("Unrecoverable error"
    when the broker restarts mid-acknowledgement), and a worker must outlive its broker.
    SIGTERM/SIGINT are passed on to the child (Celery's warm shutdown) and end the loop."""
    log = logging.getLogger("headwater.worker")
    stopping = False
    child = 0

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM if signum == signal.SIGINT else signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    delays = backoff_delays(first=1.0, cap=30.0)
    while not stopping:
        started = time.monotonic()
        child = os.fork()
        if child == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                run()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        child = 0
        if stopping:
            break
        if time.monotonic() - started > 60:
            delays = backoff_delays(first=1.0, cap=30.0)  # it ran a while: start over
        delay = next(delays)
        log.error("the Celery worker ended (status %s) without being asked to; starting a "
                  "new one in %.1f s", status, delay)
        time.sleep(delay)

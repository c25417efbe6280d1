"""Long-running services: ``scheduler``, ``webserver`` and ``standalone`` (both at once)."""

from __future__ import annotations

import logging
import os
import signal
import sys

import click

from scheduler.cli._common import AppContext, handle_errors, pass_app


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(name)s - %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _run_scheduler(app: AppContext) -> None:
    from scheduler.executors import make_executor
    from scheduler.loop import Scheduler

    engine = app.engine()
    loop = Scheduler(app.settings, engine, make_executor(app.settings))
    signal.signal(signal.SIGTERM, loop.request_stop)
    signal.signal(signal.SIGINT, loop.request_stop)
    loop.start()
    logging.getLogger("headwater.scheduler").info(
        "scheduler started (pid %d, executor %s, parallelism %d, DAGs folder %s)",
        os.getpid(), app.settings.executor, app.settings.parallelism, app.settings.dags_folder)
    try:
        loop.run()
    finally:
        logging.getLogger("headwater.scheduler").info(
            "stopping: letting running tasks finish and record their outcome")
        loop.stop(graceful=True)


@click.command("scheduler")
@pass_app
@handle_errors
def scheduler_cmd(app: AppContext) -> None:
    """Run the scheduler: parse DAGs, create runs, run tasks with the configured executor.

    SIGTERM or Ctrl-C stops it gracefully: running tasks finish and record their outcome.
    """
    _setup_logging()
    _run_scheduler(app)


@click.command()
@click.option("--host", help="Address to bind (default: [webserver] host).")
@click.option("--port", type=int, help="Port (default: [webserver] port).")
@click.option("--workers", type=int, default=2, show_default=True, help="gunicorn workers.")
@pass_app
@handle_errors
def webserver(app: AppContext, host: str | None, port: int | None, workers: int) -> None:
    """Serve the web UI and the REST API with gunicorn."""
    from webui.serve import serve

    _setup_logging()
    app.engine()  # create or check the schema before workers start
    serve(app.settings, host=host or app.settings.web_host, port=port or app.settings.web_port,
          workers=workers)


def _first_admin(app: AppContext) -> None:
    """On a store without users, create ``admin`` with a generated password and print it once."""
    from datetime import UTC, datetime

    from scheduler.store.db import session_scope
    from webui.users import count_users, create_user, generate_password

    with session_scope(app.engine()) as session:
        if count_users(session):
            return
        password = generate_password()
        create_user(session, "admin", password, "admin", now=datetime.now(UTC))
    click.echo(f"Created the web UI user 'admin' with password: {password}\n"
               "(shown once; `headwater users create` adds more users)", err=False)


@click.command()
@click.option("--port", type=int, help="Web UI port (default: [webserver] port).")
@pass_app
@handle_errors
def standalone(app: AppContext, port: int | None) -> None:
    """Run the scheduler and the web UI together: everything on one machine."""
    from webui.serve import serve

    _setup_logging()
    app.engine()
    _first_admin(app)
    web_port = port or app.settings.web_port
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            serve(app.settings, host=app.settings.web_host, port=web_port, workers=1)
        finally:
            os._exit(0)
    click.echo(f"Headwater is running: web UI on http://{app.settings.web_host}:{web_port}, "
               f"DAGs from {app.settings.dags_folder}. Ctrl-C stops it.")
    try:
        _run_scheduler(app)
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

"""The ``headwater`` command line."""

from __future__ import annotations

import click

from scheduler import __version__
from scheduler.cli._common import get_app


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="headwater")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Headwater: schedule and run DAGs of tasks, durably.

    Settings come from $HEADWATER_HOME/headwater.toml (default ~/headwater) and
    HEADWATER__SECTION__KEY environment variables. Every command creates the embedded
    store on first use.

    \b
    Quick start:
      headwater standalone              scheduler + web UI on http://127.0.0.1:8080
      headwater dags list               the DAGs found in the DAGs folder
      headwater dags test my_dag        one whole run, here and now
    """
    get_app(ctx)


def _register() -> None:
    from scheduler.cli import dags, db, server, tasks

    main.add_command(db.db)
    main.add_command(dags.dags)
    import scheduler.cli.backfill  # noqa: F401 - adds `dags backfill` and `dags next-run`
    main.add_command(tasks.tasks)
    main.add_command(tasks.xcom)
    main.add_command(server.scheduler_cmd)
    main.add_command(server.webserver)
    main.add_command(server.standalone)
    main.add_command(__import__("scheduler.cli.users", fromlist=["users"]).users)
    from scheduler.cli.worker import worker as worker_cmd  # noqa: I001
    main.add_command(worker_cmd)
    from scheduler.cli import runs as runs_cli, signals as signals_cli  # noqa: I001
    main.add_command(runs_cli.runs)
    main.add_command(signals_cli.signals)
    from scheduler.cli import resources, tasks_extra  # noqa: F401 - tasks_extra extends `tasks`
    resources.register(main)


_register()

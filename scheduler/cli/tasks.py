"""``headwater tasks`` and ``headwater xcom``: task instances, their logs and values."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from scheduler.cli._common import (
    AppContext,
    emit,
    handle_errors,
    output_option,
    parse_datetime,
    pass_app,
)


@click.group()
def tasks() -> None:
    """Inspect and test task instances."""


@tasks.command("states-for-run")
@click.argument("dag_id")
@click.argument("run_id")
@output_option
@pass_app
@handle_errors
def states_for_run(app: AppContext, dag_id: str, run_id: str, output: str) -> None:
    """The state of every task instance of run RUN_ID of DAG_ID."""
    from scheduler.store import queries
    from scheduler.store.db import session_scope

    with session_scope(app.engine(), readonly=True) as session:
        run = queries.get_run(session, dag_id, run_id)
        rows = [{"task_id": t.task_id, "map_index": t.map_index, "state": t.state,
                 "try_number": t.try_number, "start_date": t.start_date, "end_date": t.end_date}
                for t in queries.task_instances(session, run)]
    emit(rows, output, title=f"{dag_id} {run_id}")


@tasks.command("list")
@click.argument("dag_id")
@output_option
@pass_app
@handle_errors
def list_tasks(app: AppContext, dag_id: str, output: str) -> None:
    """The task ids of DAG_ID, in dependency order."""
    from scheduler.store import queries
    from scheduler.store.db import session_scope
    from scheduler.store.models import DagVersion

    with session_scope(app.engine(), readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        version = session.get(DagVersion, dag.latest_version_id)
        task_list = [t["task_id"] for t in version.serialized["tasks"]] if version else []
    if output == "json":
        emit([{"task_id": t} for t in task_list], output)
    else:
        click.echo("\n".join(task_list))


@tasks.command()
@click.argument("dag_id")
@click.argument("run_id")
@click.argument("task_id")
@click.option("--try", "try_number", type=int, help="Attempt number (default: the latest).")
@click.option("--map-index", type=int, default=-1, show_default=True)
@pass_app
@handle_errors
def logs(app: AppContext, dag_id: str, run_id: str, task_id: str, try_number: int | None,
         map_index: int) -> None:
    """Print the log of one attempt of TASK_ID in run RUN_ID."""
    from scheduler.store import queries
    from scheduler.store.db import session_scope

    with session_scope(app.engine(), readonly=True) as session:
        run = queries.get_run(session, dag_id, run_id)
        ti = queries.get_task_instance(session, run, task_id, map_index)
        tries = queries.attempts(session, ti)
    if not tries:
        raise click.ClickException(f"task {task_id!r} of run {run_id!r} has not run yet")
    chosen = tries[-1] if try_number is None else next(
        (a for a in tries if a.try_number == try_number), None)
    if chosen is None:
        raise click.ClickException(
            f"no attempt {try_number}; attempts: {', '.join(str(a.try_number) for a in tries)}")
    path = Path(chosen.log_path or "")
    if not chosen.log_path or not path.is_file():
        raise click.ClickException(f"the log of attempt {chosen.try_number} is not on this "
                                   f"machine ({chosen.log_path or 'never written'})")
    click.echo(path.read_text(errors="replace"), nl=False)


@tasks.command("test")
@click.argument("dag_id")
@click.argument("task_id")
@click.argument("logical_date", required=False)
@click.option("--params", "-p", "params_json", help="JSON object of params for the task.")
@pass_app
@handle_errors
def test_task(app: AppContext, dag_id: str, task_id: str, logical_date: str | None,
              params_json: str | None) -> None:
    """Run TASK_ID of DAG_ID here, ignoring dependencies and recording nothing.

    The log goes to the terminal; XComs it would push are printed at the end. Exit 1 if it
    fails.
    """
    from scheduler.cli._common import parse_conf
    from scheduler.cli.dags import _parse
    from scheduler.tasktest import run_task_here

    _parse(app)
    logical = parse_datetime(logical_date, "LOGICAL_DATE") or datetime.now(UTC)
    ok, xcoms = run_task_here(app.settings, app.engine(), dag_id, task_id, logical,
                              parse_conf(params_json))
    for key, value in xcoms.items():
        click.echo(f"XCom {key}: {json.dumps(value, default=str)}")
    if not ok:
        raise SystemExit(1)


@click.group()
def xcom() -> None:
    """Read XComs, the values tasks pass to each other."""


@xcom.command("get")
@click.argument("dag_id")
@click.argument("run_id")
@click.argument("task_id")
@click.option("--key", "-k", default="return_value", show_default=True)
@click.option("--map-index", type=int, default=-1, show_default=True)
@pass_app
@handle_errors
def xcom_get(app: AppContext, dag_id: str, run_id: str, task_id: str, key: str,
             map_index: int) -> None:
    """Print the XCom KEY of TASK_ID in run RUN_ID, as JSON."""
    from scheduler.store import queries
    from scheduler.store.db import session_scope

    with session_scope(app.engine(), readonly=True) as session:
        run = queries.get_run(session, dag_id, run_id)
        ti = queries.get_task_instance(session, run, task_id, map_index)
        value: Any = queries.get_xcom(session, ti, key)
    click.echo(json.dumps(value))

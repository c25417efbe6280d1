"""``headwater dags``: list, trigger, test and inspect DAGs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from scheduler.cli._common import (
    AppContext,
    emit,
    handle_errors,
    output_option,
    parse_conf,
    parse_datetime,
    pass_app,
    warn,
)


def _parse(app: AppContext) -> Any:
    from scheduler.parsing.processor import parse_dags_folder

    return parse_dags_folder(app.engine(), app.settings)


def _report_import_errors(app: AppContext) -> int:
    from scheduler.store import queries
    from scheduler.store.db import session_scope

    with session_scope(app.engine(), readonly=True) as session:
        errors = queries.import_errors(session)
        for err in errors:
            where = f"{err.fileloc}:{err.lineno}" if err.lineno else err.fileloc
            warn(f"Import error in {where}: {err.message}")
    return len(errors)


def _run_row(run: Any, versions: dict[int, str]) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "state": run.state,
        "run_type": run.run_type,
        "logical_date": run.logical_date,
        "data_interval_start": run.data_interval_start,
        "data_interval_end": run.data_interval_end,
        "start_date": run.start_date,
        "end_date": run.end_date,
        "version": versions.get(run.version_id),
    }


@click.group()
def dags() -> None:
    """List, trigger, test and inspect DAGs."""


@dags.command("list")
@output_option
@click.option("--include-inactive", is_flag=True, help="Also DAGs whose file is gone.")
@pass_app
@handle_errors
def list_dags(app: AppContext, output: str, include_inactive: bool) -> None:
    """Parse the DAGs folder and list its DAGs; import errors go to stderr."""
    from scheduler.store import queries
    from scheduler.store.db import session_scope

    _parse(app)
    with session_scope(app.engine(), readonly=True) as session:
        rows = [
            # (The store keeps "None" for the UI to show; a program gets null.)
            {"dag_id": d.dag_id,
             "schedule": d.schedule if d.schedule != "None" or output != "json" else None,
             "paused": d.is_paused,
             "next_run": d.next_logical_date, "tags": d.tags or [], "fileloc": d.fileloc,
             **({"active": d.is_active} if include_inactive else {})}
            for d in queries.list_dags(session, include_inactive=include_inactive)
        ]
    emit(rows, output, columns=["dag_id", "schedule", "paused", "next_run", "tags", "fileloc"],
         title="DAGs")
    _report_import_errors(app)


@dags.command()
@click.argument("dag_id")
@click.option("--conf", "-c", help="JSON object of params for the run, e.g. '{\"n\": 3}'.")
@click.option("--run-id", "-r", help="Run id to use (default: manual__<logical date>).")
@click.option("--logical-date", "-l", help="ISO 8601 logical date (default: now).")
@output_option
@pass_app
@handle_errors
def trigger(app: AppContext, dag_id: str, conf: str | None, run_id: str | None,
            logical_date: str | None, output: str) -> None:
    """Create a manual run of DAG_ID; a running scheduler picks it up at once."""
    from scheduler.loop import trigger_run
    from scheduler.store import queries
    from scheduler.store.db import session_scope
    from scheduler.wakeup import notify

    _parse(app)
    conf_dict = _validated_conf(app, dag_id, parse_conf(conf))
    now = datetime.now(UTC)
    with session_scope(app.engine()) as session:
        try:
            run = trigger_run(session, dag_id=dag_id, now=now, conf=conf_dict, run_id=run_id,
                              logical_date=parse_datetime(logical_date, "--logical-date"))
        except ValueError as exc:
            raise click.ClickException(str(exc))
        session.flush()
        row = _run_row(run, queries.version_labels(session, {run.version_id}))
    notify(app.settings.home)
    emit(row, output, title=f"Triggered {dag_id}")


def _validated_conf(app: AppContext, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    """Apply conf over the DAG's params and validate their types (refused with the param's
    name when wrong)."""
    from scheduler.core.dag import resolve_params
    from scheduler.errors import ParamValidationError
    from scheduler.store import queries
    from scheduler.store.db import session_scope
    from scheduler.store.models import DagVersion

    with session_scope(app.engine(), readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        version = session.get(DagVersion, dag.latest_version_id)
        params = (version.serialized.get("params") or {}) if version else {}
    try:
        return resolve_params(params, conf)
    except ParamValidationError as exc:
        raise click.ClickException(str(exc))


@dags.command()
@click.argument("dag_id")
@click.argument("logical_date", required=False)
@click.option("--conf", "-c", help="JSON object of params for the run.")
@click.option("--signal", "signal_args", multiple=True, metavar="NAME=JSON",
              help="Send signal NAME with a JSON payload to the run up front (repeatable).")
@output_option
@pass_app
@handle_errors
def test(app: AppContext, dag_id: str, logical_date: str | None, conf: str | None,
         output: str, signal_args: tuple[str, ...] = ()) -> None:
    """Run DAG_ID once, to the end, in this process (no scheduler needed).

    Exits 0 only if the run succeeded. Task logs are in the logs folder; the table shows each
    task's final state.
    """
    from sqlalchemy import select

    from scheduler.loop import trigger_run
    from scheduler.runner import drive_runs
    from scheduler.store import queries
    from scheduler.store.db import session_scope
    from scheduler.store.models import DagRun

    _parse(app)
    _report_import_errors(app)
    conf_dict = _validated_conf(app, dag_id, parse_conf(conf))
    now = datetime.now(UTC)
    logical = parse_datetime(logical_date, "LOGICAL_DATE") or now
    engine = app.engine()
    with session_scope(engine) as session:
        base = f"test__{logical.isoformat()}"
        taken = set(session.scalars(select(DagRun.run_id).where(
            DagRun.dag_id == dag_id, DagRun.run_id.like(base + "%"))))
        run_id, n = base, 1
        while run_id in taken:
            n += 1
            run_id = f"{base}__{n}"
        run = trigger_run(session, dag_id=dag_id, now=now, conf=conf_dict, run_id=run_id,
                          logical_date=logical, run_type="manual", actor="cli")
        session.flush()
        run_pk = run.id
        _send_signals_up_front(session, dag_id, run_id, signal_args, now)
    states = drive_runs(app.settings, engine, [run_pk])
    with session_scope(engine, readonly=True) as session:
        finished = session.get(DagRun, run_pk)
        assert finished is not None
        tis = queries.task_instances(session, finished)
        rows = [{"task_id": t.task_id, "map_index": t.map_index, "state": t.state,
                 "try_number": t.try_number, "start_date": t.start_date,
                 "end_date": t.end_date} for t in tis]
        summary = {"dag_id": dag_id, "run_id": finished.run_id, "state": finished.state,
                   "task_instances": rows}
    if output == "json":
        emit(summary, output)
    else:
        emit(rows, output, title=f"{dag_id} {run_id}: {states[run_pk].value}")
    if states[run_pk].value != "success":
        raise SystemExit(1)


def _send_signals_up_front(session: Any, dag_id: str, run_id: str, args: tuple[str, ...],
                           now: datetime) -> None:
    """``dags test --signal NAME=JSON``: signals kept on the run until its tasks wait."""
    from scheduler.cli.signals import parse_payload
    from scheduler.signals import send_signal

    for arg in args:
        name, sep, payload = arg.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{arg!r} is not NAME=JSON (e.g. approval='{{}}')",
                                     param_hint="--signal")
        send_signal(session, dag_id=dag_id, run_id=run_id, name=name, now=now, actor="cli",
                    payload=parse_payload(payload or "null", "--signal"))


@dags.command("list-runs")
@click.argument("dag_id")
@click.option("--state", help="Only runs in this state.")
@click.option("--limit", type=int, default=None, help="At most this many (newest first).")
@output_option
@pass_app
@handle_errors
def list_runs(app: AppContext, dag_id: str, state: str | None, limit: int | None,
              output: str) -> None:
    """The runs of DAG_ID, newest first, with the version each is pinned to."""
    from scheduler.store import queries
    from scheduler.store.db import session_scope

    with session_scope(app.engine(), readonly=True) as session:
        queries.get_dag(session, dag_id)
        runs = queries.list_runs(session, dag_id, state=state, limit=limit)
        versions = queries.version_labels(session, {r.version_id for r in runs})
        rows = [_run_row(r, versions) for r in runs]
    emit(rows, output, title=f"Runs of {dag_id}")


def _set_paused(app: AppContext, dag_id: str, paused: bool) -> None:
    from scheduler.store import dags as dag_store
    from scheduler.store import queries
    from scheduler.store.db import session_scope
    from scheduler.wakeup import notify

    with session_scope(app.engine()) as session:
        queries.get_dag(session, dag_id)
        dag_store.set_paused(session, dag_id, paused)
    notify(app.settings.home)
    click.echo(f"DAG {dag_id} is {'paused' if paused else 'unpaused'}.")


@dags.command()
@click.argument("dag_id")
@pass_app
@handle_errors
def pause(app: AppContext, dag_id: str) -> None:
    """Stop creating scheduled runs of DAG_ID (manual runs and runs in flight go on)."""
    _set_paused(app, dag_id, True)


@dags.command()
@click.argument("dag_id")
@pass_app
@handle_errors
def unpause(app: AppContext, dag_id: str) -> None:
    """Resume the schedule of DAG_ID."""
    _set_paused(app, dag_id, False)


@dags.command()
@click.argument("dag_id")
@output_option
@pass_app
@handle_errors
def show(app: AppContext, dag_id: str, output: str) -> None:
    """The tasks of DAG_ID (latest version) with their upstream tasks."""
    from scheduler.core.serialized import SerializedDag
    from scheduler.store import queries
    from scheduler.store.db import session_scope
    from scheduler.store.models import DagVersion

    _parse(app)
    with session_scope(app.engine(), readonly=True) as session:
        dag = queries.get_dag(session, dag_id)
        version = session.get(DagVersion, dag.latest_version_id)
        assert version is not None
        sdag = SerializedDag.from_dict(version.serialized)
    rows = [{"task_id": t.task_id, "operator": t.operator, "upstream": list(t.upstream),
             "trigger_rule": t.trigger_rule, "retries": t.retries} for t in sdag.tasks]
    emit(rows, output, title=f"{dag_id} (version {version.version})")

"""``headwater dags backfill`` and ``headwater dags next-run``: the past and the future of a
DAG's schedule. Thin commands over :mod:`scheduler.backfill`."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

import click

from scheduler.cli._common import (
    AppContext,
    emit,
    handle_errors,
    output_option,
    parse_datetime,
    pass_app,
    warn,
)
from scheduler.cli.dags import _parse, _report_import_errors, dags


def _dates(start_date: str, end_date: str) -> tuple[datetime, datetime]:
    start = parse_datetime(start_date, "--start-date")
    end = parse_datetime(end_date, "--end-date")
    assert start is not None and end is not None
    return start, end


class _Bar:
    """The progress bar on stderr: runs done of all, failed, running, elapsed time and ETA."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("runs · [red]{task.fields[failed]} failed[/red] · "
                       "[cyan]{task.fields[running]} running[/cyan]"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False)
        self.task = self.progress.add_task(title, total=None, failed=0, running=0)

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *_: Any) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def update(self, p: Any) -> None:
        # Started on the first report, so an error while planning is not drawn over a bar.
        if not self.progress.live.is_started:
            self.progress.start()
        self.progress.update(self.task, total=p.total, completed=p.done, failed=p.failed,
                             running=p.running)


@dags.command()
@click.argument("dag_id")
@click.option("--start-date", "-s", required=True,
              help="First logical date, inclusive (ISO 8601; a date alone is midnight UTC).")
@click.option("--end-date", "-e", required=True,
              help="Last logical date, inclusive (ISO 8601; a date alone is midnight UTC).")
@click.option("--rerun-failed", is_flag=True,
              help="Clear the failed and upstream_failed tasks of failed runs in the range and "
                   "run them again (on the DAG's latest version).")
@click.option("--max-active-runs", type=click.IntRange(min=1), default=None,
              help="At most this many of the backfill's runs at once (default: the DAG's "
                   "max_active_runs).")
@click.option("--dry-run", is_flag=True, help="Only list the runs, and whether each exists.")
@click.option("--reverse", is_flag=True, help="Start the newest runs first.")
@click.option("--no-wait", is_flag=True,
              help="Create the runs and return; a running `headwater scheduler` runs them.")
@output_option
@pass_app
@handle_errors
def backfill(app: AppContext, dag_id: str, start_date: str, end_date: str, rerun_failed: bool,
             max_active_runs: int | None, dry_run: bool, reverse: bool, no_wait: bool,
             output: str) -> None:
    """Create the runs DAG_ID's schedule has from --start-date to --end-date and run them here.

    Works on paused DAGs and whether or not a scheduler is running (it leaves these runs
    alone). Running the same command again creates nothing new and resumes what is unfinished,
    e.g. after an interrupted backfill. Exits 1 if any run of the range failed.
    """
    from scheduler.backfill import plan_backfill, run_backfill
    from scheduler.store.db import session_scope
    from scheduler.wakeup import notify

    start, end = _dates(start_date, end_date)
    _parse(app)
    _report_import_errors(app)
    engine = app.engine()
    if dry_run:
        with session_scope(engine, readonly=True) as session:
            plan = plan_backfill(session, dag_id, start, end, reverse=reverse)
        emit([p.as_row() for p in plan], output, title=f"Backfill of {dag_id} (dry run)",
             columns=["logical_date", "data_interval_start", "data_interval_end", "exists",
                      "state"])
        if not plan:
            warn(f"The schedule of {dag_id} has no runs from {start.isoformat()} to "
                 f"{end.isoformat()}.")
        return
    bar: AbstractContextManager[Any] = (
        _Bar(f"Backfill {dag_id}") if output != "json" and not no_wait else nullcontext())
    with bar:
        result = run_backfill(
            app.settings, engine, dag_id, start, end, max_active_runs=max_active_runs,
            rerun_failed=rerun_failed, reverse=reverse, wait=not no_wait,
            on_progress=bar.update if isinstance(bar, _Bar) else None)
    if no_wait:
        notify(app.settings.home)
    if output == "json":
        emit(result.as_dict(), output)
    else:
        _summarize(result, start, end)
    if result.failed:
        raise SystemExit(1)


def _summarize(result: Any, start: datetime, end: datetime) -> None:
    summary = result.as_dict()
    if not result.runs:
        warn(f"The schedule of {result.dag_id} has no runs from {start.isoformat()} to "
             f"{end.isoformat()}.")
        return
    if result.failed:
        emit(result.failed, "table", title="Failed runs",
             columns=["run_id", "state", "logical_date", "start_date", "end_date"])
    if not result.waited:
        unfinished = sum(r["state"] in ("queued", "running") for r in result.runs)
        click.echo(f"Backfill of {result.dag_id}: {len(result.runs)} runs "
                   f"({result.created} created); {unfinished} left for the scheduler.")
        return
    click.echo(f"Backfill of {result.dag_id}: {len(result.runs)} runs ({result.created} created, "
               f"{result.reused} resumed, {result.rerun} rerun): {summary['succeeded']} "
               f"succeeded, {summary['failed']} failed.")
    if result.failed:
        click.echo(f"See `headwater tasks states-for-run {result.dag_id} RUN_ID`; rerun the "
                   "failed tasks with this command and --rerun-failed.")


@dags.command("next-run")
@click.argument("dag_id")
@click.option("--count", "-n", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many upcoming runs to show.")
@output_option
@pass_app
@handle_errors
def next_run(app: AppContext, dag_id: str, count: int, output: str) -> None:
    """The next runs DAG_ID's schedule will create: logical date, data interval and the time
    after which each may start."""
    from scheduler.backfill import next_runs
    from scheduler.store.db import session_scope

    _parse(app)
    with session_scope(app.engine(), readonly=True) as session:
        dag, runs = next_runs(session, dag_id, count=count, now=datetime.now(UTC))
        paused = dag.is_paused
    rows = [{"logical_date": r.logical_date, "data_interval_start": r.data_interval.start,
             "data_interval_end": r.data_interval.end, "run_after": r.run_after} for r in runs]
    emit(rows, output, title=f"Next runs of {dag_id}",
         columns=["logical_date", "data_interval_start", "data_interval_end", "run_after"])
    if not runs:
        warn(f"{dag_id} will create no more scheduled runs (no schedule, @once done, or past "
             "its end_date).")
    elif paused:
        warn(f"{dag_id} is paused: these runs are created only once it is unpaused "
             f"(`headwater dags unpause {dag_id}`).")

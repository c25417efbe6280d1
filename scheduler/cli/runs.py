"""``headwater runs``: a run's event history, and compensating a failed run by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from scheduler.cli._common import AppContext, emit, handle_errors, output_option, pass_app

HISTORY_COLUMNS = ["when", "kind", "task_id", "map_index", "try_number", "from_state",
                   "to_state", "reason", "actor"]


@click.group()
def runs() -> None:
    """Inspect and act on single runs."""


@runs.command()
@click.argument("dag_id")
@click.argument("run_id")
@output_option
@pass_app
@handle_errors
def history(app: AppContext, dag_id: str, run_id: str, output: str) -> None:
    """Every state change of RUN_ID and its task instances, oldest first: when, what moved
    from which state to which, on which try, why, and who did it."""
    from scheduler.store import queries
    from scheduler.store.db import session_scope

    with session_scope(app.engine(), readonly=True) as session:
        run = queries.get_run(session, dag_id, run_id)
        rows = [{"when": e.when, "kind": e.kind, "task_id": e.task_id,
                 "map_index": e.map_index, "try_number": e.try_number,
                 "from_state": e.from_state, "to_state": e.to_state, "reason": e.reason,
                 "actor": e.actor} for e in queries.run_events(session, run)]
    emit(rows, output, columns=HISTORY_COLUMNS, title=f"History of {dag_id} {run_id}")


@runs.command()
@click.argument("dag_id")
@click.argument("run_id")
@click.option("--actor", default="cli", show_default=True,
              help="Who asks (recorded in the run's history).")
@pass_app
@handle_errors
def compensate(app: AppContext, dag_id: str, run_id: str, actor: str) -> None:
    """Undo the succeeded steps of the failed run RUN_ID: run the compensations of its
    succeeded tasks (again, for those that failed) in reverse dependency order. A running
    scheduler picks it up at once; the run ends `compensated` or `failed`."""
    from scheduler.sagas import request_compensation
    from scheduler.store import queries
    from scheduler.store.db import session_scope
    from scheduler.wakeup import notify

    with session_scope(app.engine()) as session:
        run = queries.get_run(session, dag_id, run_id)
        count = request_compensation(session, run, actor=actor, now=datetime.now(UTC))
    notify(app.settings.home)
    click.echo(f"Run {run_id} of {dag_id} is compensating: {count} compensation(s) to run.")

"""``headwater signals``: send a signal to a run, list what waits for one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from scheduler.cli._common import AppContext, emit, handle_errors, output_option, pass_app


def parse_payload(value: str | None, param: str = "--payload") -> Any:
    """A signal payload given on the command line: any JSON value (None when absent)."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc}); e.g. '{{\"approved\": true}}'",
                                 param_hint=param)


@click.group()
def signals() -> None:
    """Send signals to runs (human approval, webhooks) and see what waits for one."""


@signals.command()
@click.argument("dag_id")
@click.argument("run_id")
@click.argument("name")
@click.option("--payload", "-p", help="JSON value the waiting task gets as its XCom.")
@click.option("--actor", default="cli", show_default=True,
              help="Who sends it (recorded in the run's history).")
@output_option
@pass_app
@handle_errors
def send(app: AppContext, dag_id: str, run_id: str, name: str, payload: str | None,
         actor: str, output: str) -> None:
    """Send signal NAME to run RUN_ID of DAG_ID: delivered to the run's task waiting for it,
    or kept until one waits."""
    from scheduler.signals import send_signal
    from scheduler.store.db import session_scope
    from scheduler.wakeup import notify

    value = parse_payload(payload)
    with session_scope(app.engine()) as session:
        sig = send_signal(session, dag_id=dag_id, run_id=run_id, name=name, payload=value,
                          actor=actor, now=datetime.now(UTC))
        row = {"dag_id": dag_id, "run_id": run_id, "name": name, "payload": value,
               "delivered": sig.consumed_by_ti_id is not None}
    notify(app.settings.home)
    if output == "json":
        emit(row, output)
    else:
        click.echo(f"Signal {name!r} sent to {dag_id} {run_id}: "
                   + ("delivered." if row["delivered"] else "kept until a task waits for it."))


@signals.command("list")
@output_option
@pass_app
@handle_errors
def list_signals(app: AppContext, output: str) -> None:
    """Task instances waiting for a signal, and signals sent but not delivered yet."""
    from scheduler.signals import pending_signals
    from scheduler.store.db import session_scope

    with session_scope(app.engine(), readonly=True) as session:
        rows = pending_signals(session)
    emit(rows, output, columns=["kind", "dag_id", "run_id", "name", "task_id", "since",
                                "timeout_at", "sent_by"], title="Pending signals")

"""``headwater tasks clear`` and ``headwater tasks render``, added to the ``tasks`` group."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy.orm import Session

from scheduler.cli._common import (
    AppContext,
    emit,
    handle_errors,
    output_option,
    parse_datetime,
    pass_app,
)
from scheduler.cli.tasks import tasks
from scheduler.core.serialized import SerializedDag
from scheduler.core.states import TaskState

_FAILED = {TaskState.FAILED.value, TaskState.UPSTREAM_FAILED.value}


def _closure(start: Iterable[str], edges: Mapping[str, Iterable[str]]) -> set[str]:
    """Every task reachable from ``start`` along ``edges`` (``start`` excluded)."""
    seen: set[str] = set()
    stack = list(start)
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def select_task_ids(sdag: SerializedDag, task_regex: str | None, *, downstream: bool,
                    upstream: bool) -> set[str]:
    """The task ids a clear touches: those matching ``task_regex`` (``re.search``; None means
    every task), plus everything downstream and/or upstream of them, compensations included
    when the task they undo is chosen."""
    all_tasks = [*sdag.tasks, *sdag.compensations]
    try:
        pattern = re.compile(task_regex) if task_regex else None
    except re.error as exc:
        raise click.BadParameter(f"not a valid regular expression ({exc})",
                                 param_hint="--task-regex")
    chosen = {t.task_id for t in all_tasks if pattern is None or pattern.search(t.task_id)}
    if downstream:
        chosen |= _closure(chosen, {t.task_id: t.downstream for t in all_tasks})
    if upstream:
        chosen |= _closure(chosen, {t.task_id: t.upstream for t in all_tasks})
    return chosen


@tasks.command("clear")
@click.argument("dag_id")
@click.option("--run", "run_ids", multiple=True, required=True,
              help="Run id whose task instances to clear (repeatable).")
@click.option("--task-regex", "-t", help="Only tasks whose id matches this regex (re.search).")
@click.option("--downstream", "-d", is_flag=True, help="Also every task downstream of them.")
@click.option("--upstream", "-u", is_flag=True, help="Also every task upstream of them.")
@click.option("--only-failed", "-f", is_flag=True,
              help="Only task instances that failed or are upstream_failed.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="List what would be cleared; change nothing.")
@output_option
@pass_app
@handle_errors
def clear(app: AppContext, dag_id: str, run_ids: tuple[str, ...], task_regex: str | None,
          downstream: bool, upstream: bool, only_failed: bool, yes: bool, dry_run: bool,
          output: str) -> None:
    """Reset task instances of DAG_ID so the scheduler runs them again, as a new try.

    Their runs go back to running (through queued). Prints the task instances cleared.
    """
    from scheduler.store import commands, queries
    from scheduler.store.db import session_scope
    from scheduler.store.models import DagVersion, TaskInstance
    from scheduler.wakeup import notify

    engine = app.engine()

    def pick(session: Session) -> list[tuple[Any, SerializedDag, list[TaskInstance]]]:
        queries.get_dag(session, dag_id)
        picked = []
        for run_id in run_ids:
            run = queries.get_run(session, dag_id, run_id)
            version = session.get(DagVersion, run.version_id)
            assert version is not None
            sdag = SerializedDag.from_dict(version.serialized)
            wanted = select_task_ids(sdag, task_regex, downstream=downstream, upstream=upstream)
            tis = [ti for ti in queries.task_instances(session, run)
                   if ti.task_id in wanted and ti.state != TaskState.NONE.value
                   and (not only_failed or ti.state in _FAILED)]
            picked.append((run, sdag, tis))
        return picked

    def describe(picked: list[tuple[Any, SerializedDag, list[TaskInstance]]]
                 ) -> list[dict[str, Any]]:
        return [{"run_id": run.run_id, "task_id": ti.task_id, "map_index": ti.map_index,
                 "state": ti.state, "try_number": ti.try_number}
                for run, _sdag, tis in picked for ti in tis]

    with session_scope(engine, readonly=True) as session:
        rows = describe(pick(session))
    if not rows:
        if output == "json":
            emit([], output)
        else:
            click.echo("Nothing to clear: no task instance matches.")
        return
    if dry_run:
        emit(rows, output, title="Would clear")
        return
    if not yes:
        emit(rows, "table", title="To clear")
        click.confirm(f"Clear these {len(rows)} task instances?", abort=True, err=True)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        picked = pick(session)  # again, under the write lock: states may have moved
        rows = describe(picked)
        for run, sdag, tis in picked:
            commands.clear_task_instances(session, run, tis, sdag, now=now, actor="cli",
                                          reason="cleared from the CLI")
    notify(app.settings.home)
    emit(rows, output, title="Cleared")


@tasks.command("render")
@click.argument("dag_id")
@click.argument("task_id")
@click.argument("logical_date", required=False)
@output_option
@pass_app
@handle_errors
def render(app: AppContext, dag_id: str, task_id: str, logical_date: str | None,
           output: str) -> None:
    """Show the template fields of TASK_ID rendered for LOGICAL_DATE (default: now).

    Uses the DAG's latest version, and the run's conf and data interval when a run of that
    logical date exists. Nothing runs and nothing is recorded.
    """
    from scheduler.cli.dags import _parse
    from scheduler.tasktest import render_task_fields

    _parse(app)
    fields = render_task_fields(app.settings, app.engine(), dag_id, task_id,
                                parse_datetime(logical_date, "LOGICAL_DATE") or datetime.now(UTC))
    if output == "json":
        emit(fields, output)
        return
    for name, value in fields.items():
        click.echo(f"# ----- {name} -----")
        click.echo(value if isinstance(value, str) else repr(value))

"""``headwater db``: create, upgrade and check the store."""

from __future__ import annotations

import click

from scheduler.cli._common import AppContext, handle_errors, pass_app


@click.group()
def db() -> None:
    """Create, upgrade and check the store's schema."""


@db.command()
@pass_app
@handle_errors
def migrate(app: AppContext) -> None:
    """Create the schema or upgrade it to this version of Headwater (safe to repeat)."""
    from scheduler.store.db import migrate as do_migrate

    before, after = do_migrate(app.engine(ensure=False))
    if before == after:
        click.echo(f"The store is up to date (revision {after}).")
    else:
        click.echo(f"Migrated the store from {before or 'empty'} to revision {after}.")


@db.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
@handle_errors
def reset(app: AppContext, yes: bool) -> None:
    """Drop every table and recreate an empty store. All history is lost."""
    if not yes:
        click.confirm(f"Delete everything in {app.settings.sql_alchemy_conn}?", abort=True)
    from scheduler.store.db import reset as do_reset

    do_reset(app.engine(ensure=False))
    click.echo("The store is empty and at the newest schema.")


@db.command()
@pass_app
@handle_errors
def check(app: AppContext) -> None:
    """Check that the store can be reached and its schema is current (exit 1 if not)."""
    from scheduler.store.db import current_revision, head_revision

    current = current_revision(app.engine())
    head = head_revision()
    if current != head:
        raise click.ClickException(
            f"the store is at revision {current or 'empty'}, Headwater needs {head}: "
            "run `headwater db migrate`")
    click.echo(f"The store is reachable and at revision {head}.")

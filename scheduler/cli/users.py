"""``headwater users``: the people who sign in to the web UI, and their API tokens."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from scheduler.cli._common import AppContext, emit, handle_errors, output_option, pass_app


@click.group()
def users() -> None:
    """Create, list and delete web UI users; make API tokens."""


@users.command()
@click.argument("username")
@click.option("--role", "-r", type=click.Choice(["admin", "operator", "viewer"]),
              required=True, help="admin: everything; operator: run DAGs; viewer: look only.")
@click.option("--password", "-p", help="The password (default: prompt, or generate one with "
                                       "--generate).")
@click.option("--generate", is_flag=True, help="Generate a password and print it once.")
@pass_app
@handle_errors
def create(app: AppContext, username: str, role: str, password: str | None,
           generate: bool) -> None:
    """Add USERNAME with ROLE. Without --password you are asked for one (or, with --generate
    or without a terminal, one is generated and printed once)."""
    from scheduler.store.db import session_scope
    from webui.users import UserError, create_user, generate_password

    printed = None
    if password is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
        if generate or not interactive:
            password = printed = generate_password()
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with session_scope(app.engine()) as session:
            create_user(session, username, password, role, now=datetime.now(UTC))
    except UserError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"User {username} created with role {role}.")
    if printed:
        click.echo(f"Password: {printed}")


@users.command("list")
@output_option
@pass_app
@handle_errors
def list_cmd(app: AppContext, output: str) -> None:
    """The users, with their roles."""
    from scheduler.store.db import session_scope
    from webui.users import list_users

    with session_scope(app.engine(), readonly=True) as session:
        rows = [{"username": u.username, "role": u.role, "active": u.active,
                 "created_at": u.created_at} for u in list_users(session)]
    emit(rows, output, columns=["username", "role", "active", "created_at"], title="Users")


@users.command()
@click.argument("username")
@pass_app
@handle_errors
def delete(app: AppContext, username: str) -> None:
    """Remove USERNAME and its API tokens; its sessions end at their next request."""
    from scheduler.store.db import session_scope
    from webui.users import delete_user

    with session_scope(app.engine()) as session:
        delete_user(session, username)
    click.echo(f"User {username} deleted.")


@users.command()
@click.argument("username")
@click.option("--name", "-n", default="cli", show_default=True, help="What the token is for.")
@pass_app
@handle_errors
def token(app: AppContext, username: str, name: str) -> None:
    """Make an API token for USERNAME and print it (once: only its hash is kept). Scripts send
    it as `Authorization: Bearer TOKEN`."""
    from scheduler.store.db import session_scope
    from webui.users import create_token, get_user

    with session_scope(app.engine()) as session:
        secret = create_token(session, get_user(session, username), name, now=datetime.now(UTC))
    click.echo(secret)

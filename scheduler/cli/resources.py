"""``headwater variables|connections|pools``: list, get, set, delete, import and export.

Thin commands over :mod:`scheduler.store.resources`. Import and export files are JSON objects
keyed by name (Airflow's format); ``-`` as the file means stdin or stdout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
from sqlalchemy.orm import Session

from scheduler.cli._common import AppContext, emit, handle_errors, output_option, pass_app


def _read_document(path: str) -> Any:
    try:
        with click.open_file(path) as fh:
            return json.load(fh)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}")
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{path} is not valid JSON: {exc}")


def _write_document(path: str, document: Any) -> None:
    text = json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"
    try:
        with click.open_file(path, "w") as fh:
            fh.write(text)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}")


def _in_session(app: AppContext, fn: Callable[[Session], Any], *, readonly: bool = False) -> Any:
    from scheduler.store.db import session_scope

    with session_scope(app.engine(), readonly=readonly) as session:
        return fn(session)


def _add_import_export(group: click.Group, noun: str, load: str, dump: str) -> None:
    """``import FILE`` and ``export FILE`` commands of ``group`` over the store functions
    named ``load`` and ``dump`` of :mod:`scheduler.store.resources`."""

    @group.command("import")
    @click.argument("path", metavar="FILE", type=click.Path(allow_dash=True))
    @pass_app
    @handle_errors
    def import_cmd(app: AppContext, path: str) -> None:
        from scheduler.store import resources

        document = _read_document(path)
        count = _in_session(app, lambda s: getattr(resources, load)(s, document))
        click.echo(f"Imported {count} {noun} from {path}.")

    import_cmd.help = f"Create or replace the {noun} of FILE (JSON; - for stdin)."

    @group.command("export")
    @click.argument("path", metavar="FILE", type=click.Path(allow_dash=True))
    @pass_app
    @handle_errors
    def export_cmd(app: AppContext, path: str) -> None:
        from scheduler.store import resources

        document = _in_session(app, getattr(resources, dump), readonly=True)
        _write_document(path, document)
        if path != "-":
            click.echo(f"Exported {len(document)} {noun} to {path}.")

    export_cmd.help = f"Write every {noun[:-1]} to FILE as JSON (- for stdout)."


# --- variables ------------------------------------------------------------------------------


@click.group()
def variables() -> None:
    """Variables: named values that tasks read (``var.value.KEY``, ``var.json.KEY``)."""


@variables.command("list")
@output_option
@pass_app
@handle_errors
def variables_list(app: AppContext, output: str) -> None:
    """Every variable with its value."""
    from scheduler.store import resources

    emit(_in_session(app, resources.list_variables, readonly=True), output,
         columns=["key", "value", "description"], title="Variables")


@variables.command("get")
@click.argument("key")
@output_option
@pass_app
@handle_errors
def variables_get(app: AppContext, key: str, output: str) -> None:
    """Print the value of variable KEY (with -o json: the variable as an object)."""
    from scheduler.store import resources

    row = _in_session(app, lambda s: resources.get_variable(s, key), readonly=True)
    if output == "json":
        emit(row, output)
    else:
        click.echo(row["value"])


@variables.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--description", "-d", help="What the variable is for.")
@click.option("--json", "as_json", is_flag=True,
              help="VALUE is JSON: check it parses and store it normalised.")
@pass_app
@handle_errors
def variables_set(app: AppContext, key: str, value: str, description: str | None,
                  as_json: bool) -> None:
    """Create or replace variable KEY with VALUE."""
    from scheduler.store import resources

    stored: Any = value
    if as_json:
        try:
            stored = json.loads(value)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not valid JSON ({exc})", param_hint="VALUE")
    _in_session(app, lambda s: resources.set_variable(s, key, stored, description=description))
    click.echo(f"Variable {key} set.")


@variables.command("delete")
@click.argument("key")
@pass_app
@handle_errors
def variables_delete(app: AppContext, key: str) -> None:
    """Delete variable KEY."""
    from scheduler.store import resources

    _in_session(app, lambda s: resources.delete_variable(s, key))
    click.echo(f"Variable {key} deleted.")


_add_import_export(variables, "variables", "import_variables", "export_variables")


# --- connections ------------------------------------------------------------------------------


@click.group()
def connections() -> None:
    """Connections: how tasks reach other systems (``conn.ID`` in templates)."""


def _masked(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "password": "***" if row.get("password") else None,
            "extra": json.dumps(row["extra"]) if row.get("extra") else None}


_CONN_COLUMNS = ["conn_id", "conn_type", "host", "port", "schema", "login", "password", "extra"]


@connections.command("list")
@output_option
@pass_app
@handle_errors
def connections_list(app: AppContext, output: str) -> None:
    """Every connection (the table hides passwords; JSON shows them)."""
    from scheduler.store import resources

    rows = _in_session(app, resources.list_connections, readonly=True)
    emit(rows if output == "json" else [_masked(r) for r in rows], output,
         columns=_CONN_COLUMNS, title="Connections")


@connections.command("get")
@click.argument("conn_id")
@output_option
@pass_app
@handle_errors
def connections_get(app: AppContext, conn_id: str, output: str) -> None:
    """Show connection CONN_ID (the table hides its password; JSON shows it)."""
    from scheduler.store import resources

    row = _in_session(app, lambda s: resources.get_connection(s, conn_id), readonly=True)
    emit(row if output == "json" else _masked(row), output, columns=_CONN_COLUMNS)


@connections.command("set")
@click.argument("conn_id")
@click.option("--conn-uri", help="All fields as a URI: TYPE://LOGIN:PASSWORD@HOST:PORT/SCHEMA"
                                 "?extra_key=value. Other options override its parts.")
@click.option("--conn-type", help="e.g. postgres, http, s3 (required without --conn-uri).")
@click.option("--host")
@click.option("--schema")
@click.option("--login")
@click.option("--password")
@click.option("--port", type=int)
@click.option("--extra", help="JSON object of extra settings.")
@pass_app
@handle_errors
def connections_set(app: AppContext, conn_id: str, conn_uri: str | None, conn_type: str | None,
                    host: str | None, schema: str | None, login: str | None,
                    password: str | None, port: int | None, extra: str | None) -> None:
    """Create or replace connection CONN_ID."""
    from scheduler.store import resources

    fields: dict[str, Any] = resources.parse_connection_uri(conn_uri) if conn_uri else {}
    given = {"conn_type": conn_type, "host": host, "schema": schema, "login": login,
             "password": password, "port": port, "extra": extra}
    fields.update({k: v for k, v in given.items() if v is not None})
    _in_session(app, lambda s: resources.set_connection(s, conn_id, fields))
    click.echo(f"Connection {conn_id} set.")


@connections.command("delete")
@click.argument("conn_id")
@pass_app
@handle_errors
def connections_delete(app: AppContext, conn_id: str) -> None:
    """Delete connection CONN_ID."""
    from scheduler.store import resources

    _in_session(app, lambda s: resources.delete_connection(s, conn_id))
    click.echo(f"Connection {conn_id} deleted.")


_add_import_export(connections, "connections", "import_connections", "export_connections")


# --- pools --------------------------------------------------------------------------------------


@click.group()
def pools() -> None:
    """Pools: limits on how many task instances of a kind run at once (``pool=`` on a task)."""


@pools.command("list")
@output_option
@pass_app
@handle_errors
def pools_list(app: AppContext, output: str) -> None:
    """Every pool with its slots."""
    from scheduler.store import resources

    emit(_in_session(app, resources.list_pools, readonly=True), output,
         columns=["name", "slots", "description"], title="Pools")


@pools.command("get")
@click.argument("name")
@output_option
@pass_app
@handle_errors
def pools_get(app: AppContext, name: str, output: str) -> None:
    """Show pool NAME."""
    from scheduler.store import resources

    emit(_in_session(app, lambda s: resources.get_pool(s, name), readonly=True), output,
         columns=["name", "slots", "description"])


@pools.command("set")
@click.argument("name")
@click.argument("slots", type=int)
@click.option("--description", "-d", help="What the pool limits.")
@pass_app
@handle_errors
def pools_set(app: AppContext, name: str, slots: int, description: str | None) -> None:
    """Create pool NAME with SLOTS slots, or resize it."""
    from scheduler.store import resources
    from scheduler.wakeup import notify

    _in_session(app, lambda s: resources.set_pool(s, name, slots, description=description))
    notify(app.settings.home)  # more slots may let waiting task instances start now
    click.echo(f"Pool {name} set to {slots} slots.")


@pools.command("delete")
@click.argument("name")
@pass_app
@handle_errors
def pools_delete(app: AppContext, name: str) -> None:
    """Delete pool NAME (not the default pool)."""
    from scheduler.store import resources

    _in_session(app, lambda s: resources.delete_pool(s, name))
    click.echo(f"Pool {name} deleted.")


_add_import_export(pools, "pools", "import_pools", "export_pools")


def register(main: click.Group) -> None:
    """Add the ``variables``, ``connections`` and ``pools`` groups to ``main``."""
    for group in (variables, connections, pools):
        main.add_command(group)

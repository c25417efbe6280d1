"""What every command shares: settings, the store, output as tables or JSON, errors."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import click
from sqlalchemy.engine import Engine

from scheduler.config import ConfigError, Settings, load_settings
from scheduler.errors import HeadwaterError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    settings: Settings
    _engine: Engine | None = None

    def engine(self, *, ensure: bool = True) -> Engine:
        """The store's engine; an empty store gets its schema on first use."""
        if self._engine is None:
            from scheduler.store.db import ensure_schema, make_engine

            self._engine = make_engine(self.settings.sql_alchemy_conn)
            if ensure:
                ensure_schema(self._engine)
        return self._engine


def get_app(ctx: click.Context) -> AppContext:
    app = ctx.find_object(AppContext)
    if app is None:
        try:
            app = AppContext(load_settings())
        except ConfigError as exc:
            raise click.ClickException(str(exc))
        ctx.obj = app
    return app


pass_app = click.make_pass_decorator(AppContext, ensure=False)


def handle_errors(fn: F) -> F:
    """Turn Headwater's errors into a clean message and exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HeadwaterError as exc:
            raise click.ClickException(str(exc))

    return wrapper  # type: ignore[return-value]


output_option = click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True,
    help="Print a table for people or JSON for scripts.")


def to_jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def emit(rows: Sequence[dict[str, Any]] | dict[str, Any], output: str,
         columns: Sequence[str] | None = None, title: str | None = None) -> None:
    """Print ``rows`` as JSON (a list, or an object for one dict) or as a rich table."""
    if output == "json":
        click.echo(json.dumps(to_jsonable(rows), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    items = [rows] if isinstance(rows, dict) else list(rows)
    cols = list(columns or (items[0].keys() if items else []))
    table = Table(title=title, show_lines=False)
    for col in cols:
        table.add_column(col)
    for item in items:
        table.add_row(*[_cell(item.get(c)) for c in cols])
    # Piped into a file or another program, a table keeps its full width instead of folding
    # every cell to fit 80 columns.
    width = None if sys.stdout.isatty() else 250
    Console(soft_wrap=True, width=width).print(table)


_STATE_STYLE = {"success": "green", "failed": "red", "upstream_failed": "dark_orange",
                "running": "cyan", "queued": "grey70", "scheduled": "tan",
                "up_for_retry": "gold3", "skipped": "magenta"}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    text = str(value)
    style = _STATE_STYLE.get(text)
    return f"[{style}]{text}[/{style}]" if style else text.replace("[", r"\[")


def parse_datetime(value: str | None, param: str = "date") -> datetime | None:
    """ISO 8601; a date alone means midnight UTC; naive times are UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or datetime "
                                 "(e.g. 2024-01-31 or 2024-01-31T06:00:00+00:00)",
                                 param_hint=param)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_conf(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        conf = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint="--conf")
    if not isinstance(conf, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"n\": 3}'", param_hint="--conf")
    return conf


def warn(message: str) -> None:
    click.echo(message, err=True)


def exit_with(code: int) -> None:
    sys.exit(code)

"""Settings: built once at an entry point (CLI, app factory) and passed down, never read at import.

Sources, later ones winning: built-in defaults, ``$HEADWATER_HOME/headwater.toml``, and environment
variables ``HEADWATER__SECTION__KEY`` (e.g. ``HEADWATER__CORE__EXECUTOR=sequential``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from scheduler.errors import HeadwaterError

#: (section, key) -> Settings field name. The section/key pairs are the documented config keys.
_KEYS: dict[tuple[str, str], str] = {
    ("core", "dags_folder"): "dags_folder",
    ("core", "plugins_folder"): "plugins_folder",
    ("core", "executor"): "executor",
    ("core", "parallelism"): "parallelism",
    ("core", "dags_are_paused_at_creation"): "dags_are_paused_at_creation",
    ("core", "dag_file_processor_timeout"): "parse_timeout",
    ("core", "xcom_max_size"): "xcom_max_size",
    ("database", "sql_alchemy_conn"): "sql_alchemy_conn",
    ("celery", "broker_url"): "broker_url",
    ("webserver", "host"): "web_host",
    ("webserver", "port"): "web_port",
    ("webserver", "secret_key"): "secret_key",
    ("scheduler", "task_heartbeat_timeout"): "task_heartbeat_timeout",
    ("scheduler", "heartbeat_interval"): "heartbeat_interval",
    ("scheduler", "dag_dir_list_interval"): "dag_dir_list_interval",
    ("scheduler", "scheduler_heartbeat_timeout"): "scheduler_heartbeat_timeout",
    ("logging", "base_log_folder"): "base_log_folder",
}


class ConfigError(HeadwaterError):
    """The configuration file or an environment override cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Every setting Headwater reads. Paths are absolute."""

    home: Path
    dags_folder: Path
    plugins_folder: Path
    base_log_folder: Path
    sql_alchemy_conn: str
    executor: str = "local"
    parallelism: int = 2 * (os.cpu_count() or 1)
    dags_are_paused_at_creation: bool = False
    parse_timeout: float = 30.0
    xcom_max_size: int = 64 * 1024
    broker_url: str = "redis://127.0.0.1:6379/0"
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    secret_key: str = ""
    task_heartbeat_timeout: float = 30.0
    heartbeat_interval: float = 5.0
    dag_dir_list_interval: float = 5.0
    scheduler_heartbeat_timeout: float = 30.0

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def default_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HEADWATER_HOME") or Path.home() / "headwater").expanduser().resolve()


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            return str(value).strip().lower() in {"1", "true", "yes", "on"}
        if kind == "Path":
            return Path(str(value)).expanduser()
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r} has value {value!r}, which is not a valid {kind}")
    return str(value)


def load_settings(
    home: Path | str | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings for ``home`` (default ``$HEADWATER_HOME`` or ``~/headwater``).

    Raises :class:`ConfigError` naming the file or variable when a value is unusable.
    """
    env = os.environ if env is None else env
    home_path = Path(home).expanduser().resolve() if home else default_home(env)
    values: dict[str, Any] = {}

    toml_path = home_path / "headwater.toml"
    if toml_path.exists():
        try:
            data = tomllib.loads(toml_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path}: {exc}. Fix the TOML syntax of that line.")
        for section, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{toml_path}: [{section}] must be a table of keys")
            for key, value in table.items():
                name = _KEYS.get((section, key))
                if name is None:
                    known = ", ".join(f"[{s}] {k}" for s, k in _KEYS)
                    raise ConfigError(f"{toml_path}: unknown key [{section}] {key}. Known: {known}")
                values[name] = _coerce(name, value)

    for var, value in env.items():
        if not var.startswith("HEADWATER__"):
            continue
        parts = var.split("__")
        if len(parts) != 3:
            raise ConfigError(f"{var}: expected HEADWATER__SECTION__KEY")
        name = _KEYS.get((parts[1].lower(), parts[2].lower()))
        if name is None:
            raise ConfigError(f"environment variable {var} names no known setting")
        values[name] = _coerce(name, value)

    def path(name: str, default: Path) -> Path:
        p = Path(values.pop(name, default))
        return (p if p.is_absolute() else home_path / p).resolve()

    dags = path("dags_folder", home_path / "dags")
    plugins = path("plugins_folder", home_path / "plugins")
    logs = path("base_log_folder", home_path / "logs")
    conn = values.pop("sql_alchemy_conn", f"sqlite:///{home_path / 'headwater.db'}")
    executor = values.get("executor", "local")
    if executor not in {"local", "celery", "sequential"}:
        raise ConfigError(
            f"[core] executor is {executor!r}; use one of local, celery, sequential"
        )
    return Settings(
        home=home_path,
        dags_folder=dags,
        plugins_folder=plugins,
        base_log_folder=logs,
        sql_alchemy_conn=conn,
        **values,
    )

"""Engines, sessions and schema upgrades.

SQLite runs in WAL mode with ``synchronous=NORMAL`` and every write transaction begins with
``BEGIN IMMEDIATE``: several processes (scheduler, workers, web server) write to one file, and a
deferred transaction that reads first and writes later can fail with "database is locked" without
waiting. An immediate transaction takes the write lock up front and waits for it
(``busy_timeout``). Read-only sessions (``session_scope(engine, readonly=True)``) begin deferred
and never block writers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from scheduler.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_READONLY = "headwater_readonly"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for ``url``; for SQLite also create the folder of the file."""
    if url.startswith("mysql") or url.startswith("mariadb"):
        raise StoreError(
            f"{url.split(':', 1)[0]} is not supported as Headwater's store; use SQLite (default) "
            "or PostgreSQL (postgresql+psycopg://user@host/db)"
        )
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)
        _setup_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own transaction handling is deferred-only).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # Readers never wait in WAL mode; writers wait in _begin_immediate, not in SQLite's busy
        # handler, whose sleeps grow to 100 ms and would dominate a task's latency.
        cur.execute(f"PRAGMA busy_timeout={_READ_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(_READONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            _begin_immediate(conn.connection.dbapi_connection)


_READ_BUSY_TIMEOUT_MS = 60_000
_WRITE_LOCK_TIMEOUT_S = 60.0


def _begin_immediate(dbapi_conn: Any) -> None:
    """Take SQLite's write lock, retrying with short sleeps (50 µs growing to 2 ms) for up to a
    minute: a waiting writer gets the lock within about a millisecond of its release."""
    import sqlite3
    import time

    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=0")
        deadline = time.monotonic() + _WRITE_LOCK_TIMEOUT_S
        delay = 0.00005
        while True:
            try:
                cur.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.002)
    finally:
        cur.execute(f"PRAGMA busy_timeout={_READ_BUSY_TIMEOUT_MS}")
        cur.close()


_factories: dict[tuple[int, bool], sessionmaker[Session]] = {}


@contextmanager
def session_scope(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """A session whose transaction commits when the block ends and rolls back on error."""
    key = (id(engine), readonly)
    factory = _factories.get(key)
    if factory is None:
        bind = engine.execution_options(**{_READONLY: True}) if readonly else engine
        factory = sessionmaker(bind=bind, expire_on_commit=False)
        _factories[key] = factory
    session = factory()
    try:
        yield session
        if not readonly:
            session.commit()
        # A read-only session ends at close(), which keeps loaded objects usable (detached).
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision of the store, or None when the store is empty."""
    if not inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        conn.rollback()
    return row[0] if row else None


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migration at a time: processes started together (a scheduler and a CLI command on a
    fresh store) must not both create the tables."""
    if engine.dialect.name == "sqlite":
        import fcntl

        path = engine.url.database
        if not path or path == ":memory:":
            yield
            return
        with open(f"{path}.migrate-lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    elif engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(7300101)")
            conn.commit()
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(7300101)")
                conn.commit()
    else:
        yield


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; safe to repeat and to run from several
    processes at once. Returns (before, after)."""
    from alembic import command

    with _migration_lock(engine):
        before = current_revision(engine)
        _refuse_unknown(before)
        command.upgrade(_alembic_config(engine), "head")
    return before, head_revision()


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}


def _refuse_unknown(revision: str | None) -> None:
    if revision is not None and revision not in known_revisions():
        raise StoreError(
            f"the store's schema is at revision {revision}, which this Headwater does not know "
            "(was it created by a newer Headwater?). Use that newer Headwater with this store, "
            "or point [database] sql_alchemy_conn at another one")


def ensure_schema(engine: Engine) -> None:
    """Create the schema of an empty store; refuse an older one (``db migrate`` upgrades it)."""
    current = current_revision(engine)
    if current is None:
        migrate(engine)
        return
    head = head_revision()
    _refuse_unknown(current)
    if current != head:
        raise StoreError(
            f"the store's schema is at revision {current}, this Headwater needs {head}. "
            "Run `headwater db migrate` to upgrade it."
        )


def reset(engine: Engine) -> None:
    """Drop every table and create the schema afresh."""
    from scheduler.store.models import Base

    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    migrate(engine)

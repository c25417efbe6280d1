"""Engines, sessions and schema upgrades.

SQLite runs in WAL mode with ``synchronous=NORMAL`` and every write transaction begins with
``BEGIN IMMEDIATE``: several processes (scheduler, workers, web server) write to one file, and a
deferred transaction that reads first and writes later can fail with "database is locked" without
waiting. An immediate transaction takes the write lock up front and waits for it
(``busy_timeout``). Read-only sessions (``session_scope(engine, readonly=True)``) begin deferred
and never block writers.

PostgreSQL (``postgresql+psycopg://user:pass@host/db``; ``postgresql://`` and ``postgres://`` are
read as psycopg 3) gets a small pool with ``pool_pre_ping`` and TCP keepalives, and every new
connection is retried with exponential backoff for up to :data:`CONNECT_RETRY_SECONDS`: while the
server restarts (or a network path is cut) a process waits for it instead of crashing, and a dead
pooled connection is replaced at checkout. A connection that dies in the middle of a transaction
still raises; :func:`is_disconnect` tells callers (the scheduling loop, the Celery task) that the
error is one to retry after :func:`backoff_delays`.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from scheduler.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_READONLY = "headwater_readonly"
log = logging.getLogger("headwater.store")

#: How long a process keeps retrying to open a connection to PostgreSQL before giving up.
CONNECT_RETRY_SECONDS = 120.0
#: PostgreSQL pool: enough for a scheduler (loop, housekeeping) or a worker process; each
#: process (scheduler, Celery pool child, gunicorn worker) has its own pool.
PG_POOL_SIZE = 5
PG_MAX_OVERFLOW = 10
PG_POOL_RECYCLE_SECONDS = 1800


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for ``url``; for SQLite also create the folder of the file."""
    if url.startswith("mysql") or url.startswith("mariadb"):
        raise StoreError(
            f"{url.split(':', 1)[0]} is not supported as Headwater's store; use SQLite (default) "
            "or PostgreSQL (postgresql+psycopg://user@host/db)"
        )
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)
        _setup_sqlite(engine)
        if path and path != ":memory:":
            track_before_fork(engine)
        return engine
    if url.startswith("postgresql"):
        return _make_pg_engine(url, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def normalize_url(url: str) -> str:
    """Read ``postgresql://`` and ``postgres://`` as psycopg 3 (the driver Headwater ships);
    refuse psycopg2, which is not installed, with the URL to use instead."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith("postgresql+psycopg2"):
        raise StoreError(
            "the store URL names psycopg2, which Headwater does not use; write "
            "postgresql+psycopg://" + url.split("://", 1)[-1])
    return url


#: libpq options of every connection Headwater opens to PostgreSQL (pooled or LISTEN).
PG_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "application_name": "headwater",
    # Notice a dead server or a cut path within about a minute even on an idle socket.
    "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
}


def _make_pg_engine(url: str, **kwargs: Any) -> Engine:
    connect_retry = float(kwargs.pop("connect_retry", CONNECT_RETRY_SECONDS))
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", PG_POOL_SIZE)
    kwargs.setdefault("max_overflow", PG_MAX_OVERFLOW)
    kwargs.setdefault("pool_recycle", PG_POOL_RECYCLE_SECONDS)
    connect_args = dict(PG_CONNECT_ARGS)
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "do_connect")
    def _connect_with_backoff(dialect: Any, _rec: Any, cargs: Any, cparams: Any) -> Any:
        deadline = time.monotonic() + connect_retry
        delays = backoff_delays()
        while True:
            try:
                return dialect.loaded_dbapi.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                delay = next(delays)
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("cannot reach PostgreSQL at %s (%s); retrying in %.1f s",
                            make_url(url).render_as_string(hide_password=True),
                            str(exc).strip().splitlines()[0] if str(exc).strip() else exc, delay)
                time.sleep(delay)

    return engine


def backoff_delays(first: float = 0.1, cap: float = 5.0) -> Iterator[float]:
    """Exponential backoff delays (first, 2×first, ... up to ``cap``), with ±20 % jitter so
    that processes cut off together do not all come back in the same instant."""
    import random

    delay = first
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * 2, cap)


def is_disconnect(exc: BaseException) -> bool:
    """True when ``exc`` means the store could not be reached or the connection died (worth
    retrying once it is back), False for errors of the statement itself."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        name = type(orig).__name__ if orig is not None else ""
        return name in {"OperationalError", "InterfaceError", "AdminShutdown"} or (
            orig is not None and type(orig).__module__.startswith("psycopg")
            and "connection" in str(orig).lower())
    return False


#: This process's SQLite engines (on a file), whose idle connections are closed before a fork.
#: None in a fork server (:func:`untrack_all_before_fork`).
_sqlite_engines: weakref.WeakSet[Engine] | None = weakref.WeakSet()


def track_before_fork(engine: Engine) -> None:
    """Close the idle connections of ``engine`` (SQLite) before each fork of this process."""
    global _sqlite_engines
    if _sqlite_engines is None:
        _sqlite_engines = weakref.WeakSet()
    _sqlite_engines.add(engine)


def untrack_all_before_fork() -> None:
    """For a fork server, which holds no connection and forks once per attempt: skip the walk
    of :func:`_close_sqlite_before_fork` over the engines and their pools (locks, queue sizes)
    before every fork. An engine its children make (or take over: :func:`track_before_fork`)
    is tracked again."""
    global _sqlite_engines
    _sqlite_engines = None


def _close_sqlite_before_fork() -> None:
    """Close this process's idle SQLite connections before it forks (an ``os.fork`` hook).

    Why. SQLite keeps the bookkeeping of its file locks per process, and a child forked while
    its parent holds a connection to a file inherits that bookkeeping but not the locks (POSIX
    locks are not inherited). The child's own connections to the file then believe they hold
    the shared lock that tells every process the write-ahead log is in use, and never take it.
    While the parent lives, its lock covers them. Once it dies (a scheduler killed with
    ``kill -9`` leaves its workers running), the next process to close its last connection
    sees no holder, checkpoints the log and deletes it, and the child's later commits go to
    the deleted file: finished tasks lost and run again. With no connection open at the fork,
    the child starts SQLite afresh and takes the lock itself. Forks happen when processes start
    (workers, fork servers, the DAG processor), not per task, so the reconnection is cheap.
    """
    if _sqlite_engines is None:
        return
    for engine in list(_sqlite_engines):
        pool = engine.pool
        if not isinstance(pool, QueuePool):
            continue  # (NullPool keeps no connection; the in-memory pools are not forked)
        if pool.checkedout():
            log.warning("forking while a connection to %s is in use: a child's store writes "
                        "could be lost if this process dies first", engine.url.database)
        if pool.checkedin():
            engine.dispose()  # closes the idle connections (a fresh pool replaces them)


os.register_at_fork(before=_close_sqlite_before_fork)


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's own transaction handling is deferred-only).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # Readers never wait in WAL mode; writers wait in _begin_immediate, not in SQLite's busy
        # handler, whose sleeps grow to 100 ms and would dominate a task's latency. Set first:
        # the statements below may wait for a lock too.
        cur.execute(f"PRAGMA busy_timeout={_READ_BUSY_TIMEOUT_MS}")
        # The mode is stored in the file: set it once. (Setting it again on every connection
        # asks for a lock, and failed with "database is locked" while a scheduler started.)
        if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
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


#: The schema revision this code works with: the head of store/migrations. Written out so that
#: every process start (each CLI command, the scheduler) checks the store without loading the
#: migration scripts (170 ms); tests/store/test_schema.py checks it against them.
SCHEMA_REVISION = "0003"


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
    if current == SCHEMA_REVISION:
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

"""Throw-away PostgreSQL databases for tests: each test gets its own, dropped at the end, so
test runs (and engineers running tests at the same time) never see each other's data.

The server is ``HEADWATER_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``, the
maintenance database to connect to while creating and dropping).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def admin_url() -> str:
    return os.environ.get("HEADWATER_TEST_PG", DEFAULT_ADMIN_URL)


def _server_part(url: str) -> str:
    """The URL without its database name."""
    return url.rsplit("/", 1)[0]


def create_database(prefix: str = "hw_test") -> tuple[str, str]:
    """Create an empty database; returns (its name, its psycopg 3 SQLAlchemy URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    server = _server_part(admin_url()).replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{server}/{name}"


def drop_database(name: str) -> None:
    """Drop it, disconnecting whoever is still connected (a process the test killed)."""
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@contextmanager
def temporary_database(prefix: str = "hw_test") -> Iterator[str]:
    """A fresh database for the block; yields its URL."""
    name, url = create_database(prefix)
    try:
        yield url
    finally:
        drop_database(name)


def available() -> bool:
    try:
        with psycopg.connect(admin_url(), autocommit=True, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False

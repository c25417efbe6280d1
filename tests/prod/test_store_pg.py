"""The store on PostgreSQL (psycopg 3): migrations, URL handling, reconnect helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError

from scheduler.errors import StoreError
from scheduler.store.db import (
    backoff_delays,
    current_revision,
    head_revision,
    is_disconnect,
    make_engine,
    migrate,
    normalize_url,
)
from scheduler.store.models import Base


@pytest.mark.slow
@pytest.mark.parametrize("store", ["postgresql", "sqlite"])
def test_every_migration_runs_and_repeating_is_a_no_op(request, store, tmp_path: Path) -> None:
    url = (request.getfixturevalue("pg_url") if store == "postgresql"
           else f"sqlite:///{tmp_path / 'hw.db'}")
    engine = make_engine(url)
    try:
        assert current_revision(engine) is None
        assert migrate(engine) == (None, head_revision())
        assert migrate(engine) == (head_revision(), head_revision())
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
    finally:
        engine.dispose()


def test_plain_postgresql_urls_mean_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(StoreError, match=r"postgresql\+psycopg://u@h/db"):
        normalize_url("postgresql+psycopg2://u@h/db")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "mariadb+pymysql://u@h/db"])
def test_mysql_and_mariadb_are_refused_with_what_to_use(url: str) -> None:
    with pytest.raises(StoreError, match="PostgreSQL"):
        make_engine(url)


def test_unreachable_server_is_retried_then_reported_as_a_disconnect() -> None:
    # Port 9 on loopback: nothing listens, so every connection is refused at once.
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/x", connect_retry=0.5)
    try:
        with pytest.raises(OperationalError) as info:
            engine.connect()
        assert is_disconnect(info.value)
    finally:
        engine.dispose()


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    delays = backoff_delays(first=0.1, cap=1.0)
    values = [next(delays) for _ in range(8)]
    assert 0.08 <= values[0] <= 0.12
    assert all(0.8 <= v <= 1.2 for v in values[5:])
    assert values[3] > values[0]

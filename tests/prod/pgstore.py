"""pytest plugin: run any test that uses the ``env`` fixture against a PostgreSQL store.

Load it with ``-p tests.prod.pgstore`` and choose the store with ``--store postgresql`` (or
``HEADWATER_TEST_DB=postgresql``)::

    HEADWATER_TEST_DB=postgresql .venv/bin/python -m pytest -p tests.prod.pgstore tests/e2e

Each test then gets a database of its own (``CREATE DATABASE hw_test_<random>``), named in its
``env`` (``HEADWATER__DATABASE__SQL_ALCHEMY_CONN``) and so in its ``settings``, every
``headwater`` process it starts, and its ``engine``; the database is dropped when the test ends.
Tests that do not use ``env`` never touch the store under test: on PostgreSQL they would only
repeat their SQLite run, so they are deselected (and counted as such in the summary).
Without the option the plugin does nothing, and tests run on their SQLite file as always.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.prod import pg

STORE_VAR = "HEADWATER__DATABASE__SQL_ALCHEMY_CONN"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store", choices=["sqlite", "postgresql"],
        default=os.environ.get("HEADWATER_TEST_DB", "sqlite") or "sqlite",
        help="the store tests run against (default: $HEADWATER_TEST_DB or sqlite)")


def pytest_report_header(config: pytest.Config) -> str:
    return f"headwater store under test: {config.getoption('--store')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--store") != "postgresql":
        return
    keep = [item for item in items if "env" in getattr(item, "fixturenames", ())]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


@pytest.fixture(autouse=True)
def _store_under_test(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.config.getoption("--store") != "postgresql" or "env" not in request.fixturenames:
        yield
        return
    env = request.getfixturevalue("env")
    name, url = pg.create_database()
    env[STORE_VAR] = url
    try:
        yield
    finally:
        pg.drop_database(name)

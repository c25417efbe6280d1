"""Shared fixtures: every test gets its own HEADWATER_HOME, settings passed in, not patched."""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from scheduler.config import Settings, load_settings
from scheduler.store.db import ensure_schema, make_engine

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _close_in_process_stores() -> Iterator[None]:
    """Close what the read-only commands run in the test's process opened
    (``tests.e2e.procs.hw``), once the test and its processes are done."""
    yield
    from tests.e2e.procs import close_in_process_stores

    close_in_process_stores()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "dags").mkdir()
    (tmp_path / "plugins").mkdir()
    return tmp_path


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """The environment a headwater process of this test runs with."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER")}
    base.update({
        "HEADWATER_HOME": str(home),
        "HEADWATER__CORE__PARALLELISM": "4",
        "HEADWATER__SCHEDULER__DAG_DIR_LIST_INTERVAL": "0.5",
        "HEADWATER__SCHEDULER__HEARTBEAT_INTERVAL": "1",
    })
    return base


@pytest.fixture
def settings(home: Path, env: dict[str, str]) -> Settings:
    overrides = {k: v for k, v in env.items() if k.startswith("HEADWATER__")}
    return load_settings(home=home, env=overrides)


@pytest.fixture(scope="session")
def empty_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite store at the head of the migrations, made once per session; a test's
    SQLite store starts as a copy (running the migrations costs about 0.1 s a test)."""
    path = tmp_path_factory.mktemp("store-template") / "headwater.db"
    eng = make_engine(f"sqlite:///{path}")
    ensure_schema(eng)
    eng.dispose()
    assert not path.with_name(path.name + "-wal").exists(), "the template is not checkpointed"
    return path


def open_store(settings: Settings, template: Path) -> Engine:
    """The engine of ``settings``' store, with its schema: a SQLite store not created yet is
    copied from ``template``; any other store is migrated."""
    url = settings.sql_alchemy_conn
    if url.startswith("sqlite:///"):
        path = Path(url.split("///", 1)[1])
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template, path)
    eng = make_engine(url)
    ensure_schema(eng)  # checks the copy's revision (the same check every command makes)
    return eng


@pytest.fixture
def engine(settings: Settings, empty_store_template: Path) -> Iterator[Engine]:
    eng = open_store(settings, empty_store_template)
    yield eng
    eng.dispose()


@pytest.fixture
def write_dag(home: Path) -> Callable[[str, str], Path]:
    """Write a DAG file (dedented) into the test's DAGs folder; returns its path."""

    def _write(name: str, source: str) -> Path:
        path = home / "dags" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())
        # Make sure a rewrite within the same mtime tick is still seen as a change.
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        return path

    return _write


@pytest.fixture
def scheduler(env: dict[str, str], home: Path) -> Iterator[Any]:
    """A `headwater scheduler` on the test's home, stopped at the end."""
    from tests.e2e.procs import Service

    svc = Service(env, "scheduler", log=home / "scheduler.log")
    yield svc
    svc.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
             message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)

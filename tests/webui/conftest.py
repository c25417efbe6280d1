"""Fixtures for the web UI: a temporary store filled through the store's own functions.

Tests reach the helpers through the ``store`` fixture (``store.T0``, ``store.etl_dag``), never
by importing this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from scheduler.config import Settings, load_settings
from scheduler.core.serialized import SerializedDag
from scheduler.core.states import RunState, TaskState
from scheduler.store import commands
from scheduler.store.dags import record_dag
from scheduler.store.db import session_scope
from scheduler.store.models import DagRun, TaskInstance
from tests.conftest import open_store
from webui import create_app

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def etl_dag(dag_id: str = "etl", **extra: Any) -> dict[str, Any]:
    """A serialized DAG (docs/internals.md shape) with tasks extract -> transform -> load."""
    return {
        "dag_id": dag_id, "fileloc": f"/dags/{dag_id}.py", "schedule": None,
        "timezone": "UTC", "start_date": None, "description": "Nightly load", "tags": ["team-a"],
        "tasks": [
            {"task_id": "extract", "upstream": [], "downstream": ["transform"], "retries": 1},
            {"task_id": "transform", "upstream": ["extract"], "downstream": ["load"]},
            {"task_id": "load", "upstream": ["transform"], "downstream": []},
        ],
        **extra,
    }


class StoreFiller:
    """Puts DAGs, runs and attempts in the store through the store's commands."""

    T0 = T0
    etl_dag = staticmethod(etl_dag)

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.versions: dict[str, int] = {}
        self.dags: dict[str, dict[str, Any]] = {}

    def dag(self, serialized: dict[str, Any] | None = None) -> str:
        serialized = serialized or etl_dag()
        with session_scope(self.engine) as session:
            version = record_dag(session, serialized, "# source", now=T0,
                                 paused_by_default=False)
            session.flush()
            self.versions[serialized["dag_id"]] = version.id
        self.dags[serialized["dag_id"]] = serialized
        return str(serialized["dag_id"])

    def run(self, dag_id: str, run_id: str, logical_date: datetime,
            states: dict[str, TaskState] | None = None) -> int:
        """Create a manual run and walk its task instances to ``states`` (legal steps only)."""
        sdag = SerializedDag.from_dict(self.dags[dag_id])
        with session_scope(self.engine) as session:
            run = commands.create_run(
                session, dag=sdag, version_id=self.versions[dag_id], run_id=run_id,
                run_type="manual", logical_date=logical_date, data_interval=None,
                run_after=logical_date, conf={"n": 1}, now=logical_date, actor="test")
            session.flush()
            run_pk = run.id
            if states:
                commands.set_run_state(session, run, RunState.RUNNING, now=logical_date,
                                       reason="test", actor="test")
        for task_id, state in (states or {}).items():
            self.walk(run_pk, task_id, state, logical_date)
        return run_pk

    def walk(self, run_pk: int, task_id: str, state: TaskState, when: datetime, *,
             log_path: str | None = None, xcoms: dict[str, Any] | None = None,
             error: str | None = None) -> TaskState | None:
        """Move a task instance through scheduled -> queued -> running (an attempt with
        ``log_path``), stopping at ``state`` if it is one of those, else ending the attempt with
        ``state`` as its outcome (success, skipped or failed) and ``xcoms``. Returns the task
        instance's final state."""
        steps = (TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING)
        sdag = SerializedDag.from_dict(self.dags[self._dag_of(run_pk)])
        with session_scope(self.engine) as session:
            ti = session.scalars(select(TaskInstance).where(
                TaskInstance.run_pk == run_pk, TaskInstance.task_id == task_id)).one()
            if ti.state == TaskState.NONE.value:
                commands.set_task_state(session, ti, TaskState.SCHEDULED, now=when,
                                        reason="test", actor="test")
            if state == TaskState.SCHEDULED:
                return state
            if ti.state == TaskState.UP_FOR_RETRY.value:
                commands.set_task_state(session, ti, TaskState.SCHEDULED, now=when,
                                        reason="retry", actor="test")
            [work] = commands.queue_task_instances(
                session, [ti], version_id_of={run_pk: 1}, timeout_of={}, job_id=None, now=when)
            if state == TaskState.QUEUED:
                return state
            started = commands.start_attempt(
                session, ti_id=work.ti_id, claim=work.claim, hostname="host-1", pid=42,
                log_path=log_path if log_path is not None
                else str(self.settings.base_log_folder / "none.log"),
                now=when + timedelta(seconds=1))
            assert started is not None
            if state in steps:
                return state
            return commands.finish_attempt(
                session, ti_id=work.ti_id, try_number=work.try_number, outcome=state,
                task=sdag.task_dict[task_id], xcoms=xcoms or {}, error=error,
                now=when + timedelta(seconds=3))

    def _dag_of(self, run_pk: int) -> str:
        with session_scope(self.engine, readonly=True) as session:
            run = session.get(DagRun, run_pk)
            assert run is not None
            return run.dag_id

    def finish_run(self, run_pk: int, state: RunState, when: datetime) -> None:
        with session_scope(self.engine) as session:
            run = session.get(DagRun, run_pk)
            assert run is not None
            commands.set_run_state(session, run, state, now=when, reason="test", actor="test")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=tmp_path, env={})


@pytest.fixture
def engine(settings: Settings, empty_store_template: Path) -> Iterator[Engine]:
    eng = open_store(settings, empty_store_template)
    yield eng
    eng.dispose()


@pytest.fixture
def app(settings: Settings, engine: Engine) -> Flask:
    return create_app(settings, engine=engine)


PASSWORD = "correct-horse-battery"


def add_user(engine: Engine, username: str, role: str) -> None:
    from webui.users import create_user

    with session_scope(engine) as session:
        create_user(session, username, PASSWORD, role, now=T0)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> FlaskClient:
    """Sign ``client`` in through the login form (fetching its CSRF token first)."""
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def csrf_of(client: FlaskClient) -> str:
    """The CSRF token of ``client``'s session."""
    with client.session_transaction() as sess:
        return str(sess["csrf_token"])


@pytest.fixture
def anon(app: Flask) -> FlaskClient:
    """A client that has not signed in."""
    return app.test_client()


@pytest.fixture
def client_as(app: Flask, engine: Engine) -> Any:
    """``client_as("viewer")``: a new client signed in as a new user with that role."""

    def make(role: str) -> FlaskClient:
        username = f"{role}-user"
        with session_scope(engine, readonly=True) as session:
            from webui.users import list_users
            exists = any(u.username == username for u in list_users(session))
        if not exists:
            add_user(engine, username, role)
        return login(app.test_client(), username)

    return make


@pytest.fixture
def client(client_as: Any) -> FlaskClient:
    """A client signed in as an admin."""
    return client_as("admin")


@pytest.fixture
def store(engine: Engine, settings: Settings) -> StoreFiller:
    return StoreFiller(engine, settings)

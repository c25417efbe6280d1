"""Schemathesis against /api/v1/openapi.json: no 5xx, and every answer matches its schema.

Each operation gets a bounded, derandomized batch of generated requests sent with an admin's
bearer token through the WSGI app (no server)."""

from __future__ import annotations

from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy.engine import Engine

from scheduler.core.states import TaskState
from scheduler.store.db import session_scope
from webui.users import create_token, create_user

_SETTINGS = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))


def test_api_conforms_to_its_openapi_document(app: Flask, engine: Engine, store: Any) -> None:
    dag_id = store.dag()
    store.run(dag_id, "run-1", store.T0, {"extract": TaskState.SUCCESS})
    with session_scope(engine) as session:
        user = create_user(session, "fuzzer", "correct-horse-battery", "admin", now=store.T0)
        session.flush()
        token = create_token(session, user, "schemathesis", now=store.T0)
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    failures: list[str] = []
    statuses: set[int] = set()
    for operation in operations:

        @_SETTINGS
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call_and_validate(
                headers=headers, checks=[not_a_server_error, response_schema_conformance])
            statuses.add(response.status_code)

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert {200, 400, 404} <= statuses, statuses  # signed in, and both valid and bad input

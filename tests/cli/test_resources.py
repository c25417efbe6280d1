"""``headwater variables|connections|pools``: what scripts and operators rely on — values that
tasks read back, JSON files that round-trip between stores, and clean refusals."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from scheduler.cli import main
from scheduler.context import ConnectionAccessor, VariableAccessor
from scheduler.store.db import session_scope


def _cli_for(home: Path) -> Callable[..., Result]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("HEADWATER")}
    env.update(HEADWATER_HOME=str(home), COLUMNS="250")  # wide tables: nothing truncated
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), env=env, prog_name="headwater", input=input)

    return invoke


@pytest.fixture
def cli(home: Path) -> Callable[..., Result]:
    return _cli_for(home)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def refused(result: Result, *fragments: str) -> None:
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_variables_set_get_list_delete_and_tasks_read_them(cli, engine) -> None:
    ok(cli("variables", "set", "region", "north", "--description", "where we report"))
    ok(cli("variables", "set", "limits", '{"max": 3}', "--json"))
    assert cli("variables", "get", "region").stdout == "north\n"
    assert as_json(cli("variables", "get", "region", "-o", "json")) == {
        "key": "region", "value": "north", "description": "where we report"}
    assert [v["key"] for v in as_json(cli("variables", "list", "-o", "json"))] == [
        "limits", "region"]

    # What a task's templates see through var.value / var.json.
    var = VariableAccessor(lambda: session_scope(engine, readonly=True))
    assert var.value.region == "north"
    assert var.json.limits == {"max": 3}

    ok(cli("variables", "delete", "region"))
    refused(cli("variables", "get", "region"), "no variable 'region'", "variables set region")
    refused(cli("variables", "delete", "region"), "no variable 'region'")


def test_variables_export_then_import_into_another_store(cli, home, tmp_path) -> None:
    ok(cli("variables", "set", "a", "1"))
    ok(cli("variables", "set", "b", '{"x": [1, 2]}'))
    exported = tmp_path / "vars.json"
    ok(cli("variables", "export", str(exported)))
    assert json.loads(exported.read_text()) == {"a": "1", "b": '{"x": [1, 2]}'}

    other_home = tmp_path / "other"
    other = _cli_for(other_home)
    assert "Imported 2 variables" in ok(other("variables", "import", str(exported))).stdout
    assert as_json(other("variables", "get", "b", "-o", "json"))["value"] == '{"x": [1, 2]}'


def test_variables_import_stores_non_string_values_as_json(cli, engine, tmp_path) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"n": 5, "cfg": {"on": True}, "s": "plain"}))
    ok(cli("variables", "import", str(path)))
    var = VariableAccessor(lambda: session_scope(engine, readonly=True))
    assert var.json.n == 5 and var.json.cfg == {"on": True} and var.value.s == "plain"


def test_import_of_a_bad_file_is_refused_and_writes_nothing(cli, tmp_path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    refused(cli("variables", "import", str(bad_json)), "not valid JSON")
    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2]")
    refused(cli("variables", "import", str(a_list)), "JSON object")
    half_bad = tmp_path / "pools.json"
    half_bad.write_text(json.dumps({"good": {"slots": 2}, "bad": {"slots": -1}}))
    refused(cli("pools", "import", str(half_bad)), "'bad'", ">= 0")
    assert [p["name"] for p in as_json(cli("pools", "list", "-o", "json"))] == ["default_pool"]
    refused(cli("variables", "import", str(tmp_path / "missing.json")), "cannot read")


def test_connections_from_uri_and_options_hide_password_in_tables(cli, engine) -> None:
    ok(cli("connections", "set", "warehouse", "--conn-uri",
           "postgres://etl:s%40cret@db.example.com:5432/analytics?sslmode=require"))
    row = as_json(cli("connections", "get", "warehouse", "-o", "json"))
    assert row == {"conn_id": "warehouse", "conn_type": "postgres", "host": "db.example.com",
                   "schema": "analytics", "login": "etl", "password": "s@cret", "port": 5432,
                   "extra": {"sslmode": "require"}}
    table = ok(cli("connections", "list")).stdout
    assert "db.example.com" in table and "s@cret" not in table

    ok(cli("connections", "set", "api", "--conn-type", "http", "--host", "api.example.com",
           "--extra", '{"timeout": 10}'))
    conn = ConnectionAccessor(lambda: session_scope(engine, readonly=True))
    assert conn.api.host == "api.example.com" and conn.api.extra == {"timeout": 10}

    refused(cli("connections", "set", "x", "--host", "h"), "needs a conn_type")
    refused(cli("connections", "set", "x", "--conn-type", "http", "--extra", "[1]"),
            "JSON object")
    ok(cli("connections", "delete", "api"))
    refused(cli("connections", "get", "api"), "no connection 'api'")


def test_connections_round_trip_through_export_and_import(cli, tmp_path) -> None:
    ok(cli("connections", "set", "s3", "--conn-type", "aws", "--login", "key",
           "--password", "secret", "--extra", '{"region": "eu-west-1"}'))
    path = tmp_path / "conns.json"
    ok(cli("connections", "export", str(path)))
    document = json.loads(path.read_text())
    assert document["s3"]["password"] == "secret"
    other = _cli_for(tmp_path / "other")
    ok(other("connections", "import", str(path)))
    assert as_json(other("connections", "get", "s3", "-o", "json")) == as_json(
        cli("connections", "get", "s3", "-o", "json"))


def test_pools_set_resize_export_import_and_default_pool_is_kept(cli, tmp_path) -> None:
    ok(cli("pools", "set", "db", "2", "-d", "database connections"))
    ok(cli("pools", "set", "db", "5"))  # resize keeps the description
    assert as_json(cli("pools", "get", "db", "-o", "json")) == {
        "name": "db", "slots": 5, "description": "database connections"}
    refused(cli("pools", "delete", "default_pool"), "cannot be deleted")
    refused(cli("pools", "set", "db", "--", "-1"), ">= 0")

    ok(cli("pools", "export", "-"))  # stdout works for pipes
    exported = json.loads(cli("pools", "export", "-").stdout)
    assert exported["db"] == {"slots": 5, "description": "database connections"}
    other = _cli_for(tmp_path / "other")
    ok(other("pools", "import", "-", input=json.dumps(exported)))
    assert {p["name"]: p["slots"] for p in as_json(other("pools", "list", "-o", "json"))} == {
        "db": 5, "default_pool": 128}
    ok(cli("pools", "delete", "db"))
    refused(cli("pools", "get", "db"), "no pool 'db'")


def test_writes_are_recorded_in_the_audit_log(cli, engine) -> None:
    from sqlalchemy import select

    from scheduler.store.models import AuditLog

    ok(cli("variables", "set", "k", "v"))
    ok(cli("pools", "set", "p", "1"))
    ok(cli("variables", "delete", "k"))
    with session_scope(engine, readonly=True) as session:
        actions = [(a.actor, a.action) for a in session.scalars(
            select(AuditLog).order_by(AuditLog.id))]
    assert actions == [("cli", "variable.set"), ("cli", "pool.set"), ("cli", "variable.delete")]


def test_tasks_render_shows_the_fields_rendered_for_a_date_and_for_an_existing_run(
        env, write_dag) -> None:
    import json as _json

    from tests.e2e.procs import hw

    write_dag("rendered.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import BashOperator

        with DAG("rendered", schedule=None, start_date=datetime(2024, 1, 1),
                 params={"who": "world"}):
            BashOperator(task_id="hello", bash_command="echo {{ ds }} {{ params.who }}")
    """)
    fields = _json.loads(hw(env, "tasks", "render", "rendered", "hello", "2024-02-03",
                            "--output", "json").stdout)
    assert fields["bash_command"] == "echo 2024-02-03 world"
    hw(env, "dags", "trigger", "rendered", "--logical-date", "2024-02-04",
       "--conf", '{"who": "team"}')
    fields = _json.loads(hw(env, "tasks", "render", "rendered", "hello", "2024-02-04",
                            "--output", "json").stdout)
    assert fields["bash_command"] == "echo 2024-02-04 team"

"""Sign-in, roles, CSRF, API tokens and session cookies, through Flask's test client."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from scheduler.config import Settings
from scheduler.store.db import session_scope
from scheduler.store.models import ApiToken, AuditLog, DagModel, User
from webui.users import create_token, create_user, get_user

PASSWORD = "correct-horse-battery"
RUN_ID = "manual__2024-01-01T00:00:00+00:00"


def _token(engine: Engine, username: str, role: str) -> str:
    from datetime import UTC, datetime

    with session_scope(engine) as session:
        user = create_user(session, username, PASSWORD, role, now=datetime.now(UTC))
        return create_token(session, user, "test", now=datetime.now(UTC))


def _csrf(client: FlaskClient) -> str:
    with client.session_transaction() as sess:
        return str(sess["csrf_token"])


def test_every_page_sends_an_anonymous_visitor_to_sign_in(anon: FlaskClient, store: Any) -> None:
    store.dag()
    store.run("etl", RUN_ID, store.T0)
    for url in ("/", "/dags/etl", "/dags/etl/graph", "/dags/etl/runs", "/dags/etl/code",
                f"/dags/etl/runs/{RUN_ID}", f"/dags/etl/runs/{RUN_ID}/tasks/extract",
                "/dags/etl/trigger", "/pools", "/variables", "/connections", "/audit",
                "/signals", "/users"):
        response = anon.get(url)
        assert response.status_code == 302, url
        assert "/login?next=" in response.headers["Location"], url
    assert anon.get("/health").status_code == 200
    css = anon.get("/static/headwater.css")
    assert css.status_code == 200
    css.close()


def test_sign_in_and_out(anon: FlaskClient, client_as: Any, engine: Engine) -> None:
    client_as("viewer")  # creates viewer-user
    page = anon.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    wrong = anon.post("/login", data={"username": "viewer-user", "password": "nope",
                                      "csrf_token": token})
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.get_data(True)
    ok = anon.post("/login?next=/pools", data={"username": "viewer-user", "password": PASSWORD,
                                               "csrf_token": token})
    assert ok.status_code == 302 and ok.headers["Location"] == "/pools"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "headwater_session=" in cookie
    assert anon.get("/").status_code == 200
    csrf = _csrf(anon)
    assert anon.post("/logout", data={"csrf_token": csrf}).status_code == 302
    assert anon.get("/").status_code == 302
    with session_scope(engine, readonly=True) as session:
        actions = [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions[-2:] == ["login_failed", "login"]  # (the first: client_as signing in)


def test_login_redirects_only_within_the_site(anon: FlaskClient, client_as: Any) -> None:
    client_as("viewer")
    page = anon.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = anon.post("/login?next=//evil.example/x", data={
        "username": "viewer-user", "password": PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_session_cookie_is_secure_over_https(anon: FlaskClient, client_as: Any) -> None:
    client_as("viewer")
    page = anon.get("/login", base_url="https://localhost").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = anon.post("/login", base_url="https://localhost", data={
        "username": "viewer-user", "password": PASSWORD, "csrf_token": token})
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_viewer_can_look_but_not_change(client_as: Any, store: Any, engine: Engine) -> None:
    store.dag()
    store.run("etl", RUN_ID, store.T0)
    viewer = client_as("viewer")
    assert viewer.get("/dags/etl").status_code == 200
    html = viewer.get(f"/dags/etl/runs/{RUN_ID}").get_data(as_text=True)
    assert "Clear all tasks" not in html and "Trigger" not in html
    csrf = _csrf(viewer)
    for url in ("/dags/etl/pause", "/dags/etl/trigger", f"/dags/etl/runs/{RUN_ID}/clear",
                f"/dags/etl/runs/{RUN_ID}/tasks/extract/mark", "/pools", "/variables",
                "/connections"):
        assert viewer.post(url, data={"csrf_token": csrf, "paused": "1"}).status_code == 403, url
    assert viewer.get("/dags/etl/trigger").status_code == 403
    assert viewer.get("/audit").status_code == 403 and viewer.get("/users").status_code == 403
    with session_scope(engine, readonly=True) as session:
        assert not session.get(DagModel, "etl").is_paused  # type: ignore[union-attr]


def test_an_operator_cannot_manage_connections_or_read_the_audit_log(client_as: Any) -> None:
    operator = client_as("operator")
    csrf = _csrf(operator)
    assert operator.post("/variables", data={"csrf_token": csrf, "key": "k",
                                             "value": "v"}).status_code == 302
    assert operator.post("/connections", data={"csrf_token": csrf,
                                               "conn_id": "db"}).status_code == 403
    assert operator.get("/audit").status_code == 403


def test_a_form_without_the_csrf_token_is_refused(client: FlaskClient, store: Any,
                                                  engine: Engine) -> None:
    store.dag()
    for data in ({"paused": "1"}, {"paused": "1", "csrf_token": "forged"}):
        response = client.post("/dags/etl/pause", data=data)
        assert response.status_code == 400
        assert "CSRF" in response.get_data(as_text=True)
    with session_scope(engine, readonly=True) as session:
        assert not session.get(DagModel, "etl").is_paused  # type: ignore[union-attr]
    ok = client.post("/dags/etl/pause", data={"paused": "1", "csrf_token": _csrf(client)})
    assert ok.status_code == 302


def test_every_form_on_the_pages_carries_the_csrf_token(client: FlaskClient, store: Any) -> None:
    store.dag()
    store.run("etl", RUN_ID, store.T0)
    csrf = _csrf(client)
    for url in ("/", "/dags/etl", f"/dags/etl/runs/{RUN_ID}",
                f"/dags/etl/runs/{RUN_ID}/tasks/extract", "/dags/etl/trigger", "/pools",
                "/variables", "/connections"):
        html = client.get(url).get_data(as_text=True)
        forms = html.split('method="post"')[1:]
        assert forms, url
        for form in forms:
            assert f'name="csrf_token" value="{csrf}"' in form.split("</form>")[0], url


def test_api_tokens_authenticate_scripts(app: Flask, engine: Engine, store: Any) -> None:
    store.dag()
    api = app.test_client()
    assert api.get("/api/v1/dags").status_code == 401
    assert api.get("/api/v1/dags").mimetype == "application/problem+json"
    bad = api.get("/api/v1/dags", headers={"Authorization": "Bearer hw_nope"})
    assert bad.status_code == 401
    token = _token(engine, "script", "viewer")
    auth = {"Authorization": f"Bearer {token}"}
    listing = api.get("/api/v1/dags", headers=auth)
    assert listing.status_code == 200 and listing.get_json()["items"][0]["dag_id"] == "etl"
    # A viewer's token cannot write; no CSRF is asked of a bearer call.
    denied = api.patch("/api/v1/dags/etl", json={"is_paused": True}, headers=auth)
    assert denied.status_code == 403 and "operator" in denied.get_json()["detail"]
    with session_scope(engine, readonly=True) as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.token_hash != token and token not in row.token_hash
        assert row.last_used_at is not None


def test_a_deleted_user_loses_access_at_once(client_as: Any, engine: Engine) -> None:
    from webui.users import delete_user

    viewer = client_as("viewer")
    assert viewer.get("/").status_code == 200
    with session_scope(engine) as session:
        delete_user(session, "viewer-user")
    assert viewer.get("/").status_code == 302


def test_a_session_api_call_needs_the_csrf_header(client: FlaskClient, store: Any) -> None:
    store.dag()
    assert client.patch("/api/v1/dags/etl", json={"is_paused": True}).status_code == 403
    ok = client.patch("/api/v1/dags/etl", json={"is_paused": True},
                      headers={"X-CSRF-Token": _csrf(client)})
    assert ok.status_code == 200 and ok.get_json()["is_paused"] is True


def test_users_cli_creates_lists_makes_tokens_and_deletes(settings: Settings,
                                                          engine: Engine) -> None:
    from scheduler.cli import main
    from scheduler.cli._common import AppContext

    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, list(args), obj=AppContext(settings, engine),
                             catch_exceptions=False)

    created = run("users", "create", "carol", "--role", "operator", "--generate")
    assert created.exit_code == 0, created.output
    password = created.output.split("Password: ", 1)[1].strip()
    with session_scope(engine, readonly=True) as session:
        from webui.users import authenticate
        assert authenticate(session, "carol", password) is not None
        assert get_user(session, "carol").password_hash != password
    assert run("users", "create", "carol", "--role", "viewer", "-p", "x" * 10).exit_code == 1
    assert run("users", "create", "dave", "--role", "viewer", "-p", "short").exit_code == 1
    listed = run("users", "list", "--output", "json")
    assert '"username": "carol"' in listed.output and '"role": "operator"' in listed.output
    token = run("users", "token", "carol").output.strip()
    assert token.startswith("hw_")
    assert run("users", "delete", "carol").exit_code == 0
    with session_scope(engine, readonly=True) as session:
        assert session.scalars(select(User)).first() is None
        assert session.scalars(select(ApiToken)).first() is None
    assert run("users", "delete", "carol").exit_code == 1


@pytest.mark.parametrize("password", ["", "a"])
def test_sign_in_with_an_empty_or_wrong_password_fails(anon: FlaskClient, client_as: Any,
                                                       password: str) -> None:
    client_as("admin")
    page = anon.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = anon.post("/login", data={"username": "admin-user", "password": password,
                                         "csrf_token": token})
    assert response.status_code == 401

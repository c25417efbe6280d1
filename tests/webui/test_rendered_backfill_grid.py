"""The task-instance page's Rendered section, the DAG page's backfill form, and the grid's
task groups and mapped tasks."""

from __future__ import annotations

import textwrap
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from scheduler.config import Settings
from scheduler.core.states import TaskState
from scheduler.parsing.processor import parse_dags_folder
from scheduler.store.db import session_scope
from scheduler.store.models import DagVersion

TEMPLATED = """
    from datetime import datetime
    from scheduler import DAG
    from scheduler.operators import BashOperator

    with DAG("templated", schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False):
        BashOperator(task_id="say", bash_command="echo {{ ds }} '<script>x</script>'")
"""


def _parsed_dag(settings: Settings, engine: Engine, store: Any, source: str,
                dag_id: str) -> str:
    """Write a DAG file, parse it into the store, and let ``store`` make runs of it."""
    folder = settings.dags_folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{dag_id}.py").write_text(textwrap.dedent(source))
    parse_dags_folder(engine, settings)
    with session_scope(engine, readonly=True) as session:
        version = session.scalars(select(DagVersion).where(DagVersion.dag_id == dag_id)
                                  .order_by(DagVersion.id.desc())).first()
        assert version is not None, "the DAG file did not parse"
        store.dags[dag_id] = version.serialized
        store.versions[dag_id] = version.id
    return dag_id


def test_task_instance_page_shows_rendered_template_fields_escaped(
        client: FlaskClient, settings: Settings, engine: Engine, store: Any) -> None:
    dag_id = _parsed_dag(settings, engine, store, TEMPLATED, "templated")
    store.run(dag_id, "r1", store.T0)
    page = client.get(f"/dags/{dag_id}/runs/r1/tasks/say").get_data(as_text=True)
    assert "<h2>Rendered</h2>" in page and "rendered=1" in page and "bash_command" not in page
    page = client.get(f"/dags/{dag_id}/runs/r1/tasks/say?rendered=1").get_data(as_text=True)
    assert "bash_command" in page
    assert "echo 2024-01-01 &#39;&lt;script&gt;x&lt;/script&gt;&#39;" in page
    assert "<script>x</script>" not in page


def test_rendered_section_explains_when_the_dag_file_cannot_be_loaded(
        client: FlaskClient, store: Any) -> None:
    dag_id = store.dag()  # stored with the source "# source": nothing to execute
    store.run(dag_id, "r1", store.T0)
    response = client.get(f"/dags/{dag_id}/runs/r1/tasks/extract?rendered=1")
    assert response.status_code == 200
    assert "Cannot render the template fields" in response.get_data(as_text=True)


def _csrf(client: FlaskClient) -> str:
    with client.session_transaction() as sess:
        return str(sess["csrf_token"])


def test_backfill_form_creates_the_runs_flashes_and_audits(
        client_as: Any, settings: Settings, engine: Engine, store: Any) -> None:
    from scheduler.store.models import AuditLog, DagRun

    dag_id = _parsed_dag(settings, engine, store, TEMPLATED, "templated")
    operator = client_as("operator")
    page = operator.get(f"/dags/{dag_id}").get_data(as_text=True)
    assert 'name="rerun_failed"' in page and f"/dags/{dag_id}/backfill" in page
    response = operator.post(f"/dags/{dag_id}/backfill", follow_redirects=True, data={
        "csrf_token": _csrf(operator), "start_date": "2024-01-01", "end_date": "2024-01-03",
        "max_active_runs": "2", "reverse": "1"})
    assert response.status_code == 200
    assert "Backfill created 3 runs" in response.get_data(as_text=True)
    with session_scope(engine, readonly=True) as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)).all()
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "backfill")).one()
        assert len(runs) == 3 and {r.run_type for r in runs} == {"backfill"}
        assert audit.actor.endswith("operator-user") and audit.detail["created"] == 3


def test_backfill_form_refuses_viewers_bad_dates_and_missing_csrf(
        client_as: Any, settings: Settings, engine: Engine, store: Any) -> None:
    dag_id = _parsed_dag(settings, engine, store, TEMPLATED, "templated")
    viewer = client_as("viewer")
    assert f"/dags/{dag_id}/backfill" not in viewer.get(f"/dags/{dag_id}").get_data(as_text=True)
    assert viewer.post(f"/dags/{dag_id}/backfill", data={
        "csrf_token": _csrf(viewer), "start_date": "2024-01-01",
        "end_date": "2024-01-02"}).status_code == 403
    operator = client_as("operator")
    assert operator.post(f"/dags/{dag_id}/backfill", data={
        "start_date": "2024-01-01", "end_date": "2024-01-02"}).status_code in (400, 403)
    response = operator.post(f"/dags/{dag_id}/backfill", follow_redirects=True, data={
        "csrf_token": _csrf(operator), "start_date": "2024-01-05", "end_date": "2024-01-01"})
    assert "comes after its start date" in response.get_data(as_text=True)


def test_grid_groups_task_group_rows_and_expands_mapped_tasks(
        client: FlaskClient, engine: Engine, store: Any) -> None:
    from scheduler.store import commands
    from scheduler.store.models import TaskInstance

    dag = store.etl_dag("grouped", tasks=[
        {"task_id": "start", "upstream": [], "downstream": ["load.a"]},
        {"task_id": "load.a", "upstream": ["start"], "downstream": ["load.inner.b"]},
        {"task_id": "load.inner.b", "upstream": ["load.a"], "downstream": ["fan"]},
        {"task_id": "fan", "upstream": ["load.inner.b"], "downstream": []},
    ], task_groups={
        "load": {"parent": None, "tooltip": "", "tasks": ["load.a", "load.inner.b"]},
        "load.inner": {"parent": "load", "tooltip": "", "tasks": ["load.inner.b"]},
    })
    store.dag(dag)
    run_pk = store.run("grouped", "r1", store.T0, {"load.a": TaskState.SUCCESS})
    with session_scope(engine) as session:
        fan = session.scalars(select(TaskInstance).where(
            TaskInstance.run_pk == run_pk, TaskInstance.task_id == "fan")).one()
        commands.expand_mapped(session, fan, 3, now=store.T0)
    store.walk(run_pk, "load.inner.b", TaskState.FAILED, store.T0)
    html = client.get("/dags/grouped").get_data(as_text=True)
    # The group row, its nested group, then their tasks (labels without the group prefix).
    assert html.index('data-key="g:load"') < html.index('data-key="t:load.a"')
    assert html.index('data-key="g:load.inner"') < html.index('data-key="t:load.inner.b"')
    assert 'data-toggle="g:load"' in html and 'data-ancestors="g:load g:load.inner"' in html
    group_row = html[html.index('data-key="g:load"'):html.index('data-key="g:load.inner"')]
    assert "st-failed" in group_row  # the worst state of the group's tasks
    # The mapped task: one row with a count, then one hidden row per map index.
    assert "mapped · 3" in html and 'data-toggle="t:fan"' in html
    for index in range(3):
        assert f'data-key="t:fan[{index}]" data-ancestors="t:fan" hidden' in html
    assert "map_index=2" in html


def test_display_rows_without_groups_keeps_the_task_order() -> None:
    from webui.grid import GridCell, GridRow, display_rows

    cell = GridCell(state="success", try_number=1, map_index=-1)
    rows = [GridRow("a", True, (cell,)), GridRow("b", True, (None,))]
    shown = display_rows(rows, None)
    assert [(r.kind, r.label, r.depth, r.ancestors) for r in shown] == [
        ("task", "a", 0, ()), ("task", "b", 0, ())]

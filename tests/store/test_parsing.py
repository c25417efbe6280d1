"""Parsing the DAGs folder into the store."""

from __future__ import annotations

from sqlalchemy import select

from scheduler.parsing.processor import parse_dags_folder
from scheduler.store import queries
from scheduler.store.db import session_scope
from scheduler.store.models import DagModel, DagVersion

SIMPLE = """
from datetime import datetime
from scheduler import DAG
from scheduler.operators import EmptyOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2024, 1, 1)):
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="{second}")
"""


def _dags(engine) -> dict[str, DagModel]:
    with session_scope(engine, readonly=True) as session:
        return {d.dag_id: d for d in session.scalars(select(DagModel))}


def _versions(engine, dag_id: str) -> list[str]:
    with session_scope(engine, readonly=True) as session:
        return list(session.scalars(select(DagVersion.version).where(
            DagVersion.dag_id == dag_id).order_by(DagVersion.id)))


def test_files_are_stored_as_versions_and_unchanged_files_are_skipped(
        engine, settings, write_dag) -> None:
    write_dag("one.py", SIMPLE.format(dag_id="one", second="b"))
    report = parse_dags_folder(engine, settings)
    assert len(report.parsed) == 1 and not report.errors
    assert _dags(engine)["one"].schedule == "@daily"
    assert len(_versions(engine, "one")) == 1

    assert parse_dags_folder(engine, settings).parsed == []

    write_dag("one.py", SIMPLE.format(dag_id="one", second="c"))
    assert len(parse_dags_folder(engine, settings).parsed) == 1
    assert len(_versions(engine, "one")) == 2


def test_a_broken_file_is_recorded_with_its_line_and_spares_the_others(
        engine, settings, write_dag) -> None:
    write_dag("good.py", SIMPLE.format(dag_id="good", second="b"))
    path = write_dag("bad.py", "from scheduler import DAG\n\nx = 1\nraise ValueError('nope')\n")
    report = parse_dags_folder(engine, settings)
    assert set(report.errors) == {str(path)}
    with session_scope(engine, readonly=True) as session:
        [err] = queries.import_errors(session)
    assert err.fileloc == str(path) and err.lineno == 4
    assert "ValueError: nope" in err.message and "Traceback" in err.traceback
    assert "good" in _dags(engine)


def test_a_cycle_is_reported_with_file_line_and_fix(engine, settings, write_dag) -> None:
    path = write_dag("cyclic.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator

        with DAG("cyclic", start_date=datetime(2024, 1, 1)):
            a = EmptyOperator(task_id="a")
            b = EmptyOperator(task_id="b")
            a >> b >> a
    """)
    report = parse_dags_folder(engine, settings)
    message = report.errors[str(path)]
    assert str(path) in message and "cycle" in message.lower() and "Fix" in message


def test_a_file_that_hangs_is_stopped_at_the_timeout(engine, settings, write_dag) -> None:
    path = write_dag("hang.py", "import time\n# dag\ntime.sleep(60)\n")
    settings = settings.with_overrides(parse_timeout=1.0)
    report = parse_dags_folder(engine, settings)
    assert "longer than 1 s" in report.errors[str(path)]


def test_dags_of_a_deleted_file_become_inactive(engine, settings, write_dag) -> None:
    path = write_dag("gone.py", SIMPLE.format(dag_id="gone", second="b"))
    parse_dags_folder(engine, settings)
    path.unlink()
    report = parse_dags_folder(engine, settings)
    assert report.removed == [str(path)]
    assert _dags(engine)["gone"].is_active is False


def test_headwaterignore_excludes_matching_files(engine, settings, home, write_dag) -> None:
    write_dag("keep.py", SIMPLE.format(dag_id="keep", second="b"))
    write_dag("scratch/skip.py", SIMPLE.format(dag_id="skip", second="b"))
    write_dag("old_skip.py", SIMPLE.format(dag_id="old", second="b"))
    (home / "dags" / ".headwaterignore").write_text("# comments are fine\nscratch\nold_*.py\n")
    parse_dags_folder(engine, settings)
    assert set(_dags(engine)) == {"keep"}


def test_the_same_dag_id_in_two_files_is_an_import_error(engine, settings, write_dag) -> None:
    write_dag("a.py", SIMPLE.format(dag_id="same", second="b"))
    parse_dags_folder(engine, settings)
    dup = write_dag("b.py", SIMPLE.format(dag_id="same", second="c"))
    report = parse_dags_folder(engine, settings)
    assert "already declared" in report.errors[str(dup)]


def test_a_file_refused_for_a_duplicate_dag_id_takes_it_once_the_other_file_is_deleted(
        engine, settings, write_dag) -> None:
    first = write_dag("a.py", SIMPLE.format(dag_id="moved", second="b"))
    parse_dags_folder(engine, settings)
    copy = write_dag("b.py", SIMPLE.format(dag_id="moved", second="c"))
    assert str(copy) in parse_dags_folder(engine, settings).errors
    first.unlink()  # the move is finished: only b.py declares the DAG now
    report = parse_dags_folder(engine, settings)
    assert not report.errors
    moved = _dags(engine)["moved"]
    assert moved.is_active and moved.fileloc == str(copy)
    with session_scope(engine, readonly=True) as session:
        assert queries.import_errors(session) == []


def test_a_file_refused_for_a_duplicate_dag_id_takes_it_once_the_other_file_drops_it(
        engine, settings, write_dag) -> None:
    write_dag("a.py", SIMPLE.format(dag_id="shared", second="b"))
    parse_dags_folder(engine, settings)
    other = write_dag("b.py", SIMPLE.format(dag_id="shared", second="c"))
    assert str(other) in parse_dags_folder(engine, settings).errors
    write_dag("a.py", SIMPLE.format(dag_id="renamed", second="b"))
    report = parse_dags_folder(engine, settings)
    assert not report.errors
    dags = _dags(engine)
    assert dags["shared"].is_active and dags["shared"].fileloc == str(other)
    assert dags["renamed"].is_active
    with session_scope(engine, readonly=True) as session:
        assert queries.import_errors(session) == []

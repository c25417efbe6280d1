"""Importing many files per forked child, and storing them in batches, keeps every per-file
guarantee: each file has its own result, error (file and line) and time limit, a bad file
spares the files after it, and the store ends as if the files had been stored one by one."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, select

from scheduler.core.serialized import SerializedDag
from scheduler.core.timetable import make_timetable
from scheduler.parsing.importer import import_files
from scheduler.parsing.processor import parse_dags_folder
from scheduler.store import queries
from scheduler.store.db import session_scope
from scheduler.store.models import DagModel, DagRun, DagVersion

NOW = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)

# The DAG's description is the pid of the process that imported the file.
WITH_PID = """
import os
from datetime import datetime
from scheduler import DAG
from scheduler.operators import EmptyOperator

with DAG("{dag_id}", schedule="@daily", start_date=datetime(2024, 1, 1),
         description=str(os.getpid())):
    EmptyOperator(task_id="a") >> EmptyOperator(task_id="b")
"""

BROKEN = "from scheduler import DAG\n\nx = 1\nraise ValueError('nope')\n"
HANGS = "import time\n# dag\ntime.sleep(60)\n"
DIES = "import os\n# dag\nos._exit(3)\n"
# Enters a DAG context and never leaves it: a task of a later file must not fall into it.
LEAVES_DAG_OPEN = """
from datetime import datetime
from scheduler import DAG
from scheduler.operators import EmptyOperator

leaky = DAG("leaky", start_date=datetime(2024, 1, 1))
leaky.__enter__()
EmptyOperator(task_id="inside")
"""
ORPHAN_TASK = """
from scheduler.operators import EmptyOperator  # a dag file

EmptyOperator(task_id="orphan")
"""


def _write(folder: Path, name: str, source: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(source).lstrip())
    return str(path)


def _pid(result) -> str:
    [dag] = result.dags
    return dag["description"]


def test_one_child_imports_the_good_files_around_a_broken_a_hanging_and_a_dying_one(
        tmp_path: Path) -> None:
    files = [
        _write(tmp_path, "a_good.py", WITH_PID.format(dag_id="a_good")),
        _write(tmp_path, "b_broken.py", BROKEN),
        _write(tmp_path, "c_good.py", WITH_PID.format(dag_id="c_good")),
        _write(tmp_path, "d_hangs.py", HANGS),
        _write(tmp_path, "e_good.py", WITH_PID.format(dag_id="e_good")),
        _write(tmp_path, "f_dies.py", DIES),
        _write(tmp_path, "g_good.py", WITH_PID.format(dag_id="g_good")),
    ]
    results = import_files(files, timeout=1.0, concurrency=1)

    assert [r.fileloc for r in results] == files
    by_name = {Path(r.fileloc).stem: r for r in results}
    for name in ("a_good", "c_good", "e_good", "g_good"):
        assert by_name[name].error is None
        assert [d["dag_id"] for d in by_name[name].dags] == [name]
    broken = by_name["b_broken"].error
    assert broken is not None and broken.lineno == 4 and "ValueError: nope" in broken.message
    assert files[1] in broken.traceback
    hangs = by_name["d_hangs"].error
    assert hangs is not None and "longer than 1 s" in hangs.message
    dies = by_name["f_dies"].error
    assert dies is not None and "died without a result" in dies.message
    for name in ("b_broken", "d_hangs", "f_dies"):
        assert by_name[name].dags == [] and by_name[name].source


def test_a_child_imports_several_files_and_is_replaced_after_a_failed_one(
        tmp_path: Path) -> None:
    files = [
        _write(tmp_path, "a.py", WITH_PID.format(dag_id="a")),
        _write(tmp_path, "b.py", WITH_PID.format(dag_id="b")),
        _write(tmp_path, "c_broken.py", BROKEN),
        _write(tmp_path, "d.py", WITH_PID.format(dag_id="d")),
    ]
    a, b, _, d = import_files(files, timeout=30.0, concurrency=1)
    assert _pid(a) == _pid(b)  # one fork for both
    assert _pid(d) != _pid(a)  # a fresh process after the broken file


def test_a_dag_context_left_open_does_not_capture_the_next_files_tasks(tmp_path: Path) -> None:
    files = [
        _write(tmp_path, "a_leaky.py", LEAVES_DAG_OPEN),
        _write(tmp_path, "b_orphan.py", ORPHAN_TASK),
    ]
    leaky, orphan = import_files(files, timeout=30.0, concurrency=1)
    assert leaky.error is None
    [dag] = leaky.dags
    assert [t["task_id"] for t in dag["tasks"]] == ["inside"]
    assert orphan.error is not None and "not in any DAG" in orphan.error.message


def test_a_folder_with_bad_files_stores_every_good_file_and_names_each_bad_one(
        engine, settings, write_dag) -> None:
    good = [write_dag(f"good_{i:02d}.py", WITH_PID.format(dag_id=f"good_{i:02d}"))
            for i in range(8)]
    broken = write_dag("good_03_broken.py", BROKEN)
    hangs = write_dag("good_05_hangs.py", HANGS)
    report = parse_dags_folder(engine, settings.with_overrides(parse_timeout=1.0))

    assert set(report.errors) == {str(broken), str(hangs)}
    assert report.errors[str(broken)].startswith(f"{broken}:4: ValueError: nope")
    assert "longer than 1 s" in report.errors[str(hangs)]
    with session_scope(engine, readonly=True) as session:
        stored = {d.dag_id: d for d in session.scalars(select(DagModel))}
        errors = {e.fileloc: e for e in queries.import_errors(session)}
    assert set(stored) == {p.stem for p in good}
    assert all(d.is_active and d.latest_version_id for d in stored.values())
    assert set(errors) == {str(broken), str(hangs)} and errors[str(broken)].lineno == 4


def test_storing_a_folder_takes_the_same_statements_for_few_files_as_for_many(
        engine, settings, write_dag, home) -> None:
    def statements_to_parse(first: int, count: int) -> int:
        for i in range(first, first + count):
            write_dag(f"d_{i:03d}.py", WITH_PID.format(dag_id=f"d_{i:03d}"))
        seen: list[str] = []

        def record(_conn, _cursor, statement, *_args) -> None:
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            report = parse_dags_folder(engine, settings)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert len(report.parsed) == count and not report.errors
        return len(seen)

    few = statements_to_parse(0, 2)
    for path in (home / "dags").iterdir():
        path.unlink()
    statements_to_parse(100, 0)  # forget them: the next parse stores only new DAGs again
    many = statements_to_parse(200, 20)
    assert many == few


def test_the_next_run_is_computed_from_each_dags_schedule_and_history(
        engine, settings, write_dag) -> None:
    write_dag("hourly.py", """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator

        with DAG("hourly", schedule="@hourly", start_date=datetime(2024, 1, 1)):
            EmptyOperator(task_id="a")
    """)
    daily_source = """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator

        with DAG("daily", schedule="@daily", start_date=datetime(2024, 1, 1), catchup=True):
            EmptyOperator(task_id="{task}")
    """
    write_dag("daily.py", daily_source.format(task="a"))
    parse_dags_folder(engine, settings, clock=lambda: NOW)

    def expected(dag_id: str, last=None):
        with session_scope(engine, readonly=True) as session:
            version = session.get(DagVersion, session.get(DagModel, dag_id).latest_version_id)
            sdag = SerializedDag.from_dict(version.serialized)
        return make_timetable(sdag.schedule, sdag.timezone).next_run(
            last, start_date=sdag.start_date, end_date=sdag.end_date, catchup=sdag.catchup,
            now=NOW)

    def stored(dag_id: str) -> tuple:
        with session_scope(engine, readonly=True) as session:
            dag = session.get(DagModel, dag_id)
            return (dag.next_logical_date, dag.next_data_interval_end, dag.next_run_after)

    for dag_id in ("hourly", "daily"):
        info = expected(dag_id)
        assert stored(dag_id) == (info.logical_date, info.data_interval.end, info.run_after)
    assert stored("daily")[0] == datetime(2024, 1, 1, tzinfo=UTC)  # catchup from the start

    # A scheduled run exists: a new version of the file continues after it.
    start = datetime(2024, 3, 1, tzinfo=UTC)
    with session_scope(engine) as session:
        session.add(DagRun(
            dag_id="daily", run_id="scheduled__1", run_type="scheduled", state="success",
            logical_date=start, data_interval_start=start,
            data_interval_end=start + timedelta(days=1), run_after=start + timedelta(days=1),
            version_id=session.get(DagModel, "daily").latest_version_id, created_at=NOW))
    write_dag("daily.py", daily_source.format(task="b"))
    parse_dags_folder(engine, settings, clock=lambda: NOW)
    assert stored("daily")[0] == datetime(2024, 3, 2, tzinfo=UTC)


def test_a_file_that_starts_a_thread_gets_a_process_of_its_own(tmp_path: Path) -> None:
    threaded = WITH_PID.format(dag_id="threaded") + (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n")
    files = [
        _write(tmp_path, "a_threaded.py", threaded),
        _write(tmp_path, "b.py", WITH_PID.format(dag_id="b")),
    ]
    a, b = import_files(files, timeout=30.0, concurrency=1)
    assert a.error is None and b.error is None
    assert _pid(a) != _pid(b)

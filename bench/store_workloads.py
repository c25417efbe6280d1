"""Workloads about the store and the parser: ``parse_N`` (cold and unchanged parse of a DAGs
folder), ``backfill_N`` (a daily DAG over N days) and ``ui_grid`` (server time of the web UI's
pages over a large store)."""

from __future__ import annotations

import json
import secrets
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from bench.dags import daily_dag, grid_dag, parse_dag
from bench.home import FINISHED, Home, Options, proc_cpu_seconds

Values = dict[str, float | None]

_PARSE_PROBE = """
    import json, time
    from scheduler.config import load_settings
    from scheduler.parsing.processor import parse_dags_folder
    from scheduler.store.db import ensure_schema, make_engine

    settings = load_settings()
    engine = make_engine(settings.sql_alchemy_conn)
    ensure_schema(engine)
    t0 = time.perf_counter()
    cold = parse_dags_folder(engine, settings)
    t1 = time.perf_counter()
    again = parse_dags_folder(engine, settings)
    t2 = time.perf_counter()
    print(json.dumps({"cold": t1 - t0, "unchanged": t2 - t1, "parsed": len(cold.parsed),
                      "errors": cold.errors, "reparsed": len(again.parsed)}))
"""


def parse(options: Options, n_files: int, tasks: int = 10) -> Values:
    """Cold parse and store of ``n_files`` files of ``tasks`` tasks, then a re-parse with no
    file changed, timed inside a fresh process around ``parse_dags_folder`` (s); and the wall
    time of ``headwater dags list`` on the unchanged folder, interpreter start included."""
    with Home(options) as home:
        for i in range(n_files):
            home.write_dag(f"parse_{i:04d}.py", parse_dag(f"parse_{i:04d}", tasks))
        home.engine()  # the schema exists before the clock starts, as after `db migrate`
        out = json.loads(home.python(_PARSE_PROBE).strip().splitlines()[-1])
        if out["parsed"] != n_files or out["errors"] or out["reparsed"]:
            raise RuntimeError(f"parse of {n_files} files went wrong: {out}")
        started = time.perf_counter()
        home.cli("dags", "list", "--output", "json")
        listed = time.perf_counter() - started
    return {"cold": out["cold"], "unchanged": out["unchanged"], "dags_list": listed}


_TRIGGER_PROBE = """
    import sys
    from datetime import UTC, datetime, timedelta
    from scheduler.config import load_settings
    from scheduler.loop import trigger_run
    from scheduler.store.db import make_engine, session_scope
    from scheduler.wakeup import notify

    dag_id, first, days = sys.argv[1], datetime.fromisoformat(sys.argv[2]), int(sys.argv[3])
    settings = load_settings()
    engine = make_engine(settings.sql_alchemy_conn)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        for d in range(days):
            logical = first + timedelta(days=d)
            trigger_run(session, dag_id=dag_id, now=now, logical_date=logical, actor="bench",
                        run_id=f"bench__{logical.date().isoformat()}")
    notify(settings.home)
    print(now.isoformat())
"""

FIRST_DAY = date(2023, 1, 1)


def has_backfill_command(home: Home) -> bool:
    try:
        home.cli("dags", "backfill", "--help", timeout=60)
    except RuntimeError:
        return False
    return True


def backfill(options: Options, days: int) -> tuple[Values, str]:
    """A daily DAG of three chained no-op tasks over ``days`` days: seconds from the start of
    the backfill to the end of its last run (store timestamp), runs per second, and the CPU
    seconds of the process driving the runs (the backfill command or the scheduler; itself,
    not its workers). Uses
    ``headwater dags backfill`` when it exists (its wall time includes the command's start and
    parse); otherwise creates the runs as ``headwater dags trigger --logical-date`` does
    (``trigger_run``, all in one transaction) and lets a scheduler run them. Returns the
    figures and which way was taken."""
    from scheduler.store.models import DagRun

    dag_id = "daily_3"
    last_day = FIRST_DAY + timedelta(days=days - 1)
    first = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC)
    in_range = (DagRun.dag_id == dag_id, DagRun.logical_date >= first,
                DagRun.logical_date < first + timedelta(days=days))
    with Home(options) as home:
        home.write_dag("daily_3.py", daily_dag(dag_id))
        if has_backfill_command(home):
            # The command parses, creates the runs and runs them in its own process.
            method = "headwater dags backfill (no scheduler running)"
            started = datetime.now(UTC)
            cpu = home.cli_cpu("dags", "backfill", dag_id, "--start-date",
                               FIRST_DAY.isoformat(), "--end-date", last_day.isoformat(),
                               timeout=600)
        else:
            method = "trigger_run x N with a scheduler running (no dags backfill command)"
            home.start_scheduler()
            home.wait_dags(1)
            started = datetime.fromisoformat(home.python(
                _TRIGGER_PROBE, dag_id, first.isoformat(), str(days)).strip())

        def all_finished() -> bool:
            total, done = home.read(select(
                func.count(), func.count().filter(DagRun.state.in_(FINISHED))).where(*in_range))[0]
            return bool(total) and total == done

        home.wait(all_finished, 120 + days, f"{days} runs of {dag_id} to finish", interval=0.1)
        if home.scheduler is not None:
            cpu = proc_cpu_seconds(home.scheduler.pid)
        runs, ok, last_end = home.read(select(
            func.count(), func.count().filter(DagRun.state == "success"),
            func.max(DagRun.end_date)).where(*in_range))[0]
    if ok != runs or runs != days:
        raise RuntimeError(f"backfill of {days} days left {runs} runs, {ok} successful")
    wall = (last_end - started).total_seconds()
    return {"wall": wall, "runs_per_s": runs / wall, "scheduler_cpu": cpu}, method


def _fill_store(home: Home, dag_id: str, version_id: int, task_ids: list[str],
                runs: int) -> None:
    """``runs`` finished daily runs of the DAG with one task instance per task, inserted in
    bulk through SQLAlchemy Core into the real tables."""
    from scheduler.store.models import DagRun, TaskInstance

    start = datetime(2021, 1, 1, tzinfo=UTC)
    run_rows: list[dict[str, Any]] = []
    for i in range(runs):
        logical = start + timedelta(days=i)
        run_rows.append({
            "dag_id": dag_id, "run_id": f"scheduled__{logical.isoformat()}",
            "run_type": "scheduled", "state": "failed" if i % 17 == 0 else "success",
            "logical_date": logical, "data_interval_start": logical,
            "data_interval_end": logical + timedelta(days=1), "run_after": logical,
            "conf": {}, "version_id": version_id, "queued_at": logical,
            "start_date": logical, "end_date": logical + timedelta(minutes=5),
            "created_at": logical})
    with home.engine().begin() as conn:
        conn.execute(insert(DagRun), run_rows)
        pks = dict(conn.execute(select(DagRun.run_id, DagRun.id)
                                .where(DagRun.dag_id == dag_id)).all())
        ti_rows = []
        for i, run in enumerate(run_rows):
            t0 = run["start_date"]
            for j, task_id in enumerate(task_ids):
                failed = run["state"] == "failed" and j == len(task_ids) - 1
                ti_rows.append({
                    "run_pk": pks[run["run_id"]], "dag_id": dag_id, "run_id": run["run_id"],
                    "task_id": task_id, "map_index": -1,
                    "state": "failed" if failed else "success", "try_number": 1,
                    "max_tries": 0, "operator": "EmptyOperator", "pool": "default_pool",
                    "pool_slots": 1, "priority_weight": 1, "queue": "default",
                    "queued_at": t0, "start_date": t0 + timedelta(seconds=j),
                    "end_date": t0 + timedelta(seconds=j + 1), "duration": 1.0,
                    "hostname": "bench", "pid": i})
            if len(ti_rows) >= 10_000:
                conn.execute(insert(TaskInstance), ti_rows)
                ti_rows = []
        if ti_rows:
            conn.execute(insert(TaskInstance), ti_rows)


def _sign_in(home: Home, client: Any) -> dict[str, str]:
    """Make a viewer, log the test client in as them (session cookie) and return the headers
    of an API call with their bearer token. Without users in the web UI (older versions),
    nothing to do."""
    try:
        from webui.users import create_token, create_user
    except ImportError:
        return {}
    from scheduler.store.db import session_scope

    now = datetime.now(UTC)
    with session_scope(home.engine()) as session:
        user = create_user(session, "bench", secrets.token_urlsafe(12), "viewer", now=now)
        token = create_token(session, user, "bench", now=now)
        uid = user.id
    with client.session_transaction() as web_session:
        web_session["uid"] = uid
    return {"Authorization": f"Bearer {token}"}


def ui_grid(options: Options, runs: int, tasks: int, samples: int = 7) -> Values:
    """A store of ``runs`` runs × ``tasks`` task instances of one DAG; the median server time
    (ms, Flask test client, after one warm-up request) of the DAG's grid page, its graph page
    and ``GET /api/v1/dags/<id>/dagRuns?limit=100``. A page that does not exist is None."""
    from scheduler.config import load_settings
    from scheduler.parsing.processor import parse_dags_folder
    from scheduler.store.models import DagModel, DagVersion
    from webui import create_app

    dag_id = "grid"
    with Home(options) as home:
        home.write_dag("grid.py", grid_dag(dag_id, tasks))
        overrides = {k: v for k, v in home.env.items() if k.startswith("HEADWATER__")}
        settings = load_settings(home=home.path, env=overrides)
        report = parse_dags_folder(home.engine(), settings)
        if report.errors:
            raise RuntimeError(f"grid DAG failed to parse: {report.errors}")
        version_id, serialized = home.read(
            select(DagVersion.id, DagVersion.serialized).join(
                DagModel, DagModel.latest_version_id == DagVersion.id)
            .where(DagModel.dag_id == dag_id))[0]
        task_ids = [t["task_id"] for t in serialized["tasks"]]
        _fill_store(home, dag_id, version_id, task_ids, runs)

        app = create_app(settings, engine=home.engine())
        client = app.test_client()
        headers = _sign_in(home, client)
        pages = {"grid_ms": f"/dags/{dag_id}", "graph_ms": f"/dags/{dag_id}/graph",
                 "api_dag_runs_ms": f"/api/v1/dags/{dag_id}/dagRuns?limit=100"}
        values: Values = {}
        for figure, path in pages.items():
            headers_of_page = headers if path.startswith("/api/") else {}
            first = client.get(path, headers=headers_of_page)
            if first.status_code != 200:
                print(f"bench: ui_grid: GET {path} answered {first.status_code}; "
                      f"{figure} is n/a", file=sys.stderr)
                values[figure] = None
                continue
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                response = client.get(path, headers=headers_of_page)
                times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200
            values[figure] = statistics.median(times)
    return values

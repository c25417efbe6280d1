"""The ``headwater`` command line as scripts use it: the ``--output json`` contract, exit codes
and messages. Commands that only read or write the store run in-process with click's CliRunner;
``dags test`` and ``tasks test`` (which run task code in child processes) run as real processes.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from scheduler.cli import main
from tests.e2e.procs import hw

RUN_KEYS = {"run_id", "state", "run_type", "logical_date", "data_interval_start",
            "data_interval_end", "start_date", "end_date", "version"}
TI_KEYS = {"task_id", "map_index", "state", "try_number", "start_date", "end_date"}
DAG_KEYS = {"dag_id", "schedule", "paused", "next_run", "tags", "fileloc"}

SUMS = """
    from datetime import datetime
    from scheduler import DAG, Param, task
    from scheduler.operators import BashOperator

    with DAG("sums", schedule="@daily", start_date=datetime(2024, 1, 1), tags=["team-a"],
             params={"batch_size": Param(3, type="integer")}):
        @task
        def numbers():
            return [1, 2, 3]

        @task
        def total(values):
            return sum(values)

        # A BashOperator's XCom is the last line of its stdout.
        stamp = BashOperator(task_id="stamp", bash_command="echo stamping; echo {{ ds }}")
        total(numbers()) >> stamp
"""

MANUAL = """
    from datetime import datetime
    from scheduler import DAG
    from scheduler.operators import EmptyOperator

    with DAG("manual", schedule=None, start_date=datetime(2024, 1, 1)):
        EmptyOperator(task_id="only")
"""

BOOM = """
    from datetime import datetime
    from scheduler import DAG
    from scheduler.operators import PythonOperator

    def explode():
        raise RuntimeError("the task blew up on purpose")

    with DAG("boom", schedule=None, start_date=datetime(2024, 1, 1)):
        PythonOperator(task_id="explode", python_callable=explode)
"""

BROKEN = "from scheduler import DAG\n\nx = 1\nraise ValueError('broken on purpose')\n"


# --- helpers ------------------------------------------------------------------------------------

@pytest.fixture
def cli(home: Path) -> Callable[..., Result]:
    """Invoke ``headwater ARGS`` in this process, with this test's HEADWATER_HOME."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("HEADWATER")}
    env.update(HEADWATER_HOME=str(home), HEADWATER__CORE__DAGS_FOLDER=str(home / "dags"))
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env=env, prog_name="headwater")

    return invoke


@pytest.fixture
def cli_json(cli: Callable[..., Result]) -> Callable[..., Any]:
    """``headwater ARGS --output json`` in this process; must succeed; returns the parsed stdout."""

    def invoke(*args: str) -> Any:
        result = cli(*args, "--output", "json")
        assert result.exit_code == 0, _describe(args, result)
        return json.loads(result.stdout)

    return invoke


def _describe(args: tuple[str, ...], result: Result) -> str:
    return (f"headwater {' '.join(args)} exited {result.exit_code}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nexception: {result.exception!r}")


def assert_clean_failure(result: Result, *fragments: str) -> None:
    """Exit code 1 with an error message containing ``fragments``, and no traceback: the command
    ended through click's error handling, not through an exception that escaped."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), (
        f"an exception escaped instead of a clean error: {result.exception!r}")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in the error: {result.stderr!r}"


def dags_test(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run ``headwater dags test ARGS --output json`` as a process: (exit code, its JSON)."""
    proc = hw(env, "dags", "test", *args, "--output", "json", check=False)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"dags test {' '.join(args)} printed no JSON (exit "
                             f"{proc.returncode})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")


def _command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()
                   ) -> Iterator[tuple[str, ...]]:
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _command_paths(cmd, (*prefix, name))


def _squash(text: str) -> str:
    return " ".join(text.split())


# --- help ---------------------------------------------------------------------------------------

def test_top_level_help_lists_the_command_groups(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0, result.output
    commands = result.output.split("Commands:", 1)[1]
    for name in ("dags", "tasks", "db", "xcom", "scheduler", "webserver", "standalone"):
        assert re.search(rf"^\s+{name}\s", commands, re.MULTILINE), f"{name} not in --help"


@pytest.mark.parametrize("path", list(_command_paths()), ids=" ".join)
def test_every_command_has_a_help_page_with_its_description(cli, path) -> None:
    cmd: click.Command = main
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    description = (cmd.help or "").strip()
    assert description, f"headwater {' '.join(path)} has no description"
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert f"headwater {' '.join(path)}" in result.output  # the usage line
    assert _squash(description.splitlines()[0]) in _squash(result.output)


# --- db -----------------------------------------------------------------------------------------

def test_db_migrate_creates_the_store_and_is_safe_to_repeat(cli, home) -> None:
    store = home / "headwater.db"
    assert not store.exists()
    first = cli("db", "migrate")
    assert first.exit_code == 0, first.output
    assert store.exists()
    assert "up to date" not in first.output
    again = cli("db", "migrate")
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output
    check = cli("db", "check")
    assert check.exit_code == 0, check.output


def _set_store_revision(home: Path, revision: str) -> None:
    conn = sqlite3.connect(home / "headwater.db")
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


def test_a_store_at_another_schema_revision_is_refused_with_the_fix(
        cli, home, write_dag) -> None:
    write_dag("manual.py", MANUAL)
    assert cli("db", "migrate").exit_code == 0
    _set_store_revision(home, "0001")  # an older schema this Headwater knows how to upgrade
    result = cli("dags", "list")
    assert_clean_failure(result, "headwater db migrate")
    assert_clean_failure(cli("db", "check"), "headwater db migrate")


def test_db_migrate_of_a_store_at_an_unknown_revision_fails_with_a_message(cli, home) -> None:
    # `dags list` tells the user to run `db migrate` for such a store; that command must then
    # fail as cleanly (exit 1, a message naming the revision), not with a traceback.
    assert cli("db", "migrate").exit_code == 0
    _set_store_revision(home, "0000")
    assert_clean_failure(cli("db", "migrate"), "0000", "does not know")
    assert_clean_failure(cli("dags", "list"), "0000", "does not know")


# --- dags list, pause, unpause ------------------------------------------------------------------

def test_dags_list_json_has_the_contract_keys(cli_json, write_dag) -> None:
    sums_path = write_dag("sums.py", SUMS)
    manual_path = write_dag("manual.py", MANUAL)
    rows = {row["dag_id"]: row for row in cli_json("dags", "list")}
    assert set(rows) == {"sums", "manual"}
    for row in rows.values():
        assert set(row) == DAG_KEYS
    sums, manual = rows["sums"], rows["manual"]
    assert sums["schedule"] == "@daily" and sums["tags"] == ["team-a"]
    assert sums["paused"] is False  # new DAGs are unpaused by default
    assert Path(sums["fileloc"]) == sums_path and Path(manual["fileloc"]) == manual_path
    assert datetime.fromisoformat(sums["next_run"]).tzinfo is not None
    assert manual["next_run"] is None  # schedule=None: no run is ever owed
    assert manual["schedule"] is None  # null, not the text "None"


def test_import_errors_go_to_stderr_with_file_and_line_and_spare_the_good_dags(
        cli, write_dag) -> None:
    write_dag("sums.py", SUMS)
    broken = write_dag("broken.py", BROKEN)
    result = cli("dags", "list", "--output", "json")
    assert [row["dag_id"] for row in json.loads(result.stdout)] == ["sums"]
    assert f"{broken}:4" in result.stderr
    assert "broken on purpose" in result.stderr

    write_dag("broken.py", MANUAL)
    fixed = cli("dags", "list", "--output", "json")
    assert {row["dag_id"] for row in json.loads(fixed.stdout)} == {"sums", "manual"}
    assert str(broken) not in fixed.stderr


def test_pause_and_unpause_change_paused_in_dags_list(cli, cli_json, write_dag) -> None:
    write_dag("sums.py", SUMS)
    write_dag("manual.py", MANUAL)

    def paused() -> dict[str, bool]:
        return {row["dag_id"]: row["paused"] for row in cli_json("dags", "list")}

    assert paused() == {"sums": False, "manual": False}
    assert cli("dags", "pause", "sums").exit_code == 0
    assert paused() == {"sums": True, "manual": False}
    assert cli("dags", "unpause", "sums").exit_code == 0
    assert paused() == {"sums": False, "manual": False}
    assert_clean_failure(cli("dags", "pause", "nosuchdag"), "nosuchdag")


# --- dags trigger, list-runs ---------------------------------------------------------------------

def test_trigger_prints_the_queued_manual_run(cli_json, write_dag) -> None:
    write_dag("sums.py", SUMS)
    run = cli_json("dags", "trigger", "sums", "--conf", '{"batch_size": 5}', "--run-id", "r1")
    assert set(run) == RUN_KEYS
    assert run["run_id"] == "r1"
    assert run["state"] == "queued"
    assert run["run_type"] == "manual"
    [listed] = cli_json("dags", "list-runs", "sums")
    assert listed["run_id"] == "r1" and listed["state"] == "queued"


def test_trigger_refuses_a_run_id_that_is_taken(cli, cli_json, write_dag) -> None:
    write_dag("sums.py", SUMS)
    cli_json("dags", "trigger", "sums", "--run-id", "r1")
    assert_clean_failure(cli("dags", "trigger", "sums", "--run-id", "r1"), "r1")
    assert len(cli_json("dags", "list-runs", "sums")) == 1


def test_trigger_refuses_conf_of_the_wrong_type_for_a_param(cli, cli_json, write_dag) -> None:
    write_dag("sums.py", SUMS)
    result = cli("dags", "trigger", "sums", "--conf", '{"batch_size": "three"}')
    assert result.exit_code != 0
    assert "batch_size" in result.stderr
    assert "Traceback" not in result.output
    assert cli_json("dags", "list-runs", "sums") == []


def test_trigger_of_an_unknown_dag_names_it(cli, write_dag) -> None:
    write_dag("sums.py", SUMS)
    assert_clean_failure(cli("dags", "trigger", "nosuchdag"), "nosuchdag")


def test_a_date_alone_means_midnight_utc_whatever_the_local_time_zone(
        env, cli, write_dag) -> None:
    write_dag("manual.py", MANUAL)
    # A real process in a time zone other than UTC: a date read as local midnight would show.
    proc = hw({**env, "TZ": "Asia/Kolkata"}, "dags", "trigger", "manual",
              "--logical-date", "2024-03-01", "--run-id", "d", "--output", "json")
    logical = datetime.fromisoformat(json.loads(proc.stdout)["logical_date"])
    assert logical == datetime(2024, 3, 1, tzinfo=UTC)
    bad = cli("dags", "trigger", "manual", "--logical-date", "first of March")
    assert bad.exit_code == 2 and "--logical-date" in bad.output


def test_list_runs_json_has_the_contract_keys_and_pins_each_run_to_its_version(
        cli_json, write_dag) -> None:
    write_dag("manual.py", MANUAL)
    cli_json("dags", "trigger", "manual", "--run-id", "before")
    write_dag("manual.py", MANUAL.replace('"only"', '"changed"'))
    cli_json("dags", "trigger", "manual", "--run-id", "after")
    runs = {run["run_id"]: run for run in cli_json("dags", "list-runs", "manual")}
    assert set(runs) == {"before", "after"}
    for run in runs.values():
        assert set(run) == RUN_KEYS
        assert run["run_type"] == "manual"
        assert re.fullmatch(r"[0-9a-f]{6,16}", run["version"]), run["version"]
    assert runs["before"]["version"] != runs["after"]["version"]


def test_list_runs_of_an_unknown_dag_names_it(cli) -> None:
    assert_clean_failure(cli("dags", "list-runs", "nosuchdag"), "nosuchdag")


# --- dags test, states-for-run, xcom get, tasks logs ---------------------------------------------

def test_dags_test_runs_the_dag_for_the_given_logical_date(
        env, cli, cli_json, write_dag) -> None:
    write_dag("sums.py", SUMS)
    code, out = dags_test(env, "sums", "2024-03-01")
    assert code == 0, out
    assert out["state"] == "success"
    run_id = out["run_id"]

    [run] = cli_json("dags", "list-runs", "sums")
    assert run["run_id"] == run_id and run["state"] == "success"
    assert datetime.fromisoformat(run["logical_date"]) == datetime(2024, 3, 1, tzinfo=UTC)

    states = cli_json("tasks", "states-for-run", "sums", run_id)
    for ti in states:
        assert set(ti) == TI_KEYS
    assert {ti["task_id"]: ti["state"] for ti in states} == {
        "numbers": "success", "total": "success", "stamp": "success"}

    stamp = cli("xcom", "get", "sums", run_id, "stamp")
    assert stamp.exit_code == 0, stamp.output
    assert json.loads(stamp.stdout) == "2024-03-01"  # {{ ds }} is the logical date's date
    total = cli("xcom", "get", "sums", run_id, "total")
    assert total.exit_code == 0, total.output
    assert total.stdout.strip() == "6"


def test_dags_test_exits_1_when_a_task_fails(env, write_dag) -> None:
    write_dag("boom.py", BOOM)
    code, out = dags_test(env, "boom")
    assert code == 1
    assert out["state"] == "failed"
    assert [ti["state"] for ti in out["task_instances"]] == ["failed"]


def test_dags_test_starts_each_task_as_soon_as_its_upstream_ends(env, write_dag) -> None:
    # `dags test` is the quick feedback loop of DAG authors: a task waits for its upstream's
    # end, not for a polling interval (a hop takes milliseconds; 0.5 s is a generous bound).
    write_dag("chain.py", """
        from datetime import datetime
        from scheduler import DAG, chain
        from scheduler.operators import EmptyOperator

        with DAG("chain", schedule=None, start_date=datetime(2024, 1, 1)):
            chain(*[EmptyOperator(task_id=f"t{i}") for i in range(4)])
    """)
    code, out = dags_test(env, "chain")
    assert code == 0, out
    tis = {ti["task_id"]: ti for ti in out["task_instances"]}
    gaps = {
        f"t{i - 1} -> t{i}": (datetime.fromisoformat(tis[f"t{i}"]["start_date"])
                              - datetime.fromisoformat(tis[f"t{i - 1}"]["end_date"])
                              ).total_seconds()
        for i in range(1, 4)
    }
    assert max(gaps.values()) < 0.5, f"seconds between a task's end and the next start: {gaps}"


def test_xcom_get_of_a_missing_key_exits_1_naming_it(env, cli, write_dag) -> None:
    write_dag("manual.py", MANUAL)
    code, out = dags_test(env, "manual")
    assert code == 0, out
    result = cli("xcom", "get", "manual", out["run_id"], "only", "--key", "no_such_key")
    assert_clean_failure(result, "no_such_key")
    assert result.stdout == ""


def test_tasks_logs_prints_the_log_of_the_chosen_attempt(env, home, cli, write_dag) -> None:
    marker = home / "failed-once"
    write_dag("flaky.py", f"""
        from datetime import datetime, timedelta
        from pathlib import Path
        from scheduler import DAG
        from scheduler.operators import PythonOperator

        def flaky():
            marker = Path({str(marker)!r})
            if not marker.exists():
                marker.write_text("x")
                raise RuntimeError("attempt one fails")
            print("attempt two works")

        with DAG("flaky", schedule=None, start_date=datetime(2024, 1, 1)):
            PythonOperator(task_id="flaky", python_callable=flaky, retries=1,
                           retry_delay=timedelta(0))
    """)
    code, out = dags_test(env, "flaky")
    assert code == 0, out
    run_id = out["run_id"]
    [ti] = out["task_instances"]
    assert ti["try_number"] == 2

    first = cli("tasks", "logs", "flaky", run_id, "flaky", "--try", "1")
    assert first.exit_code == 0, first.output
    assert "attempt one fails" in first.stdout and "attempt two works" not in first.stdout
    second = cli("tasks", "logs", "flaky", run_id, "flaky", "--try", "2")
    assert second.exit_code == 0, second.output
    assert "attempt two works" in second.stdout and "attempt one fails" not in second.stdout
    latest = cli("tasks", "logs", "flaky", run_id, "flaky")
    assert latest.stdout == second.stdout
    assert_clean_failure(cli("tasks", "logs", "flaky", run_id, "flaky", "--try", "3"), "3")


# --- tasks test ---------------------------------------------------------------------------------

def test_tasks_test_runs_one_task_prints_its_xcom_and_records_nothing(
        env, cli_json, write_dag) -> None:
    write_dag("sums.py", SUMS)
    proc = hw(env, "tasks", "test", "sums", "stamp", "2024-03-01")
    assert '"2024-03-01"' in proc.stdout  # the task's XCom: its templated last stdout line
    proc = hw(env, "tasks", "test", "sums", "numbers")
    assert "[1, 2, 3]" in proc.stdout
    assert cli_json("dags", "list-runs", "sums") == []


def test_tasks_test_exits_1_when_the_task_raises(env, cli_json, write_dag) -> None:
    write_dag("boom.py", BOOM)
    proc = hw(env, "tasks", "test", "boom", "explode", check=False)
    assert proc.returncode == 1
    assert "the task blew up on purpose" in proc.stdout + proc.stderr
    assert cli_json("dags", "list-runs", "boom") == []

"""The example DAGs of the repo's dags/ folder (what `make run` serves) import cleanly and each
runs green with `headwater dags test`."""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.procs import hw

pytestmark = pytest.mark.slow

EXAMPLES = REPO / "dags"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.py"))


@pytest.fixture
def examples_env(env: dict[str, str]) -> dict[str, str]:
    """This test's HEADWATER_HOME, with the repo's dags/ and plugins/ as `make run` has them."""
    return {**env, "HEADWATER__CORE__DAGS_FOLDER": str(EXAMPLES),
            "HEADWATER__CORE__PLUGINS_FOLDER": str(REPO / "plugins")}


def test_the_examples_folder_has_dag_files() -> None:
    assert EXAMPLE_FILES, f"no DAG files in {EXAMPLES}"


def test_dags_list_reports_every_example_and_no_import_error(examples_env) -> None:
    proc = hw(examples_env, "dags", "list", "--output", "json")
    assert "Import error" not in proc.stderr, proc.stderr
    files_with_dags = {Path(row["fileloc"]) for row in json.loads(proc.stdout)}
    assert files_with_dags == set(EXAMPLE_FILES)


def documented_test_arguments(dag_file: Path, dag_id: str) -> list[str]:
    """The arguments an example's docstring gives for `headwater dags test DAG_ID ...` (e.g.
    the signals a DAG waits for), so each example runs the way its documentation says."""
    prefix = f"headwater dags test {dag_id}"
    for line in (ast.get_docstring(ast.parse(dag_file.read_text())) or "").splitlines():
        line = line.strip()
        if line.startswith(prefix):
            return shlex.split(line[len(prefix):])
    return []


@pytest.mark.parametrize("dag_file", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_dag_of_an_example_file_runs_green(examples_env, dag_file: Path) -> None:
    listed = json.loads(hw(examples_env, "dags", "list", "--output", "json").stdout)
    dag_ids = [row["dag_id"] for row in listed if Path(row["fileloc"]) == dag_file]
    assert dag_ids, f"{dag_file.name} declares no DAG"
    for dag_id in dag_ids:
        extra = documented_test_arguments(dag_file, dag_id)
        proc = hw(examples_env, "dags", "test", dag_id, *extra, "--output", "json",
                  check=False)
        assert proc.returncode == 0, f"{dag_id}:\n{proc.stdout}\n{proc.stderr}"
        result = json.loads(proc.stdout)
        assert result["state"] == "success"
        assert {ti["state"] for ti in result["task_instances"]} == {"success"}, result

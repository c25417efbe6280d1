"""The benchmark harness runs every workload of BENCHMARKS.md (at tiny sizes) against real
``headwater`` processes and prints every figure as ``name value unit``, and writes them to
``--json``. No timing is asserted: figures are the harness's business, not the tests'."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.registry import canonical
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--small", "--repeat", "1", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    data = json.loads(out.read_text()) if out.exists() else {}
    return proc, data


def _ui_pages_missing(settings: Any, engine: Any) -> set[str]:
    """The ui_grid figures whose page the web UI does not have yet (printed as n/a)."""
    from webui import create_app

    rules = [r.rule for r in create_app(settings, engine=engine).url_map.iter_rules()]
    missing = set()
    if not any(r.startswith("/dags/") and r.endswith("/graph") for r in rules):
        missing.add("ui_grid.graph_ms")
    if not any(r.startswith("/api/v1/dags/") and r.endswith("/dagRuns") for r in rules):
        missing.add("ui_grid.api_dag_runs_ms")
    return missing


def _figure_lines(stdout: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split("#")[0].split()
            for line in stdout.splitlines() if line.strip() and not line.startswith("#")}


def test_the_small_harness_runs_every_workload_without_error(small_run) -> None:
    proc, data = small_run
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert data["meta"]["errors"] == []


def test_every_figure_is_printed_as_name_value_unit(small_run, settings, engine) -> None:
    proc, _ = small_run
    lines = _figure_lines(proc.stdout)
    missing_pages = _ui_pages_missing(settings, engine)
    for workload in canonical(small=True).values():
        for suffix, unit in workload.figures:
            name = f"{workload.name}.{suffix}"
            assert name in lines, f"{name} not printed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
            if name in missing_pages:
                assert lines[name] == [name, "n/a"]
                continue
            tokens = lines[name]
            assert len(tokens) == 3 and tokens[2] == unit, tokens
            assert float(tokens[1]) >= 0, tokens


def test_the_json_file_holds_every_printed_figure(small_run) -> None:
    proc, data = small_run
    lines = _figure_lines(proc.stdout)
    by_name = {f["name"]: f for f in data["figures"]}
    assert set(by_name) == set(lines)
    for name, tokens in lines.items():
        figure = by_name[name]
        if tokens[1] == "n/a":
            assert figure["value"] is None
        else:
            assert figure["unit"] == tokens[2]
            assert figure["values"] and figure["value"] == pytest.approx(float(tokens[1]),
                                                                         rel=1e-3)
    assert data["meta"]["small"] is True and data["meta"]["store"] == "sqlite"
    # The machine's speed when the figures were taken, to tell which runs compare.
    assert data["meta"]["fork_probe_ms"] > 0
    printed = re.search(r"fork_probe=([0-9.]+)ms", proc.stdout)
    assert printed and float(printed.group(1)) == pytest.approx(
        data["meta"]["fork_probe_ms"], abs=0.006)


def test_an_unknown_workload_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown workload 'nope'" in proc.stderr and "chain_50" in proc.stderr

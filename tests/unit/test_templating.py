"""Templating: sandboxed, strict Jinja over nested values, template files and macros."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError, TemplateNotFound, UndefinedError

from scheduler import DAG
from scheduler.operators import EmptyOperator
from scheduler.templating import macros, make_jinja_env, render, resolve

CONTEXT = {"ds": "2024-03-01", "params": {"name": "world"}, "macros": macros}


def test_render_recurses_into_containers() -> None:
    env = make_jinja_env()
    pair = namedtuple("pair", "left right")
    value = {"a": ["{{ ds }}", ("x", "{{ params.name }}")], "b": {"{{ ds }}"},
            "c": pair("{{ ds }}", 1), "d": 5, "{{ key }}": "keys stay"}
    assert render(value, CONTEXT, env) == {
        "a": ["2024-03-01", ("x", "world")], "b": {"2024-03-01"},
        "c": pair("2024-03-01", 1), "d": 5, "{{ key }}": "keys stay"}


def test_undefined_names_raise() -> None:
    with pytest.raises(UndefinedError):
        render("{{ nope }}", CONTEXT, make_jinja_env())


def test_the_sandbox_blocks_unsafe_attribute_access() -> None:
    env = make_jinja_env()
    with pytest.raises(SecurityError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", CONTEXT, env)
    with pytest.raises(SecurityError):
        render("{{ macros.ds_add.__globals__ }}", CONTEXT, env)


def test_macros_and_filters() -> None:
    env = make_jinja_env()
    assert render("{{ macros.ds_add(ds, 5) }}", CONTEXT, env) == "2024-03-06"
    assert render("{{ macros.ds_add(ds, -1) }}", CONTEXT, env) == "2024-02-29"
    assert render("{{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }}", CONTEXT, env) == (
        "01/03/2024")
    context = {**CONTEXT, "when": macros.datetime(2024, 3, 1, 6, 30)}
    assert render("{{ when | ds_nodash }} {{ when | ts_nodash }}", context, env) == (
        "20240301 20240301T063000")
    assert render("{{ (macros.timedelta(hours=2)).seconds }}", CONTEXT, env) == "7200"


def test_user_defined_macros_are_globals() -> None:
    d = DAG("macros", user_defined_macros={"project": "headwater", "double": lambda x: 2 * x})
    env = make_jinja_env(d)
    assert render("{{ project }}-{{ double(21) }}", CONTEXT, env) == "headwater-42"


def test_template_files_beside_the_dag_and_on_the_searchpath(tmp_path: Path) -> None:
    dag_dir, shared = tmp_path / "dags", tmp_path / "shared"
    dag_dir.mkdir()
    shared.mkdir()
    (dag_dir / "local.sh").write_text("echo {{ ds }}")
    (shared / "common.sql").write_text("select '{{ params.name }}'")
    d = DAG("files", template_searchpath=str(shared))
    d.fileloc = str(dag_dir / "files.py")
    env = make_jinja_env(d)
    exts = (".sh", ".sql")
    assert render("local.sh", CONTEXT, env, template_ext=exts) == "echo 2024-03-01"
    assert render("common.sql", CONTEXT, env, template_ext=exts) == "select 'world'"
    # a command that merely ends in .sh is rendered as it is
    assert render("bash {{ ds }}.sh", CONTEXT, env, template_ext=exts) == "bash 2024-03-01.sh"
    with pytest.raises(TemplateNotFound, match="missing.sh"):
        render("missing.sh", CONTEXT, env, template_ext=exts)


def test_xcomargs_are_resolved_not_rendered() -> None:
    class TI:
        def xcom_pull(self, task_ids: Any = None, key: str = "return_value") -> Any:
            return "{{ not rendered }}" if key == "return_value" else key

    with DAG("resolve"):
        out = EmptyOperator(task_id="up").output
    context = {**CONTEXT, "ti": TI()}
    assert render([out, out["k"]], context, make_jinja_env()) == ["{{ not rendered }}", "k"]
    assert resolve({"x": (out,)}, context) == {"x": ("{{ not rendered }}",)}

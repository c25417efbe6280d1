"""Plugins: files of the plugins folder give DAG files operators and templates macros, and the
web UI links; a broken plugin file is reported without stopping the others."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from scheduler import plugins
from scheduler.templating import make_jinja_env, render
from tests.conftest import REPO
from tests.e2e.procs import hw

SHOUTING = """
    from scheduler.operators import BaseOperator
    from scheduler.plugins import HeadwaterPlugin

    def shout(text):
        return str(text).upper() + "!"

    def ds_add(ds, days):  # would shadow a built-in macro: must not
        return "plugin's ds_add"

    class ShoutOperator(BaseOperator):
        template_fields = ("text",)

        def __init__(self, *, text, **kwargs):
            super().__init__(**kwargs)
            self.text = text

        def execute(self, context):
            return shout(self.text)

    class ShoutingPlugin(HeadwaterPlugin):
        name = "shouting"
        macros = [shout, ds_add]
        links = [{"name": "Runbook", "href": "https://wiki.example.com/runbook"},
                 {"name": "no href"}]
        appbuilder_menu_items = [{"name": "Grafana", "href": "https://grafana.example.com",
                                  "category": "Monitoring"}]
"""


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Each test sees only the plugins it loads; modules and sys.path are restored."""
    registry, loaded = dict(plugins._REGISTRY), dict(plugins._LOADED)
    modules, path = set(sys.modules), list(sys.path)
    plugins._REGISTRY.clear()
    plugins._LOADED.clear()
    yield
    plugins._REGISTRY.clear()
    plugins._REGISTRY.update(registry)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def test_loaded_plugin_macros_render_in_templates_without_shadowing_builtins(home) -> None:
    write(home / "plugins", "shouting_plugin.py", SHOUTING)
    report = plugins.load_plugins(home / "plugins")
    assert report.modules == ["shouting_plugin"] and report.errors == {}
    env = make_jinja_env()
    context = {"ds": "2024-03-01"}
    assert render("{{ macros.shout(ds) }}", context, env) == "2024-03-01!"
    assert render("{{ macros.shouting.shout('hi') }}", context, env) == "HI!"
    assert render("{{ macros.ds_add(ds, 1) }}", context, env) == "2024-03-02"


def test_dag_files_import_plugin_operators_as_the_same_module(home) -> None:
    write(home / "plugins", "shouting_plugin.py", SHOUTING)
    plugins.load_plugins(home / "plugins")
    from shouting_plugin import ShoutOperator  # type: ignore[import-not-found]

    assert ShoutOperator is sys.modules["shouting_plugin"].ShoutOperator
    assert plugins.load_plugins(home / "plugins").modules == ["shouting_plugin"]  # once only


def test_plugin_links_for_the_web_ui_skip_incomplete_entries(home) -> None:
    write(home / "plugins", "shouting_plugin.py", SHOUTING)
    links = plugins.plugin_links(SimpleNamespace(plugins_folder=home / "plugins"))
    assert links == [
        {"name": "Runbook", "href": "https://wiki.example.com/runbook"},
        {"name": "Grafana", "href": "https://grafana.example.com", "category": "Monitoring"},
    ]


def test_a_broken_plugin_is_reported_and_the_others_still_load(home) -> None:
    write(home / "plugins", "a_broken.py", "raise RuntimeError('broken on purpose')\n")
    write(home / "plugins", "b_exits.py", "import sys\nsys.exit(3)\n")
    write(home / "plugins", "shouting_plugin.py", SHOUTING)
    write(home / "plugins", "_private.py", "raise RuntimeError('never imported')\n")
    report = plugins.load_plugins(home / "plugins")
    assert report.modules == ["shouting_plugin"]
    assert "broken on purpose" in report.errors[str(home / "plugins" / "a_broken.py")]
    assert str(home / "plugins" / "b_exits.py") in report.errors
    assert [p.name for p in plugins.registered()] == ["shouting"]


def test_a_plugin_without_a_name_or_with_a_bad_macro_is_refused() -> None:
    with pytest.raises(plugins.PluginError, match="needs a `name"):
        type("Nameless", (plugins.HeadwaterPlugin,), {})
    with pytest.raises(plugins.PluginError, match="not callable"):
        type("Bad", (plugins.HeadwaterPlugin,), {"name": "bad", "macros": {"x": 3}})


def test_a_missing_plugins_folder_loads_nothing(tmp_path) -> None:
    assert plugins.load_plugins(tmp_path / "nope").modules == []
    assert plugins.plugin_links(SimpleNamespace(plugins_folder=tmp_path / "nope")) == []


@pytest.mark.slow
def test_a_dag_runs_a_plugin_operator_and_renders_its_macro(env, home, write_dag) -> None:
    write(home / "plugins", "shouting_plugin.py", SHOUTING)
    write_dag("shouts.py", """
        from datetime import datetime
        from shouting_plugin import ShoutOperator
        from scheduler import DAG
        from scheduler.operators import BashOperator

        with DAG("shouts", schedule=None, start_date=datetime(2024, 1, 1)):
            ShoutOperator(task_id="shout", text="{{ ds }}") >> BashOperator(
                task_id="echo", bash_command="echo {{ macros.shouting.shout('done') }}")
    """)
    proc = hw(env, "dags", "test", "shouts", "2024-03-01", "--output", "json")
    assert json.loads(proc.stdout)["state"] == "success"
    runs = json.loads(hw(env, "dags", "list-runs", "shouts", "--output", "json").stdout)
    run_id = runs[0]["run_id"]
    assert json.loads(hw(env, "xcom", "get", "shouts", run_id, "shout").stdout) == "2024-03-01!"
    assert json.loads(hw(env, "xcom", "get", "shouts", run_id, "echo").stdout) == "DONE!"
    rendered = json.loads(hw(env, "tasks", "render", "shouts", "echo", "2024-03-01",
                             "--output", "json").stdout)
    assert rendered["bash_command"] == "echo DONE!"


@pytest.mark.slow
def test_the_repos_example_plugin_dag_runs_green(env) -> None:
    repo_env = {**env, "HEADWATER__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "HEADWATER__CORE__PLUGINS_FOLDER": str(REPO / "plugins")}
    proc = hw(repo_env, "dags", "test", "plugin_example", "--output", "json", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {t["task_id"]: t["state"] for t in json.loads(proc.stdout)["task_instances"]} == {
        "greet": "success", "announce": "success"}

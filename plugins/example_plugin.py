"""An example plugin: a custom operator, a template macro and a web UI link.

Headwater imports every Python file of the plugins folder (``[core] plugins_folder``, this
folder for ``make run``), and DAG files import from them like any module::

    from example_plugin import GreetOperator

The :class:`ExamplePlugin` class below makes ``shout`` a template macro
(``{{ macros.shout(ds) }}``, or ``{{ macros.example.shout(ds) }}``) and adds a link to the
web UI's menu. ``dags/plugin_example.py`` uses all three.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from scheduler.operators import BaseOperator
from scheduler.plugins import HeadwaterPlugin


def shout(text: str) -> str:
    """``text`` in capitals with an exclamation mark: ``shout("hi") == "HI!"``."""
    return f"{str(text).upper()}!"


class GreetOperator(BaseOperator):
    """Greets ``name`` (templated) in the task log and returns the greeting as its XCom."""

    template_fields: ClassVar[Sequence[str]] = ("name",)
    ui_color = "#f0e4ff"

    def __init__(self, *, name: str, greeting: str = "Hello", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.greeting = greeting

    def execute(self, context: Mapping[str, Any]) -> str:
        message = f"{self.greeting}, {self.name}!"
        print(message)
        return message


class ExamplePlugin(HeadwaterPlugin):
    name = "example"
    macros = [shout]
    operators = [GreetOperator]
    links = [{"name": "Plugin docs", "href": "https://airflow.apache.org/docs/apache-airflow/"
                                             "stable/authoring-and-scheduling/plugins.html"}]

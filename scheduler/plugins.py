"""Plugins: Python files in the plugins folder (``[core] plugins_folder``, default
``$HEADWATER_HOME/plugins``) that add operators, sensors, template macros and web UI links.

The parser and the worker put the plugins folder on ``sys.path`` before they import a DAG file,
so a DAG file imports a plugin's operators and sensors like any module::

    from example_plugin import GreetOperator

A plugin declares its macros and UI links with a :class:`HeadwaterPlugin` subclass (Airflow's
``AirflowPlugin`` shape; ``AirflowPlugin`` is an alias)::

    class ExamplePlugin(HeadwaterPlugin):
        name = "example"
        macros = [shout]                      # {{ macros.example.shout(ds) }} and
                                              # {{ macros.shout(ds) }} in templates
        links = [{"name": "Runbook", "href": "https://wiki.example.com/runbook"}]

Defining the subclass registers it (importing the plugin's module is enough);
:func:`load_plugins` imports every file of a folder. The registry is per process: the
processes that render templates or serve the UI load the folder (or import the plugin
through a DAG file) before they read it.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar

log = logging.getLogger("headwater.plugins")


class HeadwaterPlugin:
    """Subclass this in a plugin file to contribute macros and UI links.

    - ``name``: the plugin's name (required; the namespace of its macros in templates).
    - ``macros``: functions (a list, named by their ``__name__``, or a dict name -> function),
      available in templates as ``macros.<name>.<fn>`` and, unless a built-in macro has that
      name, ``macros.<fn>``.
    - ``links`` (or Airflow's ``appbuilder_menu_items``): dicts with ``name`` and ``href`` shown
      in the web UI's menu.
    - ``operators``, ``sensors``: the classes the plugin provides, listed for documentation
      (DAG files import them from the plugin's module).
    """

    name: ClassVar[str] = ""
    macros: ClassVar[Sequence[Callable[..., Any]] | Mapping[str, Callable[..., Any]]] = ()
    links: ClassVar[Sequence[Mapping[str, str]]] = ()
    appbuilder_menu_items: ClassVar[Sequence[Mapping[str, str]]] = ()
    operators: ClassVar[Sequence[type]] = ()
    sensors: ClassVar[Sequence[type]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register(cls)


#: Airflow's name, for ported plugin files.
AirflowPlugin = HeadwaterPlugin

_REGISTRY: dict[str, type[HeadwaterPlugin]] = {}


class PluginError(ValueError):
    """A plugin class that cannot be registered (no name, a macro that is not callable)."""


def register(plugin: type[HeadwaterPlugin]) -> None:
    """Add ``plugin`` to this process's registry (a later class of the same name replaces an
    earlier one, so re-importing a plugin file is harmless). Raises PluginError when it
    declares no ``name`` or a macro that is not callable."""
    if not plugin.name:
        raise PluginError(f"plugin class {plugin.__qualname__} needs a `name = \"...\"`")
    for fn_name, fn in _macro_items(plugin):
        if not callable(fn):
            raise PluginError(f"macro {fn_name!r} of plugin {plugin.name!r} is not callable")
    _REGISTRY[plugin.name] = plugin


def registered() -> list[type[HeadwaterPlugin]]:
    """The plugin classes registered in this process, by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def _macro_items(plugin: type[HeadwaterPlugin]) -> list[tuple[str, Any]]:
    macros = plugin.macros
    if isinstance(macros, Mapping):
        return list(macros.items())
    return [(getattr(fn, "__name__", repr(fn)), fn) for fn in macros]


def plugin_macros() -> dict[str, Any]:
    """Macros of the registered plugins for the templates' ``macros`` object: each plugin's
    as a namespace under its name, and each macro under its own name too."""
    flat: dict[str, Any] = {}
    spaces: dict[str, Any] = {}
    for plugin in registered():
        items = _macro_items(plugin)
        if not items:
            continue
        spaces[plugin.name] = SimpleNamespace(**dict(items))
        for fn_name, fn in items:
            flat.setdefault(fn_name, fn)
    return {**flat, **spaces}


# --- loading a folder ---------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What :func:`load_plugins` found: module names imported, and errors by file."""

    modules: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


_LOADED: dict[Path, LoadReport] = {}


def _plugin_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if (p.suffix == ".py" and p.is_file())
             or (p.is_dir() and (p / "__init__.py").is_file())]
    return sorted(p for p in files if not p.name.startswith(("_", ".")))


def _import(path: Path) -> ModuleType:
    name = path.stem if path.suffix == ".py" else path.name
    location = path if path.suffix == ".py" else path / "__init__.py"
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == (
            location.resolve()):
        return existing  # a DAG file imported it already
    spec = importlib.util.spec_from_file_location(
        name, location, submodule_search_locations=[str(path)] if path.is_dir() else None)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {location}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_plugins(folder: Path | str | None) -> LoadReport:
    """Import every plugin module of ``folder`` (``*.py`` files and packages not starting with
    ``_``) under its own name, so DAG files that import it get the same module, and register
    its :class:`HeadwaterPlugin` classes. Done once per folder and process; a missing folder
    loads nothing.

    A file that fails to import is logged and reported in ``errors``, never raised: one broken
    plugin must not stop the scheduler or the web UI.
    """
    if folder is None:
        return LoadReport()
    path = Path(folder).resolve()
    if path in _LOADED:
        return _LOADED[path]
    report = LoadReport()
    if path.is_dir():
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
        for file in _plugin_files(path):
            try:
                report.modules.append(_import(file).__name__)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code
                report.errors[str(file)] = "".join(
                    traceback.format_exception_only(type(exc), exc)).strip()
                log.error("plugin %s failed to import: %s", file, report.errors[str(file)])
    _LOADED[path] = report
    return report


def plugin_links(settings: Any) -> list[dict[str, str]]:
    """The web UI's links from the plugins of ``settings.plugins_folder``: a list of
    ``{"name", "href"}`` (plus ``category`` when the plugin gave one), in plugin-name order.
    Entries without a name or an href are left out."""
    load_plugins(settings.plugins_folder)
    links: list[dict[str, str]] = []
    for plugin in registered():
        for item in [*plugin.links, *plugin.appbuilder_menu_items]:
            name, href = item.get("name"), item.get("href")
            if not name or not href:
                log.warning("plugin %s has a link without name or href: %r", plugin.name, item)
                continue
            link = {"name": str(name), "href": str(href)}
            if item.get("category"):
                link["category"] = str(item["category"])
            links.append(link)
    return links

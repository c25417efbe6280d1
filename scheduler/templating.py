"""Sandboxed Jinja2 for operators' ``template_fields``, and the ``macros`` of the context.

The worker builds the context (``ds``, ``ti``, ``params``, ...) and calls each task's
``render_template_fields(context, make_jinja_env(dag))``, which uses :func:`render`.

Templates run in Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment`: attributes such as
``__class__`` or ``__globals__`` are refused (``jinja2.exceptions.SecurityError``), so a template
cannot reach Python internals. Undefined names raise (``StrictUndefined``) instead of rendering
as empty strings.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment


class Resolvable:
    """A value known only when a task runs (an XCom, a DAG param), taken from its context.

    :func:`render` and :func:`resolve` replace such values by ``value.resolve(context)``.
    """

    def resolve(self, context: Mapping[str, Any]) -> Any:
        raise NotImplementedError


class _DagLike(Protocol):
    fileloc: str
    template_searchpath: list[str]
    user_defined_macros: dict[str, Any]


# --- macros ------------------------------------------------------------------------------------


def ds_add(ds: str, days: int) -> str:
    """``ds`` (``YYYY-MM-DD``) moved by ``days`` (may be negative), as ``YYYY-MM-DD``."""
    return (datetime.strptime(ds, "%Y-%m-%d") + timedelta(days=days)).strftime("%Y-%m-%d")


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """``ds`` parsed with ``input_format`` and written with ``output_format``."""
    return datetime.strptime(ds, input_format).strftime(output_format)


#: The ``macros`` object of the task context (Airflow's names).
macros = SimpleNamespace(
    ds_add=ds_add, ds_format=ds_format, datetime=datetime, timedelta=timedelta, time=time,
    uuid=uuid, random=random, json=json,
)


def all_macros() -> SimpleNamespace:
    """:data:`macros` plus those of the plugins registered in this process
    (:func:`scheduler.plugins.plugin_macros`); a built-in name is never shadowed."""
    from scheduler.plugins import plugin_macros

    extra = plugin_macros()
    return SimpleNamespace(**{**extra, **vars(macros)}) if extra else macros


def _ds(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")


def _ds_nodash(value: datetime) -> str:
    return value.strftime("%Y%m%d")


def _ts(value: datetime) -> str:
    return value.isoformat()


def _ts_nodash(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


# --- the environment ------------------------------------------------------------------------


def template_searchpath(dag: _DagLike | None) -> list[str]:
    """Folders searched for template files: the DAG file's, then ``template_searchpath``."""
    if dag is None:
        return []
    paths: list[str] = []
    fileloc = getattr(dag, "fileloc", None)
    if fileloc and not fileloc.startswith("<"):
        paths.append(os.path.dirname(os.path.abspath(fileloc)))
    paths.extend(getattr(dag, "template_searchpath", None) or [])
    return paths


def make_jinja_env(dag: _DagLike | None = None) -> SandboxedEnvironment:
    """A sandboxed, strict Jinja environment for ``dag``'s templates.

    Template files are looked up beside the DAG file, then on ``dag.template_searchpath``;
    ``dag.user_defined_macros`` are globals; filters ``ds``, ``ds_nodash``, ``ts`` and
    ``ts_nodash`` format datetimes. ``dag`` None gives an environment with no file loader paths.
    """
    env = SandboxedEnvironment(
        loader=FileSystemLoader(template_searchpath(dag)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(ds=_ds, ds_nodash=_ds_nodash, ts=_ts, ts_nodash=_ts_nodash)
    env.globals["macros"] = all_macros()
    if dag is not None:
        env.globals.update(getattr(dag, "user_defined_macros", None) or {})
    return env


def _load(env: Environment, name: str) -> Template | None:
    """The template file ``name``; None if ``name`` looks like an inline command instead."""
    if os.path.isabs(name) and os.path.isfile(name):
        return env.from_string(Path(name).read_text())
    try:
        return env.get_template(name)
    except TemplateNotFound:
        if any(c.isspace() for c in name):
            return None  # e.g. "bash ./run.sh": a command that happens to end in .sh
        searched = getattr(env.loader, "searchpath", [])
        raise TemplateNotFound(
            f"template file {name!r} was not found in {searched!r} (the DAG file's folder and "
            "template_searchpath). Put the file there, or add a trailing space to run the "
            "string as it is") from None


def render(
    value: Any,
    context: Mapping[str, Any],
    env: Environment,
    *,
    template_ext: Sequence[str] = (),
    _seen: set[int] | None = None,
) -> Any:
    """``value`` with every string rendered as a Jinja template against ``context``.

    Recurses into lists, tuples (named tuples too), sets and dict values (not keys), and into
    objects that declare ``template_fields`` (rendered in place). A string ending in one of
    ``template_ext`` is the name of a template file (see :func:`make_jinja_env`).
    :class:`Resolvable` values (XComArgs) are replaced by their resolved value, unrendered.
    Other values are returned as they are.
    """
    if isinstance(value, Resolvable):
        return value.resolve(context)
    if isinstance(value, str):
        template: Template | None = None
        if template_ext and value.endswith(tuple(template_ext)):
            template = _load(env, value)
        if template is None:
            if "{" not in value:
                return value
            template = env.from_string(value)
        return template.render(dict(context))

    def again(item: Any) -> Any:
        return render(item, context, env, template_ext=template_ext, _seen=_seen)

    if isinstance(value, list):
        return [again(v) for v in value]
    if isinstance(value, tuple):
        items = [again(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, set | frozenset):
        return type(value)(again(v) for v in value)
    if isinstance(value, dict):
        return {k: again(v) for k, v in value.items()}
    fields = getattr(value, "template_fields", None)
    if fields and not isinstance(value, type):
        _seen = _seen if _seen is not None else set()
        if id(value) not in _seen:
            _seen.add(id(value))
            for name in fields:
                setattr(value, name, render(getattr(value, name), context, env,
                                            template_ext=template_ext, _seen=_seen))
    return value


def resolve(value: Any, context: Mapping[str, Any]) -> Any:
    """``value`` with :class:`Resolvable` parts (in lists, tuples, sets, dicts) resolved."""
    if isinstance(value, Resolvable):
        return value.resolve(context)
    if isinstance(value, list):
        return [resolve(v, context) for v in value]
    if isinstance(value, tuple):
        items = [resolve(v, context) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, set | frozenset):
        return type(value)(resolve(v, context) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, context) for k, v in value.items()}
    return value

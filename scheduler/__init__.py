"""Headwater: a DAG scheduler for batch pipelines with durable-execution guarantees.

The authoring API is importable from here, with Airflow's names::

    from scheduler import DAG, dag, task, chain, TaskGroup, Param

The names are resolved lazily so that importing an engine module (``scheduler.config``,
``scheduler.store``) does not import the authoring layer.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DAG": "scheduler.core.dag",
    "Param": "scheduler.core.dag",
    "TaskGroup": "scheduler.core.dag",
    "chain": "scheduler.core.dag",
    "dag": "scheduler.decorators",
    "task": "scheduler.decorators",
    "BaseOperator": "scheduler.operators.base",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'scheduler' has no attribute {name!r}")
    return getattr(import_module(module), name)

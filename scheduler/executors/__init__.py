"""Executors hand workloads to workers and report when they end (see base.Executor)."""

from __future__ import annotations

from scheduler.config import Settings
from scheduler.executors.base import Executor


def make_executor(settings: Settings, kind: str | None = None) -> Executor:
    """The executor named by ``kind`` (default: ``[core] executor``)."""
    kind = kind or settings.executor
    if kind == "local":
        from scheduler.executors.local import LocalExecutor

        return LocalExecutor(settings)
    if kind == "sequential":
        from scheduler.executors.sequential import SequentialExecutor

        return SequentialExecutor(settings)
    if kind == "celery":
        from scheduler.executors.celery import CeleryExecutor

        return CeleryExecutor(settings)
    raise ValueError(f"unknown executor {kind!r}; use local, celery or sequential")

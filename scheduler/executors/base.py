"""The executor interface. Executors never decide states: they run workloads and report
events; the loop reads the outcome from the store."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.store.commands import Workload


@dataclass(frozen=True)
class ExecutorEvent:
    """``kind`` is "recorded" (the attempt's outcome is in the store), "done" (its worker is
    free again) or "lost" (the worker holding it died, so the attempt may have recorded
    nothing)."""

    kind: str
    ti_id: int
    try_number: int
    #: For "recorded": the state stored, when the executor knows it.
    state: str | None = None
    #: The workload the event is about, when the executor holds it.
    workload: Workload | None = None


class Executor(ABC):
    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def queue_workload(self, workload: Workload) -> None:
        """Hand over a workload. Callers must not queue more than :meth:`free_slots`."""

    @abstractmethod
    def free_slots(self) -> int: ...

    @abstractmethod
    def wait(self, timeout: float, extra: Sequence[Any] = ()) -> list[Any]:
        """Block until an attempt ends, one of ``extra`` (objects with ``fileno()``) is
        readable, or ``timeout`` seconds pass. Returns the readable ``extra`` objects."""

    @abstractmethod
    def drain_events(self) -> list[ExecutorEvent]: ...

    @abstractmethod
    def pending_events(self) -> list[ExecutorEvent]:
        """The events waiting to be drained (not drained)."""

    @abstractmethod
    def running(self) -> set[int]:
        """Task instance ids this executor holds now."""

    def holds_other_of_run(self, dag_id: str, run_id: str, ti_id: int) -> bool:
        """Whether a workload of that run, other than ``ti_id``'s, is still held here (queued
        or running). False when the executor cannot tell."""
        return False

    def take_backlog(self) -> list[Workload]:
        """Workloads accepted but not started; the loop gives them back when it stops."""
        return []

    @abstractmethod
    def stop(self, graceful: bool = True) -> None: ...

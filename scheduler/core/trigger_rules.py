"""Trigger rules: when a task may run, given the states of its direct upstream tasks.

The names are Airflow's. This module only names them; what each rule means for a set of
upstream states is decided in :mod:`scheduler.core.decisions`.
"""

from __future__ import annotations

from enum import Enum


class TriggerRule(str, Enum):  # noqa: UP042 - the shape every state enum here has
    """A task's condition on its direct upstream tasks' states."""

    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ALL_DONE_MIN_ONE_SUCCESS = "all_done_min_one_success"
    ALL_DONE_SETUP_SUCCESS = "all_done_setup_success"
    ALL_SKIPPED = "all_skipped"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def is_valid(cls, value: object) -> bool:
        """True if ``value`` is a member or the string value of one."""
        return value in cls._value2member_map_ or isinstance(value, cls)

    @classmethod
    def values(cls) -> list[str]:
        """Every rule's string value, in declaration order."""
        return [m.value for m in cls]

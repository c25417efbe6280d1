"""EmptyOperator: a task that does nothing, to join or fan out branches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.operators.base import BaseOperator


class EmptyOperator(BaseOperator):
    """Does nothing and succeeds; returns None, so it pushes no XCom."""

    ui_color = "#e8f7e4"

    def execute(self, context: Mapping[str, Any]) -> None:
        return None

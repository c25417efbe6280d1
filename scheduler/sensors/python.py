"""PythonSensor: wait until a Python callable returns something truthy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from scheduler.operators.base import call_with_context
from scheduler.operators.python import resolved_call, set_python_callable
from scheduler.sensors.base import BaseSensorOperator, PokeReturnValue


class PythonSensor(BaseSensorOperator):
    """Pokes by calling ``python_callable(*op_args, **op_kwargs)`` plus the context values it
    asks for (as PythonOperator does). A truthy result ends the wait; a
    :class:`~scheduler.sensors.base.PokeReturnValue` also gives the task's XCom.
    ``templates_dict`` is rendered and added to the context."""

    template_fields: ClassVar[Sequence[str]] = ("templates_dict", "op_args", "op_kwargs")
    ui_color = "#ffefeb"
    python_callable: Callable[..., Any]
    op_args: list[Any]
    op_kwargs: dict[str, Any]
    templates_dict: dict[str, Any] | None

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        templates_dict: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        set_python_callable(self, python_callable, op_args, op_kwargs, templates_dict)

    def poke(self, context: Mapping[str, Any]) -> bool | PokeReturnValue:
        args, kwargs, context = resolved_call(self, context)
        result = call_with_context(self.python_callable, args, kwargs, context)
        return result if isinstance(result, PokeReturnValue) else bool(result)

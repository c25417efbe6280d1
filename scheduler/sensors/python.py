"""PythonSensor: wait until a Python callable returns something truthy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from scheduler import templating
from scheduler.errors import DagDefinitionError
from scheduler.operators.base import call_with_context
from scheduler.sensors.base import BaseSensorOperator, PokeReturnValue


class PythonSensor(BaseSensorOperator):
    """Pokes by calling ``python_callable(*op_args, **op_kwargs)`` plus the context values it
    asks for (as PythonOperator does). A truthy result ends the wait; a
    :class:`~scheduler.sensors.base.PokeReturnValue` also gives the task's XCom.
    ``templates_dict`` is rendered and added to the context."""

    template_fields: ClassVar[Sequence[str]] = ("templates_dict", "op_args", "op_kwargs")
    ui_color = "#ffefeb"

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
        if not callable(python_callable):
            raise DagDefinitionError(
                f"python_callable of sensor {self.task_id!r} is not callable: "
                f"{python_callable!r}", fileloc=self.fileloc, lineno=self.lineno,
                hint="pass a function (without calling it)")
        self.python_callable = python_callable
        self.op_args: list[Any] = list(op_args or [])
        self.op_kwargs: dict[str, Any] = dict(op_kwargs or {})
        self.templates_dict = dict(templates_dict) if templates_dict is not None else None

    def poke(self, context: Mapping[str, Any]) -> bool | PokeReturnValue:
        templates_dict = templating.resolve(self.templates_dict, context)
        context = {**context, "templates_dict": templates_dict}
        result = call_with_context(self.python_callable,
                                   templating.resolve(self.op_args, context),
                                   templating.resolve(self.op_kwargs, context), context)
        return result if isinstance(result, PokeReturnValue) else bool(result)

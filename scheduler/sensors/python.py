"""PythonSensor: wait until a Python callable returns something truthy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.operators.base import call_with_context
from scheduler.operators.python import PythonCallableMixin, resolved_call
from scheduler.sensors.base import BaseSensorOperator, PokeReturnValue


class PythonSensor(PythonCallableMixin, BaseSensorOperator):
    """Pokes by calling ``python_callable(*op_args, **op_kwargs)`` plus the context values it
    asks for (as PythonOperator does). A truthy result ends the wait; a
    :class:`~scheduler.sensors.base.PokeReturnValue` also gives the task's XCom.
    ``templates_dict`` is rendered and added to the context."""

    def poke(self, context: Mapping[str, Any]) -> bool | PokeReturnValue:
        args, kwargs, context = resolved_call(self, context)
        result = call_with_context(self.python_callable, args, kwargs, context)
        return result if isinstance(result, PokeReturnValue) else bool(result)

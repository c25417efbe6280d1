"""Sensors: tasks that wait for a condition (Airflow's names).

    from scheduler.sensors import FileSensor, TimeDeltaSensor, ExternalTaskSensor, \
        PythonSensor, SignalSensor

See :mod:`scheduler.sensors.base` for ``mode="poke"|"reschedule"``, ``timeout`` and
``soft_fail``; :mod:`scheduler.sensors.signal` for waiting on a signal without a worker.
"""

from __future__ import annotations

from scheduler.sensors.base import (
    BaseSensorOperator,
    PokeReturnValue,
    SensorTimeout,
)
from scheduler.sensors.external_task import ExternalTaskSensor
from scheduler.sensors.filesystem import FileSensor
from scheduler.sensors.python import PythonSensor
from scheduler.sensors.signal import SignalSensor, wait_for_signal
from scheduler.sensors.time_delta import TimeDeltaSensor

__all__ = [
    "BaseSensorOperator",
    "ExternalTaskSensor",
    "FileSensor",
    "PokeReturnValue",
    "PythonSensor",
    "SensorTimeout",
    "SignalSensor",
    "TimeDeltaSensor",
    "wait_for_signal",
]

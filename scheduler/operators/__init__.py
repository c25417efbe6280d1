"""Built-in operators, with Airflow's names."""

from __future__ import annotations

from scheduler.operators.base import AirflowSkipException, BaseOperator, XComArg
from scheduler.operators.bash import BashOperator
from scheduler.operators.empty import EmptyOperator
from scheduler.operators.python import (
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from scheduler.operators.trigger_dagrun import TriggerDagRunOperator

__all__ = [
    "AirflowSkipException",
    "BaseOperator",
    "BashOperator",
    "BranchPythonOperator",
    "EmptyOperator",
    "PythonOperator",
    "ShortCircuitOperator",
    "TriggerDagRunOperator",
    "XComArg",
]

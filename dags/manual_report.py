"""A report that only runs when someone asks for it (``schedule=None``).

Trigger it with ``headwater dags trigger manual_report --conf '{"region": "north"}'``; the
``region`` param defaults to ``all``.
"""

from __future__ import annotations

from datetime import datetime

from scheduler import DAG, Param
from scheduler.operators import BashOperator, EmptyOperator, PythonOperator


def build_report(params: dict[str, object], **_: object) -> str:
    region = params["region"]
    print(f"building the report for region {region}")
    return f"report-{region}"


with DAG(
    dag_id="manual_report",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    params={"region": Param("all", type="string", description="Region to report on")},
    tags=["example", "manual"],
    description="On-demand report, triggered by hand",
):
    start = EmptyOperator(task_id="start")
    build = PythonOperator(task_id="build_report", python_callable=build_report)
    publish = BashOperator(
        task_id="publish",
        bash_command="echo publishing {{ ti.xcom_pull(task_ids='build_report') }}",
    )
    start >> build >> publish

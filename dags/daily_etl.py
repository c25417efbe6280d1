"""Daily ETL: extract a day of orders with Bash, transform them in Python, load with Bash.

Each run works on one day, its logical date (``{{ ds }}``): the run for 2024-01-01 starts once
that day is over, as in Airflow. Files go under a folder per day in the system's temp dir.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timedelta

from scheduler import DAG
from scheduler.operators import BashOperator, PythonOperator

WORKDIR = os.path.join(tempfile.gettempdir(), "headwater-example-etl")


def transform(ds: str, **_: object) -> dict[str, int]:
    """Count the orders of the day and total their amounts."""
    src = os.path.join(WORKDIR, ds, "orders.csv")
    total = count = 0
    with open(src) as fh:
        next(fh)  # header
        for line in fh:
            _order_id, amount = line.strip().split(",")
            total += int(amount)
            count += 1
    summary = {"orders": count, "total": total}
    with open(os.path.join(WORKDIR, ds, "summary.json"), "w") as fh:
        json.dump(summary, fh)
    return summary


with DAG(
    dag_id="daily_etl",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["example", "etl"],
    description="Extract, transform and load one day of orders",
) as dag:
    extract = BashOperator(
        task_id="extract",
        bash_command=(
            f"mkdir -p {WORKDIR}/{{{{ ds }}}} && "
            f"printf 'order_id,amount\\n1,120\\n2,80\\n3,45\\n' > {WORKDIR}/{{{{ ds }}}}/orders.csv"
            " && echo extracted {{ ds }}"
        ),
    )
    summarize = PythonOperator(task_id="transform", python_callable=transform)
    load = BashOperator(
        task_id="load",
        bash_command=f"cat {WORKDIR}/{{{{ ds }}}}/summary.json && echo loaded {{{{ ds_nodash }}}}",
    )

    extract >> summarize >> load

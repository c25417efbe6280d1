"""Uses the example plugin of ``plugins/``: its operator, and its macro in a template.

``headwater dags test plugin_example`` runs it with the repo's plugins folder (the default
of ``make run``).
"""

from __future__ import annotations

from datetime import datetime

from example_plugin import GreetOperator

from scheduler import DAG
from scheduler.operators import BashOperator

with DAG(
    dag_id="plugin_example",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    tags=["example", "plugin"],
    description="A custom operator and a macro from plugins/example_plugin.py",
):
    greet = GreetOperator(task_id="greet", name="team of {{ dag.dag_id }}")
    announce = BashOperator(
        task_id="announce",
        # `shout` is the plugin's macro; the greeting is the operator's XCom.
        bash_command="echo {{ macros.shout(ti.xcom_pull(task_ids='greet')) }}",
    )
    greet >> announce

"""The DAG files of the workloads, as source text (a user's file, written into the DAGs folder)."""

from __future__ import annotations


def chain_dag(dag_id: str, n: int) -> str:
    """``n`` no-op Python tasks in a chain, t0000 >> t0001 >> ..."""
    return f"""
        from datetime import datetime
        from scheduler import DAG, chain
        from scheduler.operators import PythonOperator

        def noop():
            return None

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1)):
            chain(*[PythonOperator(task_id=f"t{{i:04d}}", python_callable=noop)
                    for i in range({n})])
    """


def fanout_dag(dag_id: str, n: int, *, bash: bool = False, ledger: str | None = None) -> str:
    """``n`` independent no-op tasks (Python, or ``BashOperator("true")``); with ``ledger``
    each Python task appends its task id to that file, one line per execution."""
    if bash:
        op = 'BashOperator(task_id=f"t{i:04d}", bash_command="true")'
    elif ledger:
        # An attempt killed with its machine counts as a try (DESIGN.md), so a pipeline meant
        # to survive crashes gives its tasks a retry.
        op = ('PythonOperator(task_id=f"t{i:04d}", python_callable=note, op_args=[f"t{i:04d}"],'
              ' retries=1, retry_delay=timedelta(0))')
    else:
        op = 'PythonOperator(task_id=f"t{i:04d}", python_callable=noop)'
    return f"""
        from datetime import datetime, timedelta
        from scheduler import DAG
        from scheduler.operators import BashOperator, PythonOperator

        LEDGER = {ledger!r}

        def noop():
            return None

        def note(task_id):
            # One write(2) of a short line in append mode: lines never interleave.
            with open(LEDGER, "a") as f:
                f.write(task_id + "\\n")

        with DAG({dag_id!r}, schedule=None, start_date=datetime(2024, 1, 1),
                 max_active_tasks={n}):
            for i in range({n}):
                {op}
    """


def parse_dag(dag_id: str, tasks: int = 10, schedule: str | None = "@daily") -> str:
    """A typical small file: one DAG of ``tasks`` Bash tasks in a chain."""
    return f"""
        from datetime import datetime, timedelta
        from scheduler import DAG, chain
        from scheduler.operators import BashOperator

        default_args = {{"retries": 1, "retry_delay": timedelta(minutes=1)}}

        with DAG({dag_id!r}, schedule={schedule!r}, start_date=datetime(2024, 1, 1),
                 catchup=False, default_args=default_args, tags=["bench"]):
            chain(*[BashOperator(task_id=f"step_{{i}}", bash_command="echo {{{{ ds }}}}")
                    for i in range({tasks})])
    """


def daily_dag(dag_id: str) -> str:
    """A daily DAG of three no-op Python tasks in a chain, over 2023 only."""
    return f"""
        from datetime import datetime
        from scheduler import DAG, chain
        from scheduler.operators import PythonOperator

        def noop():
            return None

        with DAG({dag_id!r}, schedule="@daily", start_date=datetime(2023, 1, 1),
                 end_date=datetime(2023, 12, 31), catchup=False, max_active_runs=16):
            chain(*[PythonOperator(task_id=name, python_callable=noop)
                    for name in ("extract", "transform", "load")])
    """


def grid_dag(dag_id: str, tasks: int) -> str:
    """``tasks`` tasks in five parallel lanes: a wide grid and a non-trivial graph."""
    return f"""
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator

        with DAG({dag_id!r}, schedule="@daily", start_date=datetime(2021, 1, 1), catchup=False):
            ops = [EmptyOperator(task_id=f"task_{{i:03d}}") for i in range({tasks})]
            for i in range(5, {tasks}):
                ops[i - 5] >> ops[i]
    """

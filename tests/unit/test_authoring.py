"""The authoring API as DAG authors use it: wiring, defaults, validation, TaskFlow, operators."""

from __future__ import annotations

import logging
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler import DAG, Param, TaskGroup, chain, dag, task
from scheduler.core.dag import collect_created_tasks, collect_dags, resolve_params
from scheduler.core.trigger_rules import TriggerRule
from scheduler.errors import (
    CycleError,
    DagDefinitionError,
    ParamValidationError,
    TaskFailed,
    TaskSkipped,
    TimetableError,
)
from scheduler.operators import (
    BashOperator,
    BranchPythonOperator,
    EmptyOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from scheduler.templating import make_jinja_env

START = datetime(2024, 1, 1)


class FakeTI:
    """The ``ti`` a worker provides: XComs in a dict keyed by (task_id, key)."""

    def __init__(self, xcoms: dict[tuple[str, str], Any] | None = None) -> None:
        self.xcoms = dict(xcoms or {})
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value",
                  map_indexes: Any = None) -> Any:
        if isinstance(task_ids, str):
            return self.xcoms.get((task_ids, key))
        return [self.xcoms.get((t, key)) for t in task_ids or []]

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def exec_dag_file(tmp_path: Path, source: str, name: str = "dag_file.py") -> list[DAG]:
    """Run ``source`` as the parser does: compiled under its own file name, DAGs collected."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip())
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "user_dag"}
    with collect_dags() as dags:
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    for d in dags:
        d.validate()
    return dags


# --- wiring -----------------------------------------------------------------------------------


def test_shift_operators_and_lists_wire_upstream_and_downstream() -> None:
    with DAG("wiring", start_date=START) as d:
        a, b, c, e = (EmptyOperator(task_id=i) for i in "abce")
        f = EmptyOperator(task_id="f")
        a >> [b, c]
        [b, c] >> e
        f << e
    assert a.downstream_task_ids == {"b", "c"}
    assert e.upstream_task_ids == {"b", "c"}
    assert f.upstream_task_ids == {"e"}
    assert [t.task_id for t in d.topological_sort()] == ["a", "b", "c", "e", "f"]
    assert [t.task_id for t in d.roots] == ["a"] and [t.task_id for t in d.leaves] == ["f"]


def test_topological_order_puts_upstream_first_and_otherwise_keeps_the_order_written() -> None:
    with DAG("order", start_date=START) as d:
        z, y, x, w = (EmptyOperator(task_id=i) for i in "zyxw")
        x >> z
    # z waits for x; among the tasks ready at each point the one written first comes first.
    assert [t.task_id for t in d.topological_sort()] == ["y", "x", "z", "w"]


def test_set_upstream_and_downstream_and_chain() -> None:
    with DAG("chained", start_date=START):
        a, b, c, d1, d2, e1, e2, z = (EmptyOperator(task_id=i) for i in
                                      ["a", "b", "c", "d1", "d2", "e1", "e2", "z"])
        b.set_upstream(a)
        b.set_downstream(c)
        chain(c, [d1, d2], [e1, e2], z)
    assert a.downstream_task_ids == {"b"} and c.upstream_task_ids == {"b"}
    assert c.downstream_task_ids == {"d1", "d2"}
    assert d1.downstream_task_ids == {"e1"} and d2.downstream_task_ids == {"e2"}
    assert z.upstream_task_ids == {"e1", "e2"}


def test_chain_refuses_adjacent_lists_of_different_lengths() -> None:
    with DAG("bad_chain", start_date=START):
        ops = [EmptyOperator(task_id=f"t{i}") for i in range(5)]
        with pytest.raises(DagDefinitionError, match="different lengths"):
            chain(ops[:2], ops[2:])


def test_task_groups_prefix_ids_nest_and_wire_roots_and_leaves() -> None:
    with DAG("grouped", start_date=START) as d:
        start = EmptyOperator(task_id="start")
        with TaskGroup("extract") as extract:
            a = EmptyOperator(task_id="a")
            with TaskGroup("inner") as inner:
                b = EmptyOperator(task_id="b")
            a >> inner
        with TaskGroup("flat", prefix_group_id=False):
            flat = EmptyOperator(task_id="flat_task")
        end = EmptyOperator(task_id="end")
        start >> extract >> end
    assert a.task_id == "extract.a" and b.task_id == "extract.inner.b"
    assert inner.group_id == "extract.inner" and flat.task_id == "flat_task"
    assert start.downstream_task_ids == {"extract.a"}
    assert end.upstream_task_ids == {"extract.inner.b"}
    assert set(d.task_group_dict) == {"extract", "extract.inner", "flat"}


def test_a_duplicate_group_id_is_an_error() -> None:
    with DAG("dup_group", start_date=START):
        TaskGroup("g")
        with pytest.raises(DagDefinitionError, match="group_id 'g' is used twice"):
            TaskGroup("g")


# --- default_args -----------------------------------------------------------------------------


def test_default_args_apply_unless_given_and_groups_override_the_dag() -> None:
    default_args = {"retries": 3, "retry_delay": timedelta(seconds=10), "owner": "ignored",
                    "queue": "dag_queue", "params": {"x": 1}}
    with DAG("defaults", start_date=START, default_args=default_args):
        plain = EmptyOperator(task_id="plain")
        explicit = EmptyOperator(task_id="explicit", retries=0, params={"y": 2})
        bash = BashOperator(task_id="bash", bash_command="true")
        with TaskGroup("g", default_args={"queue": "group_queue"}):
            grouped = EmptyOperator(task_id="grouped")
            own = EmptyOperator(task_id="own", default_args={"retries": 7})
    assert plain.retries == 3 and plain.retry_delay == timedelta(seconds=10)
    assert explicit.retries == 0 and explicit.params == {"x": 1, "y": 2}
    assert bash.retries == 3 and bash.queue == "dag_queue"
    assert grouped.queue == "group_queue" and grouped.retries == 3
    assert own.retries == 7


# --- validation errors name the file, the line and a fix ------------------------------------


def test_unknown_operator_argument_names_it_and_the_line(tmp_path: Path) -> None:
    with pytest.raises(DagDefinitionError) as err:
        exec_dag_file(tmp_path, """
            from datetime import datetime
            from scheduler import DAG
            from scheduler.operators import EmptyOperator
            with DAG("d", start_date=datetime(2024, 1, 1)):
                EmptyOperator(task_id="a", retires=2)
        """)
    exc = err.value
    assert "'retires'" in str(exc) and exc.lineno == 5
    assert exc.fileloc == str(tmp_path / "dag_file.py")
    assert exc.hint and "'retries'" in exc.hint


def test_unknown_trigger_rule_lists_the_valid_ones() -> None:
    with DAG("rules", start_date=START):
        with pytest.raises(DagDefinitionError) as err:
            EmptyOperator(task_id="a", trigger_rule="all_sucess")
    assert "all_sucess" in str(err.value)
    assert err.value.hint and all(r.value in err.value.hint for r in TriggerRule)
    assert err.value.lineno is not None


def test_trigger_rule_accepts_the_enum() -> None:
    with DAG("rules_enum", start_date=START):
        op = EmptyOperator(task_id="a", trigger_rule=TriggerRule.ONE_FAILED)
    assert op.trigger_rule == "one_failed"


def test_duplicate_task_id_points_at_the_second_task(tmp_path: Path) -> None:
    with pytest.raises(DagDefinitionError) as err:
        exec_dag_file(tmp_path, """
            from datetime import datetime
            from scheduler import DAG
            from scheduler.operators import EmptyOperator
            with DAG("d", start_date=datetime(2024, 1, 1)):
                EmptyOperator(task_id="a")
                EmptyOperator(task_id="a")
        """)
    assert "'a' is used twice" in str(err.value) and "line 5" in str(err.value)
    assert err.value.lineno == 6 and err.value.hint


def test_a_cycle_names_its_tasks_and_the_line_that_closed_it(tmp_path: Path) -> None:
    with pytest.raises(CycleError) as err:
        exec_dag_file(tmp_path, """
            from datetime import datetime
            from scheduler import DAG
            from scheduler.operators import EmptyOperator
            with DAG("d", start_date=datetime(2024, 1, 1)):
                a = EmptyOperator(task_id="a")
                b = EmptyOperator(task_id="b")
                c = EmptyOperator(task_id="c")
                a >> b >> c
                c >> a
        """)
    exc = err.value
    assert "cycle" in str(exc) and all(t in exc.message for t in ("'d'", "a", "b", "c"))
    assert exc.lineno == 9 and exc.fileloc == str(tmp_path / "dag_file.py")
    assert exc.hint and "c >> a" in exc.hint and "Fix:" in str(exc)


def test_a_task_cannot_depend_on_itself() -> None:
    with DAG("selfish", start_date=START):
        a = EmptyOperator(task_id="a")
        with pytest.raises(DagDefinitionError, match="cannot depend on itself"):
            a >> a


def test_a_task_outside_any_dag_is_reported_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(DagDefinitionError) as err:
        exec_dag_file(tmp_path, """
            from datetime import datetime
            from scheduler import DAG
            from scheduler.operators import EmptyOperator
            with DAG("d", start_date=datetime(2024, 1, 1)):
                EmptyOperator(task_id="inside")
            EmptyOperator(task_id="lost")
        """)
    assert "task 'lost' is not in any DAG" in str(err.value)
    assert err.value.lineno == 6 and err.value.fileloc == str(tmp_path / "dag_file.py")


def test_a_task_created_outside_then_wired_into_a_dag_is_fine(tmp_path: Path) -> None:
    [d] = exec_dag_file(tmp_path, """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import EmptyOperator
        late = EmptyOperator(task_id="late")
        with DAG("d", start_date=datetime(2024, 1, 1)):
            first = EmptyOperator(task_id="first")
        first >> late
    """)
    assert set(d.task_dict) == {"first", "late"}
    with collect_created_tasks() as created:
        EmptyOperator(task_id="orphan")
    assert [t.task_id for t in created.find_orphan_tasks()] == ["orphan"]


def test_fileloc_and_lineno_are_the_users_file() -> None:
    with DAG("where", start_date=START) as d:
        op = EmptyOperator(task_id="a")
    assert d.fileloc == __file__ and op.fileloc == __file__
    assert op.lineno is not None and d.lineno == op.lineno - 1


def test_start_date_must_be_a_datetime() -> None:
    with pytest.raises(DagDefinitionError) as err:
        DAG("bad_start", start_date="2024-01-01")  # type: ignore[arg-type]
    assert "start_date must be a datetime" in str(err.value) and err.value.hint


def test_naive_dates_are_utc_and_the_timezone_comes_from_start_date() -> None:
    assert DAG("naive", start_date=START).start_date == datetime(2024, 1, 1, tzinfo=UTC)
    assert DAG("naive", start_date=START).timezone == "UTC"
    ams = DAG("ams", start_date=datetime(2024, 1, 1, tzinfo=ZoneInfo("Europe/Amsterdam")))
    assert ams.timezone == "Europe/Amsterdam"
    fixed = DAG("fixed", start_date=datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2))))
    assert fixed.timezone == "Etc/GMT-2"
    assert DAG("none").timezone == "UTC"


def test_end_date_before_start_date_is_an_error() -> None:
    with pytest.raises(DagDefinitionError, match="before start_date"):
        DAG("backwards", start_date=START, end_date=START - timedelta(days=1))


def test_a_bad_schedule_is_a_timetable_error_with_the_line() -> None:
    with pytest.raises(TimetableError) as err:
        DAG("bad_cron", schedule="every day")
    assert err.value.fileloc == __file__ and err.value.lineno is not None


# --- params -----------------------------------------------------------------------------------


def test_params_validate_conf_and_name_the_param() -> None:
    params = {"n": Param(3, type="integer", minimum=1), "mode": Param("a", enum=["a", "b"]),
              "plain": "text"}
    assert resolve_params(params, None) == {"n": 3, "mode": "a", "plain": "text"}
    assert resolve_params(params, {"n": 5, "extra": True})["n"] == 5
    with pytest.raises(ParamValidationError, match="'n'"):
        resolve_params(params, {"n": "five"})
    with pytest.raises(ParamValidationError, match="'n' must be >= 1"):
        resolve_params(params, {"n": 0})
    with pytest.raises(ParamValidationError, match="'mode' must be one of"):
        resolve_params(params, {"mode": "c"})
    with pytest.raises(ParamValidationError, match="'plain'"):
        resolve_params(params, {"plain": 3})


def test_resolve_params_reads_serialized_specs() -> None:
    spec = {"n": {"default": 3, "type": "integer", "description": None}}
    assert resolve_params(spec, {"n": 4}) == {"n": 4}
    with pytest.raises(ParamValidationError):
        resolve_params(spec, {"n": 4.5})


def test_a_param_without_default_is_required() -> None:
    with pytest.raises(ParamValidationError, match="'who' is required"):
        resolve_params({"who": Param(type="string")}, {})


def test_an_invalid_param_default_fails_validation() -> None:
    d = DAG("bad_default", params={"n": Param("x", type="integer")})
    with pytest.raises(DagDefinitionError, match="param 'n'"):
        d.validate()


# --- TaskFlow ---------------------------------------------------------------------------------


def test_taskflow_wires_by_arguments_and_deduplicates_ids() -> None:
    with DAG("flow", start_date=START) as d:
        @task
        def source() -> int:
            return 1

        @task(retries=2)
        def add(x: int, y: int = 0) -> int:
            return x + y

        one = source()
        two = source()
        total = add(one, y=two)
        nested = add.override(task_id="nested")(x=[one, {"k": two}])
    assert set(d.task_dict) == {"source", "source__1", "add", "nested"}
    assert total.operator.upstream_task_ids == {"source", "source__1"}
    assert nested.operator.upstream_task_ids == {"source", "source__1"}
    assert total.operator.retries == 2 and total.key == "return_value"
    assert total.operator.operator_name == "@task"


def test_xcomarg_supports_shift_and_operators_wire_to_it() -> None:
    with DAG("flow_shift", start_date=START):
        @task
        def make() -> int:
            return 1

        made = make()
        after = EmptyOperator(task_id="after")
        made >> after
        echo = BashOperator(task_id="echo", bash_command=made)  # type: ignore[arg-type]
    assert after.upstream_task_ids == {"make"} and echo.upstream_task_ids == {"make"}


def test_taskflow_resolves_xcoms_and_passes_context_by_name() -> None:
    seen: dict[str, Any] = {}
    with DAG("flow_exec", start_date=START):
        @task
        def produce() -> dict[str, int]:
            return {"a": 1, "b": 2}

        @task
        def consume(values: dict[str, int], b: int, ds: str | None = None) -> int:
            seen["ds"] = ds
            return values["a"] + b

        produced = produce()
        result = consume(produced, produced["b"])
    ti = FakeTI({("produce", "return_value"): {"a": 1, "b": 2}, ("produce", "b"): 2})
    assert result.operator.execute({"ti": ti, "ds": "2024-01-01", "run_id": "r"}) == 3
    assert seen["ds"] == "2024-01-01"

    ti2 = FakeTI()
    assert produced.operator.execute({"ti": ti2}) == {"a": 1, "b": 2}
    assert produced.operator.multiple_outputs  # inferred from the dict return annotation
    assert ti2.pushed == {"a": 1, "b": 2}


def test_taskflow_checks_arguments_when_called() -> None:
    with DAG("flow_args", start_date=START):
        @task
        def needs(x: int, ti: Any = None) -> int:
            return x

        with pytest.raises(DagDefinitionError, match="missing argument"):
            needs()


def test_expand_wires_the_mapped_input_and_serializes_how_to_count_instances() -> None:
    from scheduler.core.serialize import serialize_dag

    with DAG("m", start_date=START) as d:
        @task
        def numbers() -> list[int]:
            return [1, 2]

        @task
        def mapped(x: int, y: int) -> int:
            return x + y

        out = mapped.partial(y=1).expand(x=numbers())
        BashOperator.partial(task_id="echo").expand(bash_command=["echo a", "echo b", "c"])
    assert d.task_dict["mapped"].upstream_task_ids == {"numbers"}
    assert out.operator.is_mapped
    tasks = {t["task_id"]: t for t in serialize_dag(d)["tasks"]}
    assert tasks["mapped"]["expand"] == {
        "x": {"xcom": {"task_id": "numbers", "key": "return_value"}}}
    assert tasks["echo"]["expand"] == {"bash_command": {"length": 3}}
    assert tasks["numbers"]["expand"] == {}


def test_expand_refuses_what_cannot_be_mapped_over_with_file_and_line() -> None:
    @task
    def mapped(x: int) -> int:
        return x

    with DAG("bad_map", start_date=START):
        with pytest.raises(DagDefinitionError, match="cannot be mapped over") as err:
            mapped.expand(x=5)
        assert err.value.fileloc == __file__ and err.value.lineno
        with pytest.raises(DagDefinitionError, match="both partial"):
            mapped.partial(x=1).expand(x=[1])


def test_dag_decorator_builds_a_dag_with_params_from_the_signature() -> None:
    @dag(schedule="@daily", start_date=START)
    def my_pipeline(n: int = 3, label: str = "x") -> None:
        """Docs of the pipeline."""

        @task
        def show(value: int) -> int:
            return value

        show(n)

    built = my_pipeline(label="y")
    assert built.dag_id == "my_pipeline" and built.doc_md == "Docs of the pipeline."
    assert {k: p.default for k, p in built.params.items()} == {"n": 3, "label": "y"}
    show_op: Any = built.task_dict["show"]
    assert show_op.execute({"ti": FakeTI(), "params": {"n": 8}}) == 8
    assert built.fileloc == __file__


def test_task_bash_runs_the_returned_command() -> None:
    with DAG("flow_bash", start_date=START):
        @task.bash
        def greet(name: str) -> str:
            return "echo hello {{ params.greeting }} " + name

        op = greet("bob").operator
    context = {"ti": FakeTI(), "params": {"greeting": "dear"}}
    op.render_template_fields(context, make_jinja_env(op.dag))
    assert op.execute(context) == "hello dear bob"


# --- operators --------------------------------------------------------------------------------


def test_python_operator_passes_args_and_the_context_keys_it_asks_for() -> None:
    calls: list[tuple[Any, ...]] = []

    def named(a: int, b: int, ds: str, templates_dict: Any = None) -> int:
        calls.append((a, b, ds, templates_dict))
        return a + b

    def everything(a: int, **context: Any) -> list[str]:
        return sorted(context)

    with DAG("python", start_date=START):
        op = PythonOperator(task_id="named", python_callable=named, op_args=[1],
                            op_kwargs={"b": 2}, templates_dict={"q": "{{ ds }}"})
        op_all = PythonOperator(task_id="all", python_callable=everything, op_args=[1])
    context = {"ds": "2024-01-02", "ti": FakeTI(), "run_id": "r1"}
    op.render_template_fields(context, make_jinja_env(op.dag))
    assert op.execute(context) == 3
    assert calls == [(1, 2, "2024-01-02", {"q": "2024-01-02"})]
    assert op_all.execute(context) == ["ds", "run_id", "templates_dict", "ti"]


def test_python_operator_resolves_output_of_another_operator() -> None:
    with DAG("python_xcom", start_date=START):
        first = BashOperator(task_id="first", bash_command="echo 41")
        second = PythonOperator(task_id="second", python_callable=lambda x: int(x) + 1,
                                op_args=[first.output])
    assert second.upstream_task_ids == {"first"}
    assert second.execute({"ti": FakeTI({("first", "return_value"): "41"})}) == 42


def test_branch_operator_returns_and_pushes_the_followed_ids() -> None:
    with DAG("branching", start_date=START):
        branch = BranchPythonOperator(task_id="branch", python_callable=lambda: "left")
        left, right = EmptyOperator(task_id="left"), EmptyOperator(task_id="right")
        branch >> [left, right]
        bad = BranchPythonOperator(task_id="bad", python_callable=lambda: ["nowhere"])
    ti = FakeTI()
    assert branch.execute({"ti": ti}) == ["left"]
    assert ti.pushed == {"skipmixin_followed": ["left"]}
    with pytest.raises(TaskFailed, match="nowhere"):
        bad.execute({"ti": FakeTI()})


def test_short_circuit_returns_the_condition() -> None:
    with DAG("short", start_date=START):
        gate = ShortCircuitOperator(task_id="gate", python_callable=lambda: 0)
        gate >> EmptyOperator(task_id="after")
    ti = FakeTI()
    assert gate.execute({"ti": ti}) is False and ti.pushed == {"skipmixin_followed": []}


def test_compensate_callable_becomes_a_task_of_its_own() -> None:
    undone: list[str] = []
    with DAG("saga", start_date=START) as d:
        charge = EmptyOperator(task_id="charge",
                               compensate=lambda idempotency_key: undone.append(idempotency_key))
        refund = EmptyOperator(task_id="refund")
        ship = EmptyOperator(task_id="ship", compensate=refund)
        charge >> ship
    comp: Any = d.task_dict["charge__compensate"]
    assert charge.compensate_task_id == "charge__compensate" and comp.compensates == "charge"
    assert ship.compensate_task_id == "refund" and refund.compensates == "ship"
    comp.execute({"idempotency_key": "k1"})
    assert undone == ["k1"]
    d.validate()


def test_setup_and_teardown() -> None:
    with DAG("setup_teardown", start_date=START):
        create = EmptyOperator(task_id="create")
        work = EmptyOperator(task_id="work")
        delete = EmptyOperator(task_id="delete").as_teardown(setups=create)
        create >> work >> delete
    assert create.is_setup and delete.is_teardown
    assert delete.trigger_rule == "all_done_setup_success"
    assert delete.upstream_task_ids == {"create", "work"}


def _bash(command: str, **kwargs: Any) -> BashOperator:
    with DAG(f"bash_{abs(hash(command))}", start_date=START):
        return BashOperator(task_id="b", bash_command=command, **kwargs)


def test_bash_returns_the_last_line_and_logs_output(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="headwater.task")
    op = _bash("echo first; echo oops >&2; echo last")
    assert op.execute({}) == "last"
    logged = [r.getMessage() for r in caplog.records]
    assert "first" in logged and "oops" in logged and "last" in logged


def test_bash_failure_names_the_exit_code() -> None:
    with pytest.raises(TaskFailed, match="exit code 3") as err:
        _bash("echo broken >&2; exit 3").execute({})
    assert "broken" in str(err.value)


def test_bash_skip_exit_code_skips() -> None:
    with pytest.raises(TaskSkipped):
        _bash("exit 99").execute({})
    with pytest.raises(TaskSkipped):
        _bash("exit 4", skip_on_exit_code=[4, 5]).execute({})
    with pytest.raises(TaskFailed):
        _bash("exit 99", skip_on_exit_code=None).execute({})


def test_bash_env_append_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HW_OUTER", "outer")
    only = _bash('echo "${HW_OUTER:-unset}-$HW_X"', env={"HW_X": "x"})
    assert only.execute({}) == "unset-x"
    appended = _bash('echo "$HW_OUTER-$HW_X"', env={"HW_X": "x"}, append_env=True)
    assert appended.execute({}) == "outer-x"
    assert _bash("pwd", cwd=str(tmp_path)).execute({}) == str(tmp_path)
    with pytest.raises(TaskFailed, match="not an existing directory"):
        _bash("pwd", cwd=str(tmp_path / "missing")).execute({})


def test_bash_command_is_templated_and_can_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "script.sh").write_text("echo from file {{ ds }}\n")
    [d] = exec_dag_file(tmp_path, """
        from datetime import datetime
        from scheduler import DAG
        from scheduler.operators import BashOperator
        with DAG("templated", start_date=datetime(2024, 1, 1)):
            BashOperator(task_id="inline", bash_command="echo {{ ds }} {{ params.x }}",
                         params={"x": 1})
            BashOperator(task_id="file", bash_command="script.sh")
    """)
    env = make_jinja_env(d)
    context = {"ds": "2024-01-05", "params": {"x": 1}}
    inline: Any = d.task_dict["inline"]
    inline.render_template_fields(context, env)
    assert inline.execute(context) == "2024-01-05 1"
    from_file: Any = d.task_dict["file"]
    from_file.render_template_fields(context, env)
    assert from_file.execute(context) == "from file 2024-01-05"

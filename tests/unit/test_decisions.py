"""Scheduler decisions as functions of data: trigger rules, readiness, run outcome, retries,
admission of runs and task instances."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.core.decisions import (
    MAX_RETRY_DELAY,
    TRIGGER_RULES,
    AttemptEnd,
    Candidate,
    TIView,
    Transition,
    Verdict,
    attempt_failed,
    effective_leaves,
    evaluate_trigger_rule,
    pick_tasks_to_queue,
    relevant_indirect_setups,
    retry_delay,
    run_outcome,
    runs_to_start,
    schedulable,
)
from scheduler.core.serialized import SerializedDag, SerializedTask
from scheduler.core.states import FINISHED_TASK_STATES, RunState, TaskState

S = TaskState
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
EARLY_RULES = {"one_success", "one_failed", "one_done", "always"}


def make_dag(
    graph: Mapping[str, Sequence[str]],
    *,
    rules: Mapping[str, str] | None = None,
    setups: Iterable[str] = (),
    teardowns: Iterable[str] = (),
    **task_fields: Any,
) -> SerializedDag:
    """A SerializedDag from ``{task_id: [upstream ids]}``, tasks in topological order."""
    rules = dict(rules or {})
    setups, teardowns = set(setups), set(teardowns)
    downstream: dict[str, list[str]] = {t: [] for t in graph}
    for tid, ups in graph.items():
        for up in ups:
            downstream[up].append(tid)
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(graph):
        ready = [t for t in graph if t not in placed and all(u in placed for u in graph[t])]
        assert ready, "cycle in test graph"
        for t in ready:
            order.append(t)
            placed.add(t)
    tasks = []
    for tid in order:
        default_rule = "all_done_setup_success" if tid in teardowns else "all_success"
        tasks.append({
            "task_id": tid,
            "upstream": list(graph[tid]),
            "downstream": downstream[tid],
            "trigger_rule": rules.get(tid, default_rule),
            "is_setup": tid in setups,
            "is_teardown": tid in teardowns,
            **task_fields,
        })
    return SerializedDag.from_dict({"dag_id": "d", "fileloc": "/d.py", "schedule": None,
                                    "tasks": tasks})


def views(**states: TaskState) -> dict[str, TIView]:
    return {tid: TIView(tid, state) for tid, state in states.items()}


def apply(tis: Mapping[str, TIView], transitions: Iterable[Transition]) -> dict[str, TIView]:
    out = dict(tis)
    for tr in transitions:
        old = out.get(tr.task_id, TIView(tr.task_id, S.NONE))
        out[tr.task_id] = TIView(tr.task_id, tr.to_state, old.try_number, None, old.map_index)
    return out


def moves(transitions: Iterable[Transition]) -> dict[str, TaskState]:
    return {t.task_id: t.to_state for t in transitions}


# -- trigger rules -----------------------------------------------------------------------------

R, W, SK, UF = Verdict.READY, Verdict.WAIT, Verdict.SKIP, Verdict.UPSTREAM_FAILED
OK, FAIL, SKIP, UPF = S.SUCCESS, S.FAILED, S.SKIPPED, S.UPSTREAM_FAILED
NONE, RUN = S.NONE, S.RUNNING

RULE_CASES = [
    # rule, upstream states, verdict
    ("all_success", [OK, OK], R),
    ("all_success", [OK, RUN], W),
    ("all_success", [SKIP, RUN], SK),
    ("all_success", [FAIL, RUN], UF),
    ("all_success", [UPF, OK], UF),
    ("all_success", [SKIP, FAIL], UF),
    ("all_failed", [FAIL, UPF], R),
    ("all_failed", [FAIL, RUN], W),
    ("all_failed", [FAIL, OK], SK),
    ("all_failed", [SKIP, RUN], SK),
    ("all_done", [OK, FAIL, SKIP, UPF], R),
    ("all_done", [OK, RUN], W),
    ("all_done_min_one_success", [OK, FAIL], R),
    ("all_done_min_one_success", [OK, RUN], W),
    ("all_done_min_one_success", [FAIL, UPF], UF),
    ("all_done_min_one_success", [OK, SKIP], SK),
    ("all_skipped", [SKIP, SKIP], R),
    ("all_skipped", [SKIP, RUN], W),
    ("all_skipped", [SKIP, OK], SK),
    ("all_skipped", [SKIP, FAIL], SK),
    ("one_success", [OK, RUN], R),
    ("one_success", [FAIL, RUN], W),
    ("one_success", [FAIL, SKIP], UF),
    ("one_success", [SKIP, SKIP], SK),
    ("one_failed", [FAIL, RUN], R),
    ("one_failed", [UPF, NONE], R),
    ("one_failed", [OK, RUN], W),
    ("one_failed", [OK, SKIP], SK),
    ("one_done", [OK, RUN], R),
    ("one_done", [FAIL, RUN], R),
    ("one_done", [SKIP, RUN], W),
    ("one_done", [SKIP, UPF], SK),
    ("none_failed", [OK, SKIP], R),
    ("none_failed", [SKIP, SKIP], R),
    ("none_failed", [OK, RUN], W),
    ("none_failed", [FAIL, RUN], UF),
    ("none_failed", [UPF, OK], UF),
    ("none_failed_min_one_success", [OK, SKIP], R),
    ("none_failed_min_one_success", [SKIP, SKIP], SK),
    ("none_failed_min_one_success", [SKIP, RUN], W),
    ("none_failed_min_one_success", [FAIL, SKIP], UF),
    ("none_skipped", [OK, FAIL, UPF], R),
    ("none_skipped", [OK, RUN], W),
    ("none_skipped", [SKIP, RUN], SK),
    ("always", [RUN, NONE], R),
    ("always", [FAIL], R),
]


@pytest.mark.parametrize(("rule", "upstream", "verdict"), RULE_CASES)
def test_trigger_rule_table(rule: str, upstream: list[TaskState], verdict: Verdict) -> None:
    assert evaluate_trigger_rule(rule, upstream) is verdict


@pytest.mark.parametrize("rule", sorted(TRIGGER_RULES))
def test_task_without_upstream_is_ready(rule: str) -> None:
    assert evaluate_trigger_rule(rule, []) is Verdict.READY


def test_removed_upstream_is_ignored() -> None:
    assert evaluate_trigger_rule("all_success", [OK, S.REMOVED]) is R
    assert evaluate_trigger_rule("all_success", [S.REMOVED]) is R


def test_all_done_setup_success_looks_at_setups() -> None:
    rule = "all_done_setup_success"
    assert evaluate_trigger_rule(rule, [OK, FAIL], setup_upstream=[OK]) is R
    assert evaluate_trigger_rule(rule, [FAIL, UPF], setup_upstream=[FAIL]) is UF
    assert evaluate_trigger_rule(rule, [SKIP, SKIP], setup_upstream=[SKIP]) is SK
    assert evaluate_trigger_rule(rule, [OK, RUN], setup_upstream=[OK]) is W
    assert evaluate_trigger_rule(rule, [FAIL, OK], setup_upstream=[]) is R


def test_indirect_setups_must_all_succeed() -> None:
    assert evaluate_trigger_rule("always", [OK], indirect_setups=[FAIL]) is UF
    assert evaluate_trigger_rule("all_success", [OK], indirect_setups=[SKIP]) is SK
    assert evaluate_trigger_rule("all_success", [OK], indirect_setups=[RUN]) is W
    assert evaluate_trigger_rule("all_success", [FAIL], indirect_setups=[RUN]) is UF
    assert evaluate_trigger_rule("all_success", [OK], indirect_setups=[OK]) is R


def test_unknown_rule_raises() -> None:
    with pytest.raises(ValueError, match="valid rules"):
        evaluate_trigger_rule("whenever", [OK])


states = st.sampled_from(list(TaskState))


@settings(max_examples=400)
@given(st.sampled_from(sorted(TRIGGER_RULES)), st.lists(states, max_size=6))
def test_ready_waits_for_unfinished_upstreams_except_early_rules(rule: str,
                                                                 upstream: list[TaskState]) -> None:
    verdict = evaluate_trigger_rule(rule, upstream)
    unfinished = [s for s in upstream if s not in FINISHED_TASK_STATES]
    if verdict is Verdict.READY and rule not in EARLY_RULES:
        assert not unfinished
    if not unfinished:
        assert verdict is not Verdict.WAIT  # a finished upstream never deadlocks a task


@settings(max_examples=300)
@given(st.sampled_from(sorted(TRIGGER_RULES)), st.lists(states, min_size=1, max_size=6),
       st.data())
def test_skip_and_upstream_failed_are_final(rule: str, upstream: list[TaskState], data) -> None:
    """A task skipped or upstream-failed early could never have run: finishing the remaining
    upstreams in any way never makes it READY (or undecided) again."""
    verdict = evaluate_trigger_rule(rule, upstream)
    if verdict not in (Verdict.SKIP, Verdict.UPSTREAM_FAILED):
        return
    finished = sorted(FINISHED_TASK_STATES - {S.REMOVED})
    later = [s if s in FINISHED_TASK_STATES else data.draw(st.sampled_from(finished))
             for s in upstream]
    assert evaluate_trigger_rule(rule, later) in (Verdict.SKIP, Verdict.UPSTREAM_FAILED)


# -- schedulable -------------------------------------------------------------------------------

CHAIN = {"extract": [], "transform": ["extract"], "load": ["transform"], "report": ["load"]}


def test_only_roots_are_scheduled_first() -> None:
    dag = make_dag(CHAIN)
    got = schedulable(dag, views(extract=NONE, transform=NONE, load=NONE, report=NONE), NOW)
    assert got == [Transition("extract", S.SCHEDULED, "no upstream tasks")]


def test_missing_task_instances_count_as_none() -> None:
    dag = make_dag(CHAIN)
    assert moves(schedulable(dag, {}, NOW)) == {"extract": S.SCHEDULED}


def test_success_schedules_the_next_task() -> None:
    dag = make_dag(CHAIN)
    got = schedulable(dag, views(extract=OK, transform=NONE, load=NONE, report=NONE), NOW)
    assert got == [Transition("transform", S.SCHEDULED, "trigger rule all_success met")]


def test_failure_cascades_down_the_whole_chain_in_one_call() -> None:
    dag = make_dag(CHAIN)
    got = schedulable(dag, views(extract=FAIL, transform=NONE, load=NONE, report=NONE), NOW)
    assert moves(got) == {"transform": UPF, "load": UPF, "report": UPF}
    assert "extract failed" in got[0].reason
    assert "transform failed" in got[1].reason


def test_skip_cascades_and_a_join_recovers() -> None:
    dag = make_dag(
        {"branch": [], "a": ["branch"], "b": ["branch"], "a2": ["a"], "join": ["a2", "b"]},
        rules={"join": "none_failed_min_one_success"},
    )
    tis = views(branch=OK, a=SKIP, b=NONE, a2=NONE, join=NONE)
    got = moves(schedulable(dag, tis, NOW))
    assert got == {"b": S.SCHEDULED, "a2": SKIP}
    tis = apply(tis, schedulable(dag, tis, NOW))
    tis["b"] = TIView("b", OK)
    assert moves(schedulable(dag, tis, NOW)) == {"join": S.SCHEDULED}


def test_all_done_cleanup_runs_after_failure() -> None:
    dag = make_dag({"a": [], "b": ["a"], "cleanup": ["b"]}, rules={"cleanup": "all_done"})
    got = moves(schedulable(dag, views(a=FAIL, b=NONE, cleanup=NONE), NOW))
    assert got == {"b": UPF, "cleanup": S.SCHEDULED}


def test_retry_is_scheduled_once_its_delay_elapsed() -> None:
    dag = make_dag({"a": []})
    later = {"a": TIView("a", S.UP_FOR_RETRY, 1, NOW + timedelta(seconds=1))}
    assert schedulable(dag, later, NOW) == []
    due = {"a": TIView("a", S.UP_FOR_RETRY, 1, NOW)}
    assert schedulable(dag, due, NOW) == [Transition("a", S.SCHEDULED, "retry delay elapsed")]


def test_naive_retry_times_are_utc() -> None:
    dag = make_dag({"a": []})
    naive = NOW.replace(tzinfo=None)
    due = {"a": TIView("a", S.UP_FOR_RETRY, 1, naive)}
    assert moves(schedulable(dag, due, NOW)) == {"a": S.SCHEDULED}
    later = {"a": TIView("a", S.UP_FOR_RETRY, 1, naive + timedelta(minutes=1))}
    assert schedulable(dag, later, NOW) == []


def test_map_index_is_carried_over() -> None:
    dag = make_dag({"a": []})
    got = schedulable(dag, {"a": TIView("a", NONE, map_index=3)}, NOW)
    assert got[0].map_index == 3


def test_held_tasks_are_not_scheduled_but_still_skipped() -> None:
    dag = make_dag({"a": [], "b": ["a"]})
    assert schedulable(dag, views(a=NONE, b=NONE), NOW, hold={"a"}) == []
    assert moves(schedulable(dag, views(a=SKIP, b=NONE), NOW, hold={"b"})) == {"b": SKIP}


def test_active_and_finished_tasks_are_left_alone() -> None:
    dag = make_dag({"a": [], "b": [], "c": [], "d": []})
    tis = views(a=S.SCHEDULED, b=S.QUEUED, c=S.RUNNING, d=OK)
    assert schedulable(dag, tis, NOW) == []


def test_setup_failure_fails_the_work_and_the_teardown() -> None:
    dag = make_dag({"setup": [], "work": ["setup"], "teardown": ["setup", "work"]},
                   setups={"setup"}, teardowns={"teardown"})
    got = moves(schedulable(dag, views(setup=FAIL, work=NONE, teardown=NONE), NOW))
    assert got == {"work": UPF, "teardown": UPF}


def test_teardown_runs_after_work_failed_when_its_setup_succeeded() -> None:
    dag = make_dag({"setup": [], "work": ["setup"], "teardown": ["setup", "work"]},
                   setups={"setup"}, teardowns={"teardown"})
    got = moves(schedulable(dag, views(setup=OK, work=FAIL, teardown=NONE), NOW))
    assert got == {"teardown": S.SCHEDULED}


def test_indirect_setup_blocks_tasks_in_its_scope() -> None:
    graph = {"setup": [], "a": ["setup"], "side": [], "b": ["a", "side"],
             "teardown": ["setup", "b"]}
    dag = make_dag(graph, setups={"setup"}, teardowns={"teardown"}, )
    assert relevant_indirect_setups(dag) == {"b": ("setup",)}
    # b's own rule would be met by 'side' alone if it were 'always'
    dag = make_dag(graph, setups={"setup"}, teardowns={"teardown"}, rules={"b": "one_success"})
    tis = views(setup=S.RUNNING, a=NONE, side=OK, b=NONE, teardown=NONE)
    assert moves(schedulable(dag, tis, NOW)) == {}


def test_setup_outside_scope_is_not_relevant() -> None:
    # the setup's teardown runs before 'after', so 'after' is outside its scope
    graph = {"setup": [], "work": ["setup"], "teardown": ["setup", "work"],
             "after": ["teardown"]}
    dag = make_dag(graph, setups={"setup"}, teardowns={"teardown"})
    assert "after" not in relevant_indirect_setups(dag)


def _random_dag(draw) -> tuple[SerializedDag, dict[str, TIView]]:
    n = draw(st.integers(1, 9))
    ids = [f"t{i}" for i in range(n)]
    graph = {tid: sorted(draw(st.sets(st.sampled_from(ids[:i]), max_size=3))) if i else []
             for i, tid in enumerate(ids)}
    rules = {tid: draw(st.sampled_from(sorted(TRIGGER_RULES))) for tid in ids}
    dag = make_dag(graph, rules=rules)
    tis = {tid: TIView(tid, draw(states), 1,
                       draw(st.sampled_from([None, NOW - timedelta(1), NOW + timedelta(1)])))
           for tid in ids}
    return dag, tis


@settings(max_examples=300)
@given(st.data())
def test_schedulable_is_idempotent(data) -> None:
    dag, tis = _random_dag(data.draw)
    first = schedulable(dag, tis, NOW)
    assert len({t.task_id for t in first}) == len(first)  # one decision per task
    assert schedulable(dag, apply(tis, first), NOW) == []


@settings(max_examples=300)
@given(st.data())
def test_schedulable_matches_the_rule_for_each_task(data) -> None:
    dag, tis = _random_dag(data.draw)
    after = apply(tis, schedulable(dag, tis, NOW))
    for task in dag.tasks:
        if tis[task.task_id].state is not NONE:
            continue
        verdict = evaluate_trigger_rule(task.trigger_rule,
                                        [after[u].state for u in task.upstream])
        expected = {R: S.SCHEDULED, W: NONE, SK: SKIP, UF: UPF}[verdict]
        assert after[task.task_id].state is expected


@settings(max_examples=200)
@given(st.data())
def test_driving_a_run_to_the_end_always_finishes(data) -> None:
    """Repeatedly scheduling and finishing tasks never deadlocks, and the outcome is decided."""
    dag, _ = _random_dag(data.draw)
    tis: dict[str, TIView] = {}
    for _ in range(3 * len(dag.tasks) + 2):
        tis = apply(tis, schedulable(dag, tis, NOW))
        for tid, ti in list(tis.items()):
            if ti.state is S.SCHEDULED:
                tis[tid] = TIView(tid, data.draw(st.sampled_from([OK, FAIL, SKIP])))
        if run_outcome(dag, tis) is not None:
            break
    assert run_outcome(dag, tis) in (RunState.SUCCESS, RunState.FAILED)


# -- run outcome -------------------------------------------------------------------------------


def test_run_is_undecided_while_any_task_is_unfinished() -> None:
    dag = make_dag({"a": [], "b": []})
    assert run_outcome(dag, views(a=FAIL, b=RUN)) is None
    assert run_outcome(dag, views(a=OK)) is None


def test_run_fails_when_a_leaf_failed() -> None:
    dag = make_dag(CHAIN)
    assert run_outcome(dag, views(extract=FAIL, transform=UPF, load=UPF, report=UPF)) \
        is RunState.FAILED
    assert run_outcome(dag, views(extract=OK, transform=OK, load=OK, report=FAIL)) \
        is RunState.FAILED


def test_run_succeeds_when_leaves_succeeded_or_skipped() -> None:
    dag = make_dag({"a": [], "b": ["a"], "c": ["a"]}, rules={"c": "all_done"})
    assert run_outcome(dag, views(a=OK, b=OK, c=SKIP)) is RunState.SUCCESS
    # a failure upstream that a leaf recovered from does not fail the run (Airflow)
    dag = make_dag({"a": [], "cleanup": ["a"]}, rules={"cleanup": "all_done"})
    assert run_outcome(dag, views(a=FAIL, cleanup=OK)) is RunState.SUCCESS


def test_teardown_does_not_decide_the_run() -> None:
    dag = make_dag({"setup": [], "work": ["setup"], "teardown": ["setup", "work"]},
                   setups={"setup"}, teardowns={"teardown"})
    assert effective_leaves(dag) == ["work"]
    assert run_outcome(dag, views(setup=OK, work=OK, teardown=FAIL)) is RunState.SUCCESS
    assert run_outcome(dag, views(setup=OK, work=FAIL, teardown=OK)) is RunState.FAILED
    assert run_outcome(dag, views(setup=OK, work=OK, teardown=RUN)) is None


def test_removed_leaf_is_ignored() -> None:
    dag = make_dag({"a": [], "b": []})
    assert run_outcome(dag, views(a=OK, b=S.REMOVED)) is RunState.SUCCESS


def test_dag_of_only_teardowns_falls_back_to_plain_leaves() -> None:
    dag = make_dag({"t": []}, teardowns={"t"})
    assert effective_leaves(dag) == ["t"]
    assert run_outcome(dag, views(t=FAIL)) is RunState.FAILED


# -- attempts ----------------------------------------------------------------------------------


def task(**fields: Any) -> SerializedTask:
    return SerializedTask.from_dict({"task_id": "t", **fields})


def test_failed_attempt_with_retries_left_goes_up_for_retry() -> None:
    t = task(retries=2, retry_delay=60.0)
    end = attempt_failed(t, 1, NOW, error="boom")
    assert end == AttemptEnd(S.UP_FOR_RETRY, NOW + timedelta(seconds=60), end.reason)
    assert "boom" in end.reason
    assert attempt_failed(t, 2, NOW).state is S.UP_FOR_RETRY
    last = attempt_failed(t, 3, NOW, error="boom")
    assert last.state is S.FAILED and last.next_retry_at is None
    assert "no retries left" in last.reason


def test_no_retries_fails_at_once() -> None:
    assert attempt_failed(task(), 1, NOW).state is S.FAILED


def test_fixed_retry_delay_ignores_attempt_and_jitter() -> None:
    t = task(retry_delay=30.0)
    assert retry_delay(t, 5, jitter=0.9) == timedelta(seconds=30)


def test_exponential_backoff_doubles_and_is_capped() -> None:
    t = task(retry_delay=10.0, retry_exponential_backoff=True, max_retry_delay=100.0)
    assert [retry_delay(t, n) for n in (1, 2, 3, 4, 5)] == [
        timedelta(seconds=s) for s in (10, 20, 40, 80, 100)
    ]
    assert retry_delay(t, 2, jitter=0.5) == timedelta(seconds=30)
    assert retry_delay(t, 4, jitter=0.5) == timedelta(seconds=100)


def test_exponential_backoff_default_cap_is_a_day() -> None:
    t = task(retry_delay=60.0, retry_exponential_backoff=True)
    assert retry_delay(t, 1000) == MAX_RETRY_DELAY == timedelta(hours=24)


def test_jitter_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError):
        retry_delay(task(), 1, jitter=1.0)


@given(st.integers(1, 200), st.floats(0, 0.999), st.floats(0, 3600), st.booleans())
def test_retry_delay_is_bounded(try_number: int, jitter: float, base: float, backoff: bool) -> None:
    t = task(retry_delay=base, retry_exponential_backoff=backoff)
    delay = retry_delay(t, try_number, jitter=jitter)
    assert timedelta(0) <= delay <= max(MAX_RETRY_DELAY, t.retry_delay)
    if backoff and try_number > 1:
        assert delay >= min(retry_delay(t, try_number - 1, jitter=0.0), MAX_RETRY_DELAY)


# -- admission ---------------------------------------------------------------------------------


def test_runs_to_start_oldest_first_within_limit() -> None:
    d = [datetime(2024, 1, day, tzinfo=UTC) for day in range(1, 5)]
    queued = [("r3", d[2]), ("r1", d[0]), ("r4", d[3]), ("r2", d[1])]
    assert runs_to_start(queued, running_count=1, max_active_runs=3) == ["r1", "r2"]
    assert runs_to_start(queued, running_count=3, max_active_runs=3) == []
    assert runs_to_start(queued, running_count=5, max_active_runs=3) == []
    assert runs_to_start(queued, running_count=0, max_active_runs=16) == ["r1", "r2", "r3", "r4"]


def cand(key: str, dag: str = "d", prio: int = 1, day: int = 1, pool: str = "default_pool",
         slots: int = 1) -> Candidate:
    return Candidate(key, dag, datetime(2024, 1, day, tzinfo=UTC), pool, slots, prio)


def keys(cs: Iterable[Candidate]) -> list[Any]:
    return [c.key for c in cs]


def test_pick_orders_by_priority_then_logical_date() -> None:
    cs = [cand("old-low", day=1), cand("new-high", prio=5, day=3), cand("new-low", day=3),
          cand("mid-high", prio=5, day=2)]
    got = pick_tasks_to_queue(cs, free_slots=10, running_per_dag={}, max_active_tasks={},
                              pool_free={"default_pool": 128})
    assert keys(got) == ["mid-high", "new-high", "old-low", "new-low"]


def test_pick_handles_naive_and_missing_logical_dates() -> None:
    cs = [Candidate("none", "d", None), Candidate("naive", "d", datetime(2024, 1, 2)),
          Candidate("aware", "d", datetime(2024, 1, 1, tzinfo=UTC))]
    got = pick_tasks_to_queue(cs, free_slots=10, running_per_dag={}, max_active_tasks={},
                              pool_free={"default_pool": 128})
    assert keys(got) == ["aware", "naive", "none"]
    assert runs_to_start([("b", None), ("a", datetime(2024, 1, 1))], 0, 5) == ["a", "b"]


def test_pick_respects_free_slots() -> None:
    cs = [cand(str(i)) for i in range(5)]
    got = pick_tasks_to_queue(cs, free_slots=2, running_per_dag={}, max_active_tasks={},
                              pool_free={"default_pool": 128})
    assert keys(got) == ["0", "1"]
    assert pick_tasks_to_queue(cs, free_slots=0, running_per_dag={}, max_active_tasks={},
                               pool_free={"default_pool": 128}) == []


def test_pick_respects_max_active_tasks_per_dag() -> None:
    cs = [cand("a1", "a"), cand("a2", "a"), cand("b1", "b")]
    got = pick_tasks_to_queue(cs, free_slots=10, running_per_dag={"a": 1},
                              max_active_tasks={"a": 2, "b": 16}, pool_free={"default_pool": 9})
    assert keys(got) == ["a1", "b1"]


def test_pick_respects_pool_slots_and_passes_over_what_does_not_fit() -> None:
    cs = [cand("big", prio=9, pool="gpu", slots=3), cand("small", prio=5, pool="gpu"),
          cand("elsewhere", prio=1), cand("nopool", prio=10, pool="missing")]
    got = pick_tasks_to_queue(cs, free_slots=10, running_per_dag={}, max_active_tasks={},
                              pool_free={"gpu": 2, "default_pool": 1})
    assert keys(got) == ["small", "elsewhere"]


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(1, 3), st.sampled_from(["p", "q"]),
                          st.integers(1, 2)), max_size=12),
       st.integers(0, 6), st.integers(0, 4), st.integers(0, 4))
def test_pick_never_exceeds_any_limit(spec, free: int, pfree: int, limit_a: int) -> None:
    cs = [Candidate(i, dag, NOW, pool, slots, prio) for i, (dag, prio, pool, slots)
          in enumerate(spec)]
    got = pick_tasks_to_queue(cs, free_slots=free, running_per_dag={"a": 1},
                              max_active_tasks={"a": limit_a}, pool_free={"p": pfree, "q": 3})
    assert len(got) <= free
    picked_a = sum(c.dag_id == "a" for c in got)
    assert picked_a == 0 or 1 + picked_a <= limit_a
    assert sum(c.pool_slots for c in got if c.pool == "p") <= pfree
    assert sum(c.pool_slots for c in got if c.pool == "q") <= 3
    prios = [c.priority_weight for c in got]
    assert len(set(keys(got))) == len(got)
    # a skipped candidate is only ever passed over for a limit, never for a lower priority
    if len(got) == len(cs):
        assert prios == sorted(prios, reverse=True)

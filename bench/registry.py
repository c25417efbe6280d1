"""The workloads of BENCHMARKS.md by name, with the figures each prints and its sizes.

Canonical names (``chain_50``, ``parse_200``...) keep their figure names under ``--small``,
which only shrinks the sizes (for the harness's own test). Sized variants (``chain_N``,
``fanout_N``, ``bash_fanout_N``, ``parse_N``, ``backfill_N``, ``recovery_N``) run exactly N
for growth measurements.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bench import store_workloads, workloads
from bench.home import Options

Values = dict[str, float | None]

#: Remarks a workload made about how it measured (printed as comments, kept in the JSON).
NOTES: list[str] = []


@dataclass(frozen=True)
class Workload:
    name: str
    figures: tuple[tuple[str, str], ...]  # (suffix, unit)
    run: Callable[[Options], Values]
    #: ``--executor`` applies to it (the other workloads always use the LocalExecutor).
    uses_executor: bool = False

    def figure_names(self) -> list[str]:
        return [f"{self.name}.{suffix}" for suffix, _ in self.figures]

    def unit(self, suffix: str) -> str:
        return dict(self.figures)[suffix]


CHAIN = (("hop_median", "ms"), ("hop_p95", "ms"), ("hop_queue_median", "ms"),
         ("hop_start_median", "ms"), ("wall", "s"))
FANOUT = (("wall", "s"), ("tasks_per_s", "1/s"), ("scheduler_cpu", "s"), ("total_cpu", "s"),
          ("loop_ms_per_task", "ms"), ("worker_ms_per_task", "ms"),
          ("attempt_ms_per_task", "ms"))
PARSE = (("cold", "s"), ("unchanged", "s"), ("dags_list", "s"))
BACKFILL = (("wall", "s"), ("runs_per_s", "1/s"), ("scheduler_cpu", "s"))
RECOVERY = (("restart_to_end", "s"), ("tasks_failed", "tasks"), ("tasks_run_twice", "tasks"),
            ("finished_rerun", "tasks"))


def _backfill(options: Options, days: int) -> Values:
    values, method = store_workloads.backfill(options, days)
    note = f"backfill_{days}: measured with {method}"
    if note not in NOTES:
        NOTES.append(note)
    return values


def canonical(small: bool) -> dict[str, Workload]:
    """The eight workloads of BENCHMARKS.md (tiny sizes when ``small``)."""
    def size(full: int, tiny: int) -> int:
        return tiny if small else full

    return {w.name: w for w in [
        Workload("chain_50", CHAIN, lambda o: workloads.chain(o, size(50, 5)),
                 uses_executor=True),
        Workload("fanout_200", FANOUT, lambda o: workloads.fanout(o, size(200, 10)),
                 uses_executor=True),
        Workload("bash_fanout_200", FANOUT,
                 lambda o: workloads.fanout(o, size(200, 10), bash=True)),
        Workload("parse_200", PARSE, lambda o: store_workloads.parse(o, size(200, 10))),
        Workload("backfill_365", BACKFILL, lambda o: _backfill(o, size(365, 5))),
        Workload("ui_grid", (("grid_ms", "ms"), ("graph_ms", "ms"), ("api_dag_runs_ms", "ms")),
                 lambda o: store_workloads.ui_grid(o, size(1000, 20), size(50, 5))),
        Workload("scheduler_rss", (("fanout_peak", "MB"), ("idle_peak", "MB")),
                 lambda o: workloads.scheduler_rss(o, size(200, 10), size(1000, 10))),
        Workload("recovery", RECOVERY, lambda o: workloads.recovery(o, size(200, 20))),
    ]}


_SIZED: dict[str, tuple[tuple[tuple[str, str], ...], Callable[[Options, int], Values], bool]] = {
    "chain": (CHAIN, lambda o, n: workloads.chain(o, n), True),
    "fanout": (FANOUT, lambda o, n: workloads.fanout(o, n), True),
    "bash_fanout": (FANOUT, lambda o, n: workloads.fanout(o, n, bash=True), False),
    "parse": (PARSE, lambda o, n: store_workloads.parse(o, n), False),
    "backfill": (BACKFILL, _backfill, False),
    "recovery": (RECOVERY, lambda o, n: workloads.recovery(o, n), False),
}


def resolve(name: str, small: bool) -> Workload | None:
    """The workload called ``name``: canonical, or a sized variant such as ``fanout_2000``."""
    known = canonical(small)
    if name in known:
        return known[name]
    match = re.fullmatch(r"([a-z_]+)_(\d+)", name)
    if match and match.group(1) in _SIZED:
        figures, fn, uses_executor = _SIZED[match.group(1)]
        n = int(match.group(2))
        return Workload(name, figures, lambda o: fn(o, n), uses_executor=uses_executor)
    return None


def known_names() -> str:
    return ", ".join([*canonical(False), *(f"{k}_N" for k in _SIZED)])

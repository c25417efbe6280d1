"""``python -m bench``: run the workloads of BENCHMARKS.md and print one line per figure,
``name value unit``: the median of ``--repeat`` runs, followed by a ``# spread`` comment (max -
min over the runs). A figure whose feature does not exist yet prints ``name n/a``.

Examples::

    python -m bench                              every workload, 3 runs each
    python -m bench --only chain_50 --repeat 5
    python -m bench --only fanout_2000 --only parse_1000 --repeat 1   sized variants
    python -m bench --db postgresql+psycopg://postgres@127.0.0.1:5432/test --json pg.json
    python -m bench --executor celery            chain_50 and fanout_200 on Celery

Exit status 1 when a workload failed (its traceback is on stderr), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.home import NotAvailable, Options
from bench.registry import NOTES, Workload, canonical, known_names, resolve


@dataclass
class Figure:
    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def spread(self) -> float | None:
        return max(self.values) - min(self.values) if self.values else None

    def line(self) -> str:
        if self.median is None:
            return f"{self.name} n/a"
        return (f"{self.name} {self.median:.4g} {self.unit}  "
                f"# spread {self.spread:.3g}, n={len(self.values)}")

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.median, "unit": self.unit,
                "spread": self.spread, "values": self.values}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only this workload (repeatable). Known: {known_names()}")
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--db", metavar="URL",
                        help="admin URL of a PostgreSQL server (e.g. postgresql+psycopg://"
                             "postgres@127.0.0.1:5432/test); each workload gets a fresh "
                             "database there, dropped after. Default: the embedded SQLite store")
    parser.add_argument("--executor", choices=["local", "celery"], default="local",
                        help="executor for chain_* and fanout_* (others use local)")
    parser.add_argument("--profile", metavar="DIR",
                        help="run each scheduler under cProfile, stats into DIR/*.prof")
    parser.add_argument("--py-spy", metavar="DIR", dest="py_spy",
                        help="sample each scheduler and all its processes (workers, task "
                             "processes) with py-spy into DIR/*.txt; summarise them with "
                             "`python -m bench.stacks DIR/*.txt`")
    parser.add_argument("--budget", type=float, default=540, metavar="SECONDS",
                        help="skip further repetitions of a workload when they would not leave "
                             "time for the rest within SECONDS (default 540, so that `make "
                             "bench` ends within 10 minutes); 0: no limit")
    parser.add_argument("--small", action="store_true",
                        help="tiny sizes, same figure names (for the harness's own test)")
    return parser


class Budget:
    """A time limit for the whole invocation: every workload runs once; further repetitions
    run only while the remaining workloads (guessed at :attr:`GUESS` s each until measured)
    still fit. ``seconds=0``: no limit."""

    GUESS = 45.0

    def __init__(self, seconds: float, workloads: int) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.remaining = workloads

    def allows_another(self, last_run: float) -> bool:
        if not self.seconds:
            return True
        elapsed = time.monotonic() - self.started
        reserve = (self.remaining - 1) * self.GUESS
        return elapsed + last_run * 1.2 + reserve <= self.seconds


def run_workload(workload: Workload, options: Options, repeat: int,
                 errors: list[str], budget: Budget) -> list[Figure]:
    figures = {suffix: Figure(f"{workload.name}.{suffix}", unit)
               for suffix, unit in workload.figures}
    last_run = 0.0
    for i in range(repeat):
        if i and not budget.allows_another(last_run):
            note = f"{workload.name}: {i} of {repeat} runs, to stay within --budget"
            NOTES.append(note)
            print(f"# {note}", file=sys.stderr)
            break
        t0 = time.monotonic()
        try:
            values = workload.run(options)
        except NotAvailable as exc:
            NOTES.append(f"{workload.name}: n/a: {exc}")
            print(f"# {workload.name}: n/a: {exc}", file=sys.stderr)
            break
        except Exception:  # noqa: BLE001 - report, then go on with the other workloads
            message = f"{workload.name} (run {i + 1}) failed:\n{traceback.format_exc()}"
            errors.append(message)
            print(message, file=sys.stderr)
            values = {}
        last_run = time.monotonic() - t0
        for suffix, value in values.items():
            if value is not None:
                figures[suffix].values.append(float(value))
    budget.remaining -= 1
    return list(figures.values())


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    options = Options(db=args.db, executor=args.executor, small=args.small,
                      profile=args.profile, py_spy=args.py_spy)
    if args.only:
        names = args.only
    elif args.executor != "local":
        names = [w.name for w in canonical(args.small).values() if w.uses_executor]
    else:
        names = list(canonical(args.small))
    chosen: list[Workload] = []
    for name in names:
        workload = resolve(name, args.small)
        if workload is None:
            parser.error(f"unknown workload {name!r}; known: {known_names()}")
        chosen.append(workload)

    load = os.getloadavg()[0]
    probe = fork_probe_ms()
    print(f"# headwater bench: store={options.store_kind} executor={options.executor} "
          f"repeat={args.repeat}{' small' if args.small else ''} "
          f"host={platform.node()} cpus={os.cpu_count()} load={load:.2f} "
          f"fork_probe={probe:.2f}ms", flush=True)
    budget = Budget(args.budget, len(chosen))
    errors: list[str] = []
    results: list[Figure] = []
    started = time.monotonic()
    for workload in chosen:
        if options.executor != "local" and not workload.uses_executor:
            print(f"# {workload.name}: --executor {options.executor} does not apply; "
                  "LocalExecutor", file=sys.stderr)
        t0 = time.monotonic()
        figures = run_workload(workload, options, args.repeat, errors, budget)
        for fig in figures:
            print(fig.line(), flush=True)
        print(f"# {workload.name}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
        results.extend(figures)
    for note in dict.fromkeys(NOTES):
        print(f"# note: {note}", flush=True)

    if args.json:
        Path(args.json).write_text(json.dumps({
            "meta": {"store": options.store_kind, "executor": options.executor,
                     "repeat": args.repeat, "small": args.small, "host": platform.node(),
                     "cpus": os.cpu_count(), "python": platform.python_version(),
                     "load_before": load, "load_after": os.getloadavg()[0],
                     "fork_probe_ms": round(probe, 3),
                     "when": datetime.now(UTC).isoformat(timespec="seconds"),
                     "seconds": round(time.monotonic() - started, 1),
                     "notes": list(dict.fromkeys(NOTES)), "errors": errors},
            "figures": [f.as_json() for f in results],
        }, indent=2) + "\n")
    return 1 if errors else 0


def fork_probe_ms(samples: int = 15) -> float:
    """How fast this machine is today at what dominates a task's cost: CPU milliseconds of a
    child forked from a process holding 60 MB, which writes to 1,000 of those pages (each one
    copied) and exits; the median of ``samples``. This VM's speed at it drifts from one hour
    to the next (4.9 to 5.7 ms within session 4, with the same code), and figures taken at
    different speeds are not comparable: the JSON keeps it beside them."""
    heap = [bytearray(4096) for _ in range(15_000)]
    costs = []
    for _ in range(samples):
        pid = os.fork()
        if pid == 0:
            for page in heap[:1000]:
                page[0] = 1
            os._exit(0)
        _, _, usage = os.wait4(pid, 0)
        costs.append((usage.ru_utime + usage.ru_stime) * 1000)
    del heap
    return statistics.median(costs)


if __name__ == "__main__":
    sys.exit(main())

"""Summarise py-spy's collapsed stacks (``python -m bench --py-spy DIR``) by role and function.

    python -m bench.stacks DIR/scheduler-*.txt [--top 25] [--role worker] [--match store/]

Each sample is put in one role by what its stack holds: the attempt's own process (user code
and what surrounds it), the worker process supervising attempts, the DAG processor, or the
scheduler loop. For each role it prints the samples (share of all), then the functions with the
most samples *inside* them (inclusive) and the frames sampled most often at the top of the stack
(self). py-spy samples CPU only (idle threads are left out), so the shares are shares of CPU.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

ROLES = (
    ("attempt", ("_execute (scheduler/worker.py", "_run_dag_callback (scheduler/worker.py:5")),
    ("worker", ("_worker_main (scheduler/executors/local.py", "_run_workload (")),
    ("dag-processor", ("scheduler/parsing/",)),
)
_PROCESS = re.compile(r'^process \d+:".*"$')


def role_of(frames: list[str]) -> str:
    joined = ";".join(frames)
    for role, marks in ROLES:
        if any(mark in joined for mark in marks):
            return role
    return "scheduler"


def _function(frame: str) -> str:
    """``name (path:line)`` -> ``name (path)``: lines of one function add up."""
    return re.sub(r":\d+\)$", ")", frame)


def summarise(paths: list[Path], top: int, role_filter: str | None, match: str | None) -> str:
    total = 0
    by_role: Counter[str] = Counter()
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    own: dict[str, Counter[str]] = defaultdict(Counter)
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [f for f in stack.split(";") if not _PROCESS.match(f)]
            if not frames:
                continue
            role = role_of(frames)
            total += n
            by_role[role] += n
            for fn in {_function(f) for f in frames}:
                inclusive[role][fn] += n
            own[role][frames[-1]] += n
    out = [f"{total} samples in {len(paths)} file(s)"]
    for role, n in by_role.most_common():
        if role_filter and role != role_filter:
            continue
        out.append(f"\n== {role}: {n} samples ({100 * n / max(total, 1):.1f}% of all)")
        out.append("-- inclusive (function and what it calls)")
        shown = 0
        for fn, k in inclusive[role].most_common():
            if match and match not in fn:
                continue
            out.append(f"{100 * k / n:6.1f}%  {fn}")
            shown += 1
            if shown >= top:
                break
        out.append("-- self (top of the stack)")
        for frame, k in own[role].most_common(top):
            out.append(f"{100 * k / n:6.1f}%  {frame}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stacks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="py-spy raw (collapsed) files")
    parser.add_argument("--top", type=int, default=25, help="lines per list (default 25)")
    parser.add_argument("--role", help="only this role (attempt, worker, dag-processor, "
                                       "scheduler)")
    parser.add_argument("--match", help="inclusive list: only functions whose name or path "
                                        "holds this text (e.g. scheduler/)")
    args = parser.parse_args(argv)
    print(summarise(args.files, args.top, args.role, args.match))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

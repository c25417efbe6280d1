"""``python -m bench [--only NAME] [--json FILE] [--repeat N]``: run the workloads and print
``name value unit`` lines (median of the repetitions, with the spread)."""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict

from bench.workloads import WORKLOADS, Figure, chain, dump, fanout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", help="run only this workload (repeatable); "
                        "also chain_N or fanout_N for any N")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    names = args.only or list(WORKLOADS)
    results: dict[str, list[Figure]] = defaultdict(list)
    for name in names:
        if name in WORKLOADS:
            fn = WORKLOADS[name]
        elif name.startswith("chain_"):
            fn = lambda n=int(name[6:]): chain(n)  # noqa: E731
        elif name.startswith("fanout_"):
            fn = lambda n=int(name[7:]): fanout(n)  # noqa: E731
        else:
            parser.error(f"unknown workload {name}; known: {', '.join(WORKLOADS)}")
        for _ in range(args.repeat):
            for fig in fn():
                results[fig.name].append(fig)
    summary = []
    for fname, figs in results.items():
        values = [f.value for f in figs]
        med = statistics.median(values)
        spread = max(values) - min(values)
        print(f"{fname} {med:.4g} {figs[0].unit} (spread {spread:.3g}, n={len(values)})")
        summary.append(Figure(fname, med, figs[0].unit))
    if args.json:
        dump(summary, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

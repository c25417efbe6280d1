"""Server-drawn SVG: a DAG's graph in layers, and the Gantt chart of one run.

Pure: data in, markup out (every user string escaped with :func:`markupsafe.escape`); no
session, no request. The graph's layout is layered left to right by networkx's topological
generations; within a layer, tasks of one group sit together and the rest follow the mean
position of their upstream tasks (one barycenter sweep), which keeps edges short and readable
at a few hundred tasks. Task groups (``group.task`` ids) get a dashed box around their tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import networkx as nx
from markupsafe import Markup, escape

from scheduler.core.serialized import SerializedDag
from webui.formatting import format_duration, state_class

NODE_W = 180
NODE_H = 30
GAP_X = 70
GAP_Y = 14
PAD = 20
MAX_LABEL = 24


@dataclass(frozen=True)
class Node:
    task_id: str
    x: int
    y: int
    layer: int


def group_of(task_id: str) -> str | None:
    """The task group of ``task_id`` (its id up to the last dot), or None at top level."""
    return task_id.rsplit(".", 1)[0] if "." in task_id else None


def layout(sdag: SerializedDag) -> dict[str, Node]:
    """Positions of every task: x by topological generation, y by order within it."""
    graph = nx.DiGraph()
    graph.add_nodes_from(t.task_id for t in sdag.tasks)
    for task in sdag.tasks:
        graph.add_edges_from((up, task.task_id) for up in task.upstream if up in graph)
    try:
        generations = [list(g) for g in nx.topological_generations(graph)]
    except nx.NetworkXUnfeasible:  # a cycle cannot reach the store; draw it in one column
        generations = [list(graph.nodes)]
    order = {t.task_id: i for i, t in enumerate(sdag.tasks)}
    rank: dict[str, float] = {}
    nodes: dict[str, Node] = {}
    for layer, tasks in enumerate(generations):
        def key(task_id: str) -> tuple[str, float, int]:
            ups = [rank[u] for u in graph.predecessors(task_id) if u in rank]
            bary = sum(ups) / len(ups) if ups else float(order[task_id])
            return (group_of(task_id) or "", bary, order[task_id])

        for i, task_id in enumerate(sorted(tasks, key=key)):
            rank[task_id] = float(i)
            nodes[task_id] = Node(task_id, PAD + layer * (NODE_W + GAP_X),
                                  PAD + 16 + i * (NODE_H + GAP_Y), layer)
    return nodes


def _label(task_id: str) -> str:
    short = task_id.rsplit(".", 1)[-1] if "." in task_id else task_id
    return short if len(short) <= MAX_LABEL else short[:MAX_LABEL - 1] + "…"


def graph_svg(sdag: SerializedDag, states: Mapping[str, str],
              href: Callable[[str], str | None]) -> Markup:
    """The DAG as an SVG: one box per task coloured by ``states`` (task id -> state; missing
    means no state), linked to ``href(task_id)`` when that is not None, arrows for
    dependencies, dashed boxes for task groups."""
    nodes = layout(sdag)
    if not nodes:
        return Markup('<p class="empty-inline">This DAG has no tasks.</p>')
    width = max(n.x for n in nodes.values()) + NODE_W + PAD
    height = max(n.y for n in nodes.values()) + NODE_H + PAD
    parts: list[str] = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Graph of {escape(sdag.dag_id)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="graph-arrow"/></marker></defs>',
    ]
    groups: dict[str, list[Node]] = {}
    for node in nodes.values():
        group = group_of(node.task_id)
        if group:
            groups.setdefault(group, []).append(node)
    for group, members in sorted(groups.items()):
        x0 = min(n.x for n in members) - 8
        y0 = min(n.y for n in members) - 18
        x1 = max(n.x for n in members) + NODE_W + 8
        y1 = max(n.y for n in members) + NODE_H + 8
        parts.append(f'<g class="graph-group"><rect x="{x0}" y="{y0}" width="{x1 - x0}" '
                     f'height="{y1 - y0}" rx="8"/><text x="{x0 + 8}" y="{y0 + 12}">'
                     f'{escape(group)}</text></g>')
    for task in sdag.tasks:
        dst = nodes.get(task.task_id)
        for up in task.upstream:
            src = nodes.get(up)
            if src is None or dst is None:
                continue
            x1, y1 = src.x + NODE_W, src.y + NODE_H // 2
            x2, y2 = dst.x - 2, dst.y + NODE_H // 2
            mid = (x1 + x2) // 2
            parts.append(f'<path class="graph-edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} '
                         f'{x2},{y2}" marker-end="url(#arrow)"/>')
    for task in sdag.tasks:
        node = nodes[task.task_id]
        state = states.get(task.task_id)
        cls = state_class(state) if state else "st-none"
        title = f"{task.task_id} · {task.operator}" + (f" · {state}" if state else "")
        box = (f'<rect class="graph-node {cls}" x="{node.x}" y="{node.y}" width="{NODE_W}" '
               f'height="{NODE_H}" rx="5"/>'
               f'<text class="graph-label" x="{node.x + 10}" y="{node.y + 19}">'
               f'{escape(_label(task.task_id))}</text><title>{escape(title)}</title>')
        link = href(task.task_id)
        if link:
            parts.append(f'<a href="{escape(link)}" data-task-id="{escape(task.task_id)}">'
                         f'{box}</a>')
        else:
            parts.append(f'<g data-task-id="{escape(task.task_id)}">{box}</g>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Bar:
    label: str
    state: str
    start: datetime | None
    end: datetime | None
    href: str | None = None


def gantt_svg(bars: Sequence[Bar], now: datetime) -> Markup:
    """A timeline: one row per bar, from its start to its end (or ``now`` while unfinished),
    on a shared time axis with a few ticks. Bars that never started are listed empty."""
    started = [b for b in bars if b.start is not None]
    if not started:
        return Markup('<p class="empty-inline">No task of this run has started yet.</p>')
    t0 = min(b.start for b in started if b.start)
    t1 = max((b.end or now) for b in started)
    total = max((t1 - t0).total_seconds(), 0.001)
    label_w, chart_w, row_h = 220, 760, 22
    width = label_w + chart_w + PAD * 2
    height = PAD * 2 + 18 + row_h * len(bars)
    parts = [f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Gantt chart">']
    for i in range(5):
        x = PAD + label_w + chart_w * i / 4
        parts.append(f'<line class="gantt-tick" x1="{x:.1f}" y1="{PAD}" x2="{x:.1f}" '
                     f'y2="{height - PAD}"/><text class="gantt-axis" x="{x:.1f}" y="{PAD + 10}" '
                     f'text-anchor="middle">+{escape(format_duration(total * i / 4))}</text>')
    for row, bar in enumerate(bars):
        y = PAD + 18 + row * row_h
        label = bar.label if len(bar.label) <= 30 else bar.label[:29] + "…"
        parts.append(f'<text class="gantt-label" x="{PAD}" y="{y + 15}">{escape(label)}</text>')
        if bar.start is None:
            continue
        end = bar.end or now
        x = PAD + label_w + chart_w * (bar.start - t0).total_seconds() / total
        w = max(chart_w * (end - bar.start).total_seconds() / total, 2.0)
        secs = (end - bar.start).total_seconds()
        rect = (f'<rect class="gantt-bar {state_class(bar.state)}" x="{x:.1f}" y="{y + 3}" '
                f'width="{w:.1f}" height="{row_h - 6}" rx="3"/><title>{escape(bar.label)} · '
                f'{escape(bar.state)} · {escape(format_duration(secs))}</title>')
        parts.append(f'<a href="{escape(bar.href)}">{rect}</a>' if bar.href else rect)
    parts.append("</svg>")
    return Markup("".join(parts))

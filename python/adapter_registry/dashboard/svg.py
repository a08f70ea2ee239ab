"""Pictures drawn on the server as SVG text: the lineage graph and the evolution plots. No
script, no fonts or files from elsewhere. Every piece of text from the database is escaped
here (``_esc``), and every id in a link is percent-encoded (``adapter_href``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["adapter_href", "lineage_svg", "scatter_svg"]

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 168, 40, 16, 36, 12


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def adapter_href(adapter_id: str, **query: Any) -> str:
    """The page of an adapter (any id, percent-encoded: a row written by hand may hold any)."""
    tail = f"?{urlencode(query)}" if query else ""
    return f"/adapters/{quote(adapter_id, safe='')}{tail}"


def _fitness(value: float | None) -> str:
    return "unevaluated" if value is None else f"fit {value:.4g}"


def _node(x: float, y: float, node: dict[str, Any], link: bool) -> str:
    label = (
        f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
        f'<text x="{x + 8}" y="{y + 16}">{_esc(str(node["id"])[:8])}'
        f"{' (archived)' if node['is_archived'] else ''}</text>"
        f'<text x="{x + 8}" y="{y + 32}" class="sub">gen {_esc(node["generation"])} · '
        f"{_esc(_fitness(node['fitness_score']))}</text>"
        f"<title>{_esc(node['id'])} ({_esc(node['task_type'])})</title>"
    )
    if not link:
        return f'<g class="node self">{label}</g>'
    return f'<a class="node-link" href="{_esc(adapter_href(node["id"]))}">{label}</a>'


def lineage_svg(graph: dict[str, Any]) -> str:
    """The adapter on top, each generation of ancestors a row below, a line per parent link
    shown; each ancestor a link to its page. Past the caps: a "+N more" link (wider) at the
    end of a row, and a "deeper" link under the last row."""
    rows: list[list[dict[str, Any]]] = [[graph["adapter"]], *graph["generations"]]
    hidden: list[int] = [0, *graph["hidden"]]
    widest = max(len(r) + (1 if h else 0) for r, h in zip(rows, hidden, strict=True))
    width = PAD * 2 + widest * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + len(rows) * (NODE_H + GAP_Y) + (NODE_H if graph["deeper"] else 0)
    where: dict[str, tuple[float, float]] = {}
    nodes: list[str] = []
    more: list[str] = []
    wider = adapter_href(
        graph["adapter"]["id"], depth=graph["depth"], breadth=min(64, graph["breadth"] * 2)
    )
    for level, row in enumerate(rows):
        y = PAD + level * (NODE_H + GAP_Y)
        for i, node in enumerate(row):
            x = PAD + i * (NODE_W + GAP_X)
            where[node["id"]] = (x, y)
            nodes.append(_node(x, y, node, link=level > 0))
        if hidden[level]:
            x = PAD + len(row) * (NODE_W + GAP_X)
            more.append(
                f'<a class="more" href="{_esc(wider)}"><text x="{x + 8}" y="{y + 24}">'
                f"+{hidden[level]} more</text></a>"
            )
    if graph["deeper"]:
        deeper = adapter_href(
            graph["adapter"]["id"], depth=min(64, graph["depth"] * 2), breadth=graph["breadth"]
        )
        y = PAD + len(rows) * (NODE_H + GAP_Y)
        more.append(
            f'<a class="more" href="{_esc(deeper)}"><text x="{PAD}" y="{y + 16}">'
            "older generations: see more</text></a>"
        )
    lines = []
    for child, parent in graph["edges"]:
        (cx, cy), (px, py) = where[child], where[parent]
        lines.append(
            f'<line x1="{cx + NODE_W / 2}" y1="{cy + NODE_H}" x2="{px + NODE_W / 2}" y2="{py}"/>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<g class="edges">{"".join(lines)}</g>{"".join(nodes)}{"".join(more)}</svg>'
    )


PLOT_W, PLOT_H, MARGIN = 640, 300, 48


def _scale(lo: float, hi: float, size: float, flip: bool) -> Any:
    span = (hi - lo) or 1.0

    def at(v: float) -> float:
        f = (v - lo) / span
        return round(MARGIN + (1 - f if flip else f) * size, 2)

    return at


def _time(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return 0.0


def scatter_svg(
    points: Sequence[dict[str, Any]],
    best: Sequence[dict[str, Any]],
    x_key: str,
    title: str,
) -> str:
    """Fitness (y) against ``x_key`` ("generation" or "created_at") of every point, and the
    best of each generation marked and joined (a line where x is the generation)."""
    by_time = x_key == "created_at"
    xs = [_time(p[x_key]) if by_time else float(p[x_key]) for p in points]
    ys = [float(p["fitness_score"]) for p in points] + [float(b["best_fitness"]) for b in best]
    if not by_time:
        xs += [float(b["generation"]) for b in best]
    if not xs or not ys:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{PLOT_W}" height="60">'
            f'<text x="10" y="30">{_esc(title)}: no evaluated adapters</text></svg>'
        )
    fx = _scale(min(xs), max(xs), PLOT_W - 2 * MARGIN, flip=False)
    fy = _scale(min(ys), max(ys), PLOT_H - 2 * MARGIN, flip=True)
    dots = []
    for p in points:
        x = fx(_time(p["created_at"]) if by_time else float(p["generation"]))
        dots.append(
            f'<circle class="point" cx="{x}" cy="{fy(float(p["fitness_score"]))}" r="2.5">'
            f"<title>{_esc(p['id'])}: {_esc(p['fitness_score'])}</title></circle>"
        )
    marks, path = [], []
    ids = {p["id"]: p for p in points}
    for b in best:
        if by_time:
            found = ids.get(b["best_id"])
            if found is None:
                continue
            x = fx(_time(found["created_at"]))
        else:
            x = fx(float(b["generation"]))
        y = fy(float(b["best_fitness"]))
        path.append(f"{x},{y}")
        marks.append(
            f'<rect class="best" x="{x - 4}" y="{y - 4}" width="8" height="8">'
            f"<title>best of generation {_esc(b['generation'])}: {_esc(b['best_fitness'])}"
            "</title></rect>"
        )
    line = "" if by_time else f'<polyline class="best-line" points="{" ".join(path)}"/>'
    x_label = "stored at" if by_time else "generation"
    lo_x, hi_x = (_label_time(min(xs)), _label_time(max(xs))) if by_time else (min(xs), max(xs))
    bottom = PLOT_H - MARGIN
    axes = (
        f'<line class="axis" x1="{MARGIN}" y1="{bottom}" x2="{PLOT_W - MARGIN}" y2="{bottom}"/>'
        f'<line class="axis" x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{bottom}"/>'
        f'<text x="{MARGIN}" y="{bottom + 16}">{_esc(_num(lo_x))}</text>'
        f'<text x="{PLOT_W - MARGIN}" y="{bottom + 16}" text-anchor="end">{_esc(_num(hi_x))}'
        f'</text><text x="{PLOT_W / 2}" y="{PLOT_H - 8}" text-anchor="middle">{x_label}</text>'
        f'<text x="4" y="{MARGIN - 8}">fitness {_esc(_num(max(ys)))}</text>'
        f'<text x="4" y="{bottom}">{_esc(_num(min(ys)))}</text>'
        f'<text x="{PLOT_W / 2}" y="16" text-anchor="middle">{_esc(title)}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{PLOT_W}" '
        f'height="{PLOT_H}" viewBox="0 0 {PLOT_W} {PLOT_H}" role="img">{axes}'
        f"{''.join(dots)}{line}{''.join(marks)}</svg>"
    )


def _label_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

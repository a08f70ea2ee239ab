"""An adapter's ancestry, bounded: at most ``depth`` generations back and ``breadth`` adapters
per generation, so a 700-generation chain or a crossover's doubling costs at most ``depth``
small queries. What the caps leave out is counted, and the page links to see more (deeper,
wider, or from a shown ancestor's own page).
"""

from __future__ import annotations

from typing import Any

from .. import queries
from ..errors import InvalidAdapterError
from ..record import AdapterRecord
from .reading import ReadOnlyRegistry

__all__ = ["BREADTH", "DEPTH", "MAX_BREADTH", "MAX_DEPTH", "ancestry", "caps"]

#: The default caps, and the most a request may ask for.
DEPTH, BREADTH = 6, 12
MAX_DEPTH, MAX_BREADTH = 64, 64


def caps(depth: str | None, breadth: str | None) -> tuple[int, int]:
    """The caps a request asks for (query-string values), checked against the maxima."""
    return _cap("depth", depth, DEPTH, MAX_DEPTH), _cap("breadth", breadth, BREADTH, MAX_BREADTH)


def _cap(name: str, value: str | None, default: int, most: int) -> int:
    if not value:
        return default
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise InvalidAdapterError(f"{name} must be an integer from 1 to {most}, not {value!r}")
    return int(value)


def _node(record: AdapterRecord, shown: set[str]) -> dict[str, Any]:
    return {
        "id": record.id,
        "task_type": record.task_type,
        "generation": record.generation,
        "fitness_score": record.fitness_score,
        "is_archived": bool(record.is_archived),
        "parents": record.parents,
        "parents_hidden": sum(1 for p in record.parents if p not in shown),
    }


def ancestry(
    reader: ReadOnlyRegistry, adapter_id: str, depth: int = DEPTH, breadth: int = BREADTH
) -> dict[str, Any]:
    """The adapter and its ancestors by generation (nearest first), the parent links between
    those shown, and what the caps left out: ``hidden`` (per generation, beyond ``breadth``),
    ``deeper`` (ancestors beyond ``depth``), ``unregistered`` (parent ids with no row).
    AdapterNotFoundError if the adapter is not registered."""
    record = reader.records.require(adapter_id)
    seen = {adapter_id}
    levels: list[list[AdapterRecord]] = []
    hidden: list[int] = []
    unregistered: list[str] = []
    frontier = record.parents
    while True:
        ids = [p for p in dict.fromkeys(frontier) if p not in seen]
        if not ids or len(levels) == depth:
            break
        hidden.append(max(0, len(ids) - breadth))
        ids = ids[:breadth]
        seen.update(ids)
        by_id = {r.id: r for r in reader.records.select(queries.BY_IDS, ids=ids)}
        unregistered.extend(i for i in ids if i not in by_id)
        level = [by_id[i] for i in ids if i in by_id]
        levels.append(level)
        frontier = [p for r in level for p in r.parents]
    shown = {r.id for level in levels for r in level} | {adapter_id}
    edges = [
        [r.id, p] for r in (record, *(r for level in levels for r in level))
        for p in r.parents if p in shown
    ]  # fmt: skip
    return {
        "adapter": _node(record, shown),
        "depth": depth,
        "breadth": breadth,
        "generations": [[_node(r, shown) for r in level] for level in levels],
        "edges": edges,
        "hidden": hidden,
        "deeper": bool(ids),
        "unregistered": unregistered,
        "ancestors": [r.id for level in levels for r in level],
    }

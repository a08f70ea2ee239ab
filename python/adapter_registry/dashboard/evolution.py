"""How fitness moves across generations (and over time) for one task type: the evaluated
adapters as points (at most ``MAX_POINTS``, evenly thinned beyond that), and the best of each
generation. Live adapters only unless archived ones are asked for; only finite scores (a NaN
written by hand before the number rules would plot nowhere)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnClause, Select, bindparam, func, literal_column, select

from .. import queries
from ..record import TABLE
from .reading import ReadOnlyRegistry

__all__ = ["MAX_POINTS", "evolution"]

MAX_POINTS = 2000
_MOST: ColumnClause[float] = literal_column("1.7976931348623157e308")


def _statements(include_archived: bool) -> tuple[Select[Any], Select[Any]]:
    t = TABLE.c
    where = [t.task_type == bindparam("task_type"), t.fitness_score.between(-_MOST, _MOST)]
    if not include_archived:
        where.append(queries.LIVE)
    generation = func.coalesce(t.generation, 0)
    points = (
        select(t.id, generation, t.fitness_score, t.created_at)
        .where(*where)
        .order_by(t.created_at, t.id)
    )
    best = (
        select(generation, func.count(), func.max(t.fitness_score))
        .where(*where)
        .group_by(generation)
        .order_by(generation)
    )
    return points, best


#: Built once, so that the raw read path runs their compiled text (by include_archived).
_STATEMENTS = {archived: _statements(archived) for archived in (False, True)}


def evolution(
    reader: ReadOnlyRegistry, task_type: str, include_archived: bool = False
) -> dict[str, Any]:
    """Points (id, generation, fitness, created_at) oldest first, thinned to MAX_POINTS, and
    per generation the count and the best (its id and fitness; ties to the earlier stored)."""
    points_stmt, best_stmt = _STATEMENTS[include_archived]
    rows = reader.database.fetch(points_stmt, task_type=task_type)
    per_generation = reader.database.fetch(best_stmt, task_type=task_type)
    tops = {gen: top for gen, _, top in per_generation}
    best_ids: dict[int, str] = {}
    for adapter_id, gen, fitness, _ in rows:  # the first stored of each generation's best
        if gen not in best_ids and fitness == tops.get(gen):
            best_ids[gen] = adapter_id
    stride = max(1, -(-len(rows) // MAX_POINTS))
    shown = rows[::stride]
    return {
        "task_type": task_type,
        "include_archived": include_archived,
        "evaluated": len(rows),
        "thinned_to": len(shown),
        "points": [
            {"id": i, "generation": g, "fitness_score": f, "created_at": c} for i, g, f, c in shown
        ],
        "best_per_generation": [
            {"generation": g, "adapters": n, "best_fitness": top, "best_id": best_ids.get(g)}
            for g, n, top in per_generation
        ],
    }

"""Finding adapters: ``search`` with any combination of filters and a total order, and
``children``. The methods are mixed into ``AdapterRegistry``.

A search's SQL depends only on its shape (which filters are given, the order, the limit), so
each shape is built and compiled once and then runs on the raw read path with its values
bound, as the fixed queries do.
"""

from __future__ import annotations

import math
import numbers
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, bindparam, literal_column, select

from . import queries, validation
from .errors import InvalidAdapterError
from .record import COLUMNS, TABLE, AdapterRecord
from .records import Records
from .tables import EDGES, TAGS

__all__ = ["Finding"]

#: Filters that match a column's value exactly.
_EQUAL = (
    "task_type", "base_model_id", "source", "session_id", "agent_id", "training_task_hash",
)  # fmt: skip
#: Filters that bound a column: (column, SQL operator).
_BOUNDS = {
    "min_fitness": ("fitness_score", ">="),
    "max_fitness": ("fitness_score", "<="),
    "min_pass_rate": ("pass_rate", ">="),
}
#: The largest finite double: a fitness bound never lets a NaN or an infinity through.
_MOST: ColumnElement[float] = literal_column("1.7976931348623157e308")


class _Shape(NamedTuple):
    """What a search's SQL depends on; its values are bound."""

    equal: tuple[str, ...]
    bounds: tuple[str, ...]
    generation: bool
    parent: bool
    evaluated: bool | None
    tags: int
    after: bool
    before: bool
    include_archived: bool
    order: str
    descending: bool
    limit: int | None
    offset: bool


class Finding:
    """``search`` and ``children``, for ``AdapterRegistry``."""

    _records: Records

    def search(
        self,
        *,
        task_type: str | None = None,
        base_model_id: str | None = None,
        source: str | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        training_task_hash: str | None = None,
        parent_id: str | None = None,
        generation: int | None = None,
        min_fitness: float | None = None,
        max_fitness: float | None = None,
        min_pass_rate: float | None = None,
        evaluated: bool | None = None,
        tags: dict[str, str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        include_archived: bool = False,
        order_by: str = "-created_at",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[AdapterRecord]:
        """Adapters matching every filter given (filters combine with AND).

        Args:
            task_type, base_model_id, source, session_id, agent_id, training_task_hash: Equal
                to this.
            parent_id: A child of this adapter.
            generation: Of this generation.
            min_fitness, max_fitness: Fitness within these bounds (so evaluated).
            min_pass_rate: Pass rate at least this.
            evaluated: Has a fitness_score (True) or has none (False).
            tags: Carries every one of these key/value pairs.
            created_after, created_before: Stored strictly after / before these
                timezone-aware times.
            include_archived: Archived adapters too.
            order_by: A column name, ``-`` in front for descending. NULLs come last either
                way; ties go to the earlier ``created_at``, then the smaller id.
            limit: At most this many (None: all).
            offset: Skip this many first.

        Returns:
            The matching records, in that order.

        Raises:
            InvalidAdapterError: An unknown column, a negative limit or offset, a naive time, or
                a value of the wrong type; nothing is run.
        """
        given = locals()
        params: dict[str, Any] = {}
        for name in _EQUAL:
            if given[name] is not None:
                params[name] = _text_filter(name, given[name])
        for name in _BOUNDS:
            if given[name] is not None:
                params[name] = _number_filter(name, given[name])
        if parent_id is not None:
            params["parent_id"] = _text_filter("parent_id", parent_id)
        if generation is not None:
            params["generation"] = validation.check_count("generation", generation, 0)
        pairs = _tag_filter(tags)
        for i, (key, value) in enumerate(pairs):
            params[f"tag_key_{i}"], params[f"tag_value_{i}"] = key, value
        if created_after is not None:
            params["created_after"] = _time_filter("created_after", created_after)
        if created_before is not None:
            params["created_before"] = _time_filter("created_before", created_before)
        if offset:
            params["offset"] = _count_filter("offset", offset)
        column, descending = _order(order_by)
        shape = _Shape(
            equal=tuple(n for n in _EQUAL if n in params),
            bounds=tuple(n for n in _BOUNDS if n in params),
            generation="generation" in params,
            parent="parent_id" in params,
            evaluated=_flag("evaluated", evaluated),
            tags=len(pairs),
            after="created_after" in params,
            before="created_before" in params,
            include_archived=bool(_flag("include_archived", include_archived)),
            order=column,
            descending=descending,
            limit=None if limit is None else _count_filter("limit", limit),
            offset="offset" in params,
        )
        return self._records.select(_statement(shape), **params)

    def _task_types(self) -> list[str]:
        """Every task type stored, archived adapters' too (for the command line's messages)."""
        return [row[0] for row in self._records.db.fetch(queries.TASK_TYPES)]

    def _ids_with_prefix(self, prefix: str) -> list[str]:
        """Up to 11 registered ids starting with ``prefix``, in order (for the command line's
        short ids; the API itself takes full ids only)."""
        high = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return [
            row[0] for row in self._records.db.fetch(queries.IDS_BETWEEN, low=prefix, high=high)
        ]

    def children(self, adapter_id: str) -> list[AdapterRecord]:
        """The adapters that name this one among their parents.

        Args: adapter_id: The parent.
        Returns: Their records, oldest first, archived ones included.
        Raises: AdapterNotFoundError: No such adapter.
        """
        self._records.require(adapter_id)
        return self._records.select(queries.CHILDREN, parent_id=adapter_id)


def _text_filter(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidAdapterError(f"search filter {name} must be a string, not {value!r}")
    return value


def _number_filter(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidAdapterError(f"search filter {name} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidAdapterError(f"search filter {name} must be finite, not {value!r}")
    return number


def _count_filter(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidAdapterError(f"search {name} must be an integer >= 0, not {value!r}")
    return min(value, validation.MAX_INTEGER)


def _flag(name: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise InvalidAdapterError(f"search filter {name} must be True, False or None")
    return value


def _time_filter(name: str, value: Any) -> str:
    if not isinstance(value, datetime):
        raise InvalidAdapterError(f"search filter {name} must be a datetime, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidAdapterError(
            f"search filter {name} {value.isoformat()} has no time zone: give an aware time"
        )
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _tag_filter(tags: Any) -> list[tuple[str, str]]:
    if tags is None:
        return []
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidAdapterError("search filter tags must be a dict of strings to strings")
    return sorted(tags.items())


def _order(order_by: Any) -> tuple[str, bool]:
    if not isinstance(order_by, str):
        raise InvalidAdapterError(f"order_by must be a column name, not {order_by!r}")
    column = order_by.removeprefix("-")
    if column not in COLUMNS:
        raise InvalidAdapterError(
            f"order_by {order_by!r} names no column; one of {', '.join(COLUMNS)}, "
            "with '-' in front for descending"
        )
    return column, order_by.startswith("-")


@lru_cache(maxsize=512)
def _statement(shape: _Shape) -> Select[Any]:
    """The SQL of one shape of search, built once (the raw read path caches its compiled
    text by statement)."""
    c = TABLE.c
    stmt = select(TABLE)
    for name in shape.equal:
        stmt = stmt.where(c[name] == bindparam(name))
    for name in shape.bounds:
        column, op = _BOUNDS[name]
        # ...and finite: a NaN written by hand before the number rules passes '>=' on PostgreSQL.
        stmt = stmt.where(c[column].op(op)(bindparam(name)), c[column].between(-_MOST, _MOST))
    if shape.generation:
        stmt = stmt.where(c.generation == bindparam("generation"))
    if shape.parent:
        children = select(EDGES.c.child_id).where(EDGES.c.parent_id == bindparam("parent_id"))
        stmt = stmt.where(c.id.in_(children))
    if shape.evaluated is not None:
        has_fitness = c.fitness_score.is_not(None)
        stmt = stmt.where(has_fitness if shape.evaluated else c.fitness_score.is_(None))
    for i in range(shape.tags):
        # IN, not a correlated EXISTS: SQLite would run an EXISTS once per row of the table;
        # this reads the pair's adapters from ix_adapter_tags_pair.
        tagged = select(TAGS.c.adapter_id).where(
            TAGS.c.key == bindparam(f"tag_key_{i}"), TAGS.c.value == bindparam(f"tag_value_{i}")
        )
        stmt = stmt.where(c.id.in_(tagged))
    if shape.after:
        stmt = stmt.where(c.created_at > bindparam("created_after"))
    if shape.before:
        stmt = stmt.where(c.created_at < bindparam("created_before"))
    if not shape.include_archived:
        stmt = stmt.where(queries.LIVE)
    stmt = stmt.order_by(*_ordering(shape))
    if shape.limit is not None:
        # Written out, not bound: PostgreSQL's generic plan would not know how few are wanted.
        stmt = stmt.limit(literal_column(str(shape.limit)))
    if shape.offset:
        stmt = stmt.offset(bindparam("offset"))
    return stmt


def _ordering(shape: _Shape) -> list[Any]:
    """The main key, NULLs last, then created_at and id ascending: a total order."""
    column = TABLE.c[shape.order]
    key = column.desc() if shape.descending else column.asc()
    excluded = shape.order == "fitness_score" and (
        shape.evaluated or any(_BOUNDS[b][0] == "fitness_score" for b in shape.bounds)
    )  # no NULL can be among the rows: leave the order as an index gives it
    if column.nullable and not excluded:
        key = key.nulls_last()
    ties = [TABLE.c[name].asc() for name in ("created_at", "id") if name != shape.order]
    return [key, *ties]

"""What each page shows, as plain JSON-able data: the JSON endpoints return exactly these, and
the HTML pages render them. Every read goes through a ``ReadOnlyRegistry``.

Lists are bounded: a leaderboard is one page (``limit``, at most ``MAX_LIMIT``) and says
whether there is a next one; an adapter page shows at most ``CHILDREN_SHOWN`` children and
``EVALUATIONS_SHOWN`` evaluations, newest first, with the count of the rest.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, select

from .. import integrity, queries
from ..cli.output import record_json
from ..errors import InvalidAdapterError
from ..record import TABLE, AdapterRecord
from ..records import adapter_directory
from ..tables import ALIASES, EVALUATIONS, TAGS
from .reading import ReadOnlyRegistry

__all__ = [
    "CHILDREN_SHOWN",
    "MAX_LIMIT",
    "adapter_page",
    "leaderboard",
    "overview",
    "search_filters",
    "verify_one",
]

MAX_LIMIT, DEFAULT_LIMIT = 500, 50
CHILDREN_SHOWN, EVALUATIONS_SHOWN, FILES_SHOWN, NEWEST_SHOWN = 50, 100, 64, 10
#: Query-string filters that ``search`` takes as text, numbers, counts and flags.
_TEXT = (
    "task_type", "base_model_id", "source", "session_id", "agent_id", "training_task_hash",
    "parent_id", "order_by",
)  # fmt: skip
_NUMBER = ("min_fitness", "max_fitness", "min_pass_rate")
_TIME = ("created_after", "created_before")


def record_dict(record: AdapterRecord) -> dict[str, Any]:
    """Every column, as ``--json`` prints it (parent_ids a list; NaN and infinities None)."""
    return record_json(record)


_t = TABLE.c
#: One scan: the numbers of each (task type, base model) pair; the overview sums them up.
_GROUPS = select(
    _t.task_type,
    _t.base_model_id,
    func.count(),
    func.coalesce(func.sum(_t.file_size_bytes), 0),
    func.sum(case((_t.is_archived == 0, 1), else_=0)),
    func.count(_t.fitness_score),
    func.max(case((_t.is_archived == 0, _t.fitness_score), else_=None)),
).group_by(_t.task_type, _t.base_model_id)
_COUNTS = ("adapters", "bytes", "live", "evaluated")


def _summed(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    group = {key: sum(int(r[i] or 0) for r in rows) for i, key in enumerate(_COUNTS)}
    group["archived"] = group["adapters"] - group["live"]
    return group


def overview(reader: ReadOnlyRegistry) -> dict[str, Any]:
    """Counts and bytes, in all and per task type and base model; the newest stores."""
    pairs = [tuple(row) for row in reader.database.fetch(_GROUPS)]
    tasks: dict[str, list[tuple[Any, ...]]] = {}
    bases: dict[str, list[tuple[Any, ...]]] = {}
    for task_type, base, *numbers in pairs:
        tasks.setdefault(task_type, []).append(tuple(numbers))
        bases.setdefault(base, []).append(tuple(numbers))

    def best(rows: list[tuple[Any, ...]]) -> float | None:
        scores = [r[4] for r in rows if r[4] is not None]
        return max(scores) if scores else None

    newest = reader.search(include_archived=True, order_by="-created_at", limit=NEWEST_SHOWN)
    names = _aliases_of(reader, [r.id for r in newest])
    return {
        "totals": _summed([tuple(p[2:]) for p in pairs]),
        "task_types": [
            {"task_type": k, **_summed(v), "best_fitness": best(v)}
            for k, v in sorted(tasks.items())
        ],
        "base_models": [{"base_model_id": k, **_summed(v)} for k, v in sorted(bases.items())],
        "newest": [{**record_dict(r), "aliases": names.get(r.id, [])} for r in newest],
    }


def search_filters(params: Any) -> tuple[dict[str, Any], int, int]:
    """``search`` keyword arguments from a query string (a Starlette ``QueryParams``), and the
    page's limit and offset. InvalidAdapterError names a value that cannot be read."""
    filters: dict[str, Any] = {}
    for name in _TEXT:
        if params.get(name):
            filters[name] = params[name]
    for name in _NUMBER:
        if params.get(name):
            filters[name] = _number(name, params[name])
    if params.get("generation"):
        filters["generation"] = _count(name="generation", value=params["generation"])
    for name in ("evaluated", "include_archived"):
        if params.get(name):
            filters[name] = _flag(name, params[name])
    for name in _TIME:
        if params.get(name):
            try:
                filters[name] = datetime.fromisoformat(params[name])
            except ValueError:
                raise InvalidAdapterError(
                    f"search filter {name} {params[name]!r} is not an ISO 8601 time"
                ) from None
    tags = params.getlist("tag")
    if tags:
        pairs = [t.partition("=") for t in tags]
        if any(not sep for _, sep, _ in pairs):
            raise InvalidAdapterError("search filter tag takes KEY=VALUE")
        filters["tags"] = {k: v for k, _, v in pairs}
    limit = _count("limit", params.get("limit") or str(DEFAULT_LIMIT))
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidAdapterError(f"limit must be from 1 to {MAX_LIMIT}, not {limit}")
    return filters, limit, _count("offset", params.get("offset") or "0")


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InvalidAdapterError(f"search filter {name} must be a number, not {value!r}") from None


def _count(name: str, value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise InvalidAdapterError(f"{name} must be an integer >= 0, not {value!r}")
    return int(value)


def _flag(name: str, value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise InvalidAdapterError(f"{name} must be true or false, not {value!r}")


def leaderboard(
    reader: ReadOnlyRegistry, filters: dict[str, Any], limit: int, offset: int
) -> dict[str, Any]:
    """One page of ``search(**filters)`` (by fitness, best first, unless ``order_by`` says),
    with each adapter's aliases; ``next_offset`` is None on the last page."""
    filters = {"order_by": "-fitness_score", **filters}
    found = _ranked(reader, filters, limit + 1, offset)
    page, more = found[:limit], len(found) > limit
    names = _aliases_of(reader, [r.id for r in page])
    return {
        "filters": {k: _jsonable(v) for k, v in filters.items()},
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
        "previous_offset": max(0, offset - limit) if offset else None,
        "rank_of_first": offset + 1,
        "adapters": [{**record_dict(r), "aliases": names.get(r.id, [])} for r in page],
    }


#: The live, scored adapters of a task: an index-only count (ix_adapter_records_best).
_SCORED = (
    select(func.count())
    .select_from(TABLE)
    .where(_t.task_type == bindparam("task_type"), queries.LIVE, _t.fitness_score.is_not(None))
)


def _ranked(
    reader: ReadOnlyRegistry, filters: dict[str, Any], n: int, offset: int
) -> list[AdapterRecord]:
    """``search(**filters, limit=n, offset=offset)``, read where it is cheaper as its two
    parts: the scored adapters (by fitness), then the unscored ones (NULLs come last, in the
    same order of ties). A live ranking skips rows by its index alone that way (the scored
    part is ``ix_adapter_records_best``, whose rows are all live), where one OFFSET would
    read every row it skips to see whether it is archived. (On SQLite: PostgreSQL plans both
    parts as a bitmap scan and a sort, and one query costs it less than three.)"""
    plain = (
        not offset
        or reader.database.dialect != "sqlite"  # PostgreSQL sorts a bitmap scan either way
        or filters["order_by"] != "-fitness_score"
        or "evaluated" in filters
        or filters.get("include_archived")
    )
    if plain:
        return reader.search(**filters, limit=n, offset=offset)
    scored = reader.search(**filters, evaluated=True, limit=n, offset=offset)
    if len(scored) == n:
        return scored
    if scored:  # the page runs from the last scored adapters into the unscored ones
        return scored + reader.search(**filters, evaluated=False, limit=n - len(scored))
    if set(filters) != {"order_by", "task_type"}:
        return reader.search(**filters, limit=n, offset=offset)  # the count is the task's only
    count = reader.database.fetch(_SCORED, task_type=filters["task_type"])[0][0]
    return reader.search(**filters, evaluated=False, limit=n, offset=max(0, offset - count))


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _aliases_of(reader: ReadOnlyRegistry, ids: list[str]) -> dict[str, list[str]]:
    if not ids:
        return {}
    stmt = (
        select(ALIASES.c.adapter_id, ALIASES.c.alias)
        .where(ALIASES.c.adapter_id.in_(ids))
        .order_by(ALIASES.c.alias)
    )
    found: dict[str, list[str]] = {}
    with reader.database.read() as conn:
        for adapter_id, alias in conn.execute(stmt):
            found.setdefault(adapter_id, []).append(alias)
    return found


def adapter_files(reader: ReadOnlyRegistry, adapter_id: str) -> list[dict[str, Any]]:
    """The entries of an adapter's directory (found from the root and its id, never from the
    row's file_path), as lstat sees them: nothing is followed or opened."""
    directory = adapter_directory(reader.root, adapter_id)
    try:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries)[:FILES_SHOWN]
    except OSError:
        return []
    files = []
    for name in names:
        try:
            st = os.lstat(directory / name)
        except OSError:
            continue
        files.append(
            {"name": name, "size": st.st_size, "mode": stat.filemode(st.st_mode),
             "octal": f"{stat.S_IMODE(st.st_mode):04o}"}
        )  # fmt: skip
    return files


def adapter_page(reader: ReadOnlyRegistry, adapter_id: str) -> dict[str, Any]:
    """Every field, the files, tags, aliases, evaluations (newest first) and children (oldest
    first), each bounded. AdapterNotFoundError if it is not registered."""
    record = reader.records.require(adapter_id)
    children = reader.search(
        parent_id=adapter_id, include_archived=True, order_by="created_at",
        limit=CHILDREN_SHOWN + 1,
    )  # fmt: skip
    evaluations = select(EVALUATIONS).where(EVALUATIONS.c.adapter_id == adapter_id)
    with reader.database.read() as conn:
        tags = conn.execute(
            select(TAGS.c.key, TAGS.c.value)
            .where(TAGS.c.adapter_id == adapter_id)
            .order_by(TAGS.c.key)
        ).all()
        history = conn.execute(
            evaluations.order_by(EVALUATIONS.c.id.desc()).limit(EVALUATIONS_SHOWN)
        ).all()
        evaluation_count = conn.execute(
            select(func.count()).where(EVALUATIONS.c.adapter_id == adapter_id)
        ).scalar_one()
    return {
        "adapter": record_dict(record),
        "parents": record.parents,
        "files": adapter_files(reader, adapter_id),
        "tags": {key: value for key, value in tags},
        "aliases": _aliases_of(reader, [adapter_id]).get(adapter_id, []),
        "evaluations": [dict(row._mapping) for row in history],
        "evaluation_count": int(evaluation_count),
        "children": [record_dict(r) for r in children[:CHILDREN_SHOWN]],
        "more_children": len(children) > CHILDREN_SHOWN,
    }


def verify_one(reader: ReadOnlyRegistry, adapter_id: str) -> dict[str, Any]:
    """The verdict on one adapter's files: hashed and checked, nothing changed."""
    report = integrity.verify_stored(reader.records, reader.root, [adapter_id], threads=1)[0]
    return {"id": report.adapter_id, "status": report.status, "problems": list(report.problems)}


def task_types(reader: ReadOnlyRegistry) -> list[str]:
    return [row[0] for row in reader.database.fetch(queries.TASK_TYPES)]

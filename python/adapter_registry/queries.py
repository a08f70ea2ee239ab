"""The registry's read statements, built once with named parameters.

Written with SQLAlchemy so they stay dialect-neutral; on SQLite, ``Database.fetch`` runs their
compiled text on a raw driver connection, which keeps the hot queries close to raw SQLite.
"""

from __future__ import annotations

from sqlalchemy import ColumnClause, bindparam, literal_column, select

from .record import TABLE
from .tables import EDGES

_ORDER = (TABLE.c.created_at, TABLE.c.id)
# Literal, not bound: SQLite uses the partial index ix_adapter_records_best only when the
# query's WHERE visibly implies the index's.
LIVE = TABLE.c.is_archived == literal_column("0")
_ALL = select(TABLE)

BY_ID = _ALL.where(TABLE.c.id == bindparam("id"))
EXISTS = select(TABLE.c.id).where(TABLE.c.id == bindparam("id"))
BY_IDS = _ALL.where(TABLE.c.id.in_(bindparam("ids", expanding=True)))

_TASK = _ALL.where(TABLE.c.task_type == bindparam("task_type"))
BY_TASK = _TASK.order_by(*_ORDER)
BY_TASK_LIVE = _TASK.where(LIVE).order_by(*_ORDER)

# Finite scores only: a NaN or an infinity written by hand before the number rules (migration
# 0002) would otherwise win every ranking (PostgreSQL sorts NaN above all numbers).
_MOST: ColumnClause[float] = literal_column("1.7976931348623157e308")
_EVALUATED = _TASK.where(
    LIVE, TABLE.c.fitness_score.is_not(None), TABLE.c.fitness_score.between(-_MOST, _MOST)
)
_RANKING = (TABLE.c.fitness_score.desc(), *_ORDER)
# LIMIT 1 written out: as a bound parameter, PostgreSQL's generic plan for the prepared
# statement would not know how few rows are wanted.
_ONE: ColumnClause[int] = literal_column("1")
BEST = _EVALUATED.order_by(*_RANKING).limit(_ONE)
BEST_FOR_BASE = (
    _EVALUATED.where(TABLE.c.base_model_id == bindparam("base_model_id"))
    .order_by(*_RANKING)
    .limit(_ONE)
)

LIST_ALL = _ALL.order_by(*_ORDER)
LIST_LIVE = _ALL.where(LIVE).order_by(*_ORDER)
BY_TRAINING_TASK = _ALL.where(TABLE.c.training_task_hash == bindparam("hash")).order_by(*_ORDER)
IDS = select(TABLE.c.id)

CHILDREN = _ALL.where(
    TABLE.c.id.in_(select(EDGES.c.child_id).where(EDGES.c.parent_id == bindparam("parent_id")))
).order_by(*_ORDER)

# Verification reads only what its verdict needs, as plain rows (no record is built): the
# files' hashes and size, the row's path, and the numbers the row rules check.
_VERIFY = select(
    TABLE.c.id, TABLE.c.file_hash, TABLE.c.file_size_bytes, TABLE.c.config_hash,
    TABLE.c.file_path, TABLE.c.pass_rate, TABLE.c.fitness_score, TABLE.c.version,
    TABLE.c.generation,
)  # fmt: skip
VERIFY_ALL = _VERIFY.order_by(*_ORDER)
VERIFY_ONE = _VERIFY.where(TABLE.c.id == bindparam("id"))

# The ids in [low, high): the adapters whose id starts with a prefix (the CLI's short ids), by
# the primary key's index on both backends (a LIKE would need a case-sensitive collation).
IDS_BETWEEN = (
    select(TABLE.c.id)
    .where(TABLE.c.id >= bindparam("low"), TABLE.c.id < bindparam("high"))
    .order_by(TABLE.c.id)
    .limit(literal_column("11"))
)

TASK_TYPES = select(TABLE.c.task_type).distinct().order_by(TABLE.c.task_type)

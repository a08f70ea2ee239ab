"""The metadata row of an adapter: the SQLModel class ``AdapterRecord`` (table ``adapter_records``).

Columns, types, defaults and nullability are the spec's, in the spec's order, plus ``config_hash``
(SHA-256 of ``adapter_config.json`` as stored), so that verification covers the config too.
Only ``pass_rate``, ``fitness_score`` and ``is_archived`` ever change after the insert; the
database enforces it (see ``database.py``).
"""

import json
from typing import Any

from sqlalchemy import REAL, Column, Index, Integer, Text, text
from sqlalchemy.orm import configure_mappers
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = ["MUTABLE_COLUMNS", "AdapterRecord"]

#: The only columns an UPDATE may change: they describe evaluation, not weights.
MUTABLE_COLUMNS = frozenset({"pass_rate", "fitness_score", "is_archived"})


class IntegerBool(TypeDecorator[bool]):
    """A boolean stored as the spec's ``INTEGER`` (0/1), read back as ``bool``."""

    impl = Integer
    cache_ok = True

    def process_bind_param(self, value: bool | None, dialect: Any) -> int | None:
        return None if value is None else int(bool(value))

    def process_result_value(self, value: int | None, dialect: Any) -> bool | None:
        return None if value is None else bool(value)


class AdapterRecord(SQLModel, table=True):
    __tablename__ = "adapter_records"

    id: str = Field(primary_key=True, sa_type=Text)
    version: int
    task_type: str = Field(index=True, sa_type=Text)
    base_model_id: str = Field(sa_type=Text)
    rank: int
    created_at: str = Field(sa_type=Text)
    file_path: str = Field(sa_type=Text)
    file_hash: str = Field(sa_type=Text)
    file_size_bytes: int
    pass_rate: float | None = Field(default=None, sa_type=REAL)
    fitness_score: float | None = Field(default=None, sa_type=REAL)
    source: str = Field(sa_type=Text)
    session_id: str = Field(sa_type=Text)
    is_archived: bool | None = Field(
        default=False,
        sa_column=Column("is_archived", IntegerBool(), default=False, server_default=text("0")),
    )
    parent_ids: str | None = Field(default=None, sa_type=Text)
    generation: int | None = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    training_task_hash: str | None = Field(default=None, index=True, sa_type=Text)
    agent_id: str | None = Field(default=None, sa_type=Text)
    config_hash: str = Field(sa_type=Text)

    @property
    def parents(self) -> list[str]:
        """``parent_ids`` decoded from its JSON list."""
        return list(json.loads(self.parent_ids)) if self.parent_ids else []

    def to_dict(self) -> dict[str, Any]:
        """Every column, by name, in table order."""
        return {c.name: getattr(self, c.name) for c in self.__table__.columns}  # type: ignore[attr-defined]


_table = AdapterRecord.__table__  # type: ignore[attr-defined]

# The hot query, query_best_for_task: one index range scan, already in ranking order. (Only
# SQLite gets the partial WHERE here: naming postgresql_where would import the PostgreSQL
# dialect on every import of the package; the PostgreSQL backend creates its own.)
Index(
    "ix_adapter_records_best",
    _table.c.task_type,
    _table.c.fitness_score.desc(),
    _table.c.created_at,
    _table.c.id,
    sqlite_where=text("is_archived = 0 AND fitness_score IS NOT NULL"),
)

# Rows become records without __init__ (no re-validation of what the database typed), and only
# __init__ would finish configuring the mapper on first use: do it once, here.
configure_mappers()

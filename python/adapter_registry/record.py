"""The metadata row of an adapter: the SQLModel class ``AdapterRecord`` (table ``adapter_records``).

Columns, types, defaults and nullability are the spec's, in the spec's order, plus ``config_hash``
(SHA-256 of ``adapter_config.json`` as stored), so that verification covers the config too.

What may change is declared here, once, and the database enforces it (``write_rules.py``): the
table is write-once, and a column is immutable unless its ``info`` says ``mutable``. Only
``pass_rate``, ``fitness_score`` and ``is_archived`` do.
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr
from sqlalchemy import REAL, Column, Index, Integer, Text, text
from sqlalchemy.orm import configure_mappers
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from .write_rules import MUTABLE, WRITE_ONCE, writes

__all__ = ["COLUMNS", "TABLE", "AdapterRecord"]


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
    __table_args__ = writes(WRITE_ONCE)

    id: str = Field(primary_key=True, sa_type=Text)
    version: int
    task_type: str = Field(index=True, sa_type=Text)
    base_model_id: str = Field(sa_type=Text)
    rank: int
    created_at: str = Field(sa_type=Text)
    file_path: str = Field(sa_type=Text)
    file_hash: str = Field(sa_type=Text)
    file_size_bytes: int
    pass_rate: float | None = Field(default=None, sa_type=REAL, sa_column_kwargs=MUTABLE)
    fitness_score: float | None = Field(default=None, sa_type=REAL, sa_column_kwargs=MUTABLE)
    source: str = Field(sa_type=Text)
    session_id: str = Field(sa_type=Text)
    is_archived: bool | None = Field(
        default=False,
        sa_column=Column(
            "is_archived", IntegerBool(), default=False, server_default=text("0"), **MUTABLE
        ),
    )
    parent_ids: str | None = Field(default=None, sa_type=Text)
    generation: int | None = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    training_task_hash: str | None = Field(default=None, index=True, sa_type=Text)
    agent_id: str | None = Field(default=None, sa_type=Text)
    config_hash: str = Field(sa_type=Text)

    #: The root of the registry that returned this record (``directory`` derives from it).
    _root: Path | None = PrivateAttr(default=None)
    #: The ``file_path`` column as stored, where ``file_path`` is the file's place now.
    _recorded_file_path: str | None = PrivateAttr(default=None)

    @property
    def created(self) -> datetime:
        """``created_at`` as a timezone-aware datetime (UTC)."""
        return datetime.fromisoformat(self.created_at)

    @property
    def directory(self) -> Path:
        """The adapter's folder: its registry's root and its id, so it stays right after the
        registry moves (``os.path.dirname(file_path)`` would not). A record not returned by a
        registry falls back to the folder of its recorded ``file_path``."""
        root = self._root
        return Path(self.file_path).parent if root is None else root / self.id

    @property
    def recorded_file_path(self) -> str:
        """The ``file_path`` column as stored: where the weights were written when the
        adapter was registered, never changed. ``file_path`` itself, on a record returned by a
        registry, is where the weights are now: ``{root}/{id}/adapter.safetensors``
        (the same path until the registry is moved or copied), wherever the recorded path
        names this adapter's weights (a row written by hand that names any other file keeps
        it, and verify reports it)."""
        recorded = self._recorded_file_path
        return self.file_path if recorded is None else recorded

    @property
    def parents(self) -> list[str]:
        """``parent_ids`` decoded from its JSON list."""
        return list(json.loads(self.parent_ids)) if self.parent_ids else []

    def __eq__(self, other: object) -> bool:
        """Records are equal when their columns are: which registry returned them (the root
        behind ``directory`` and the current ``file_path``) is not part of the record."""
        if not isinstance(other, AdapterRecord):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, as pydantic models are

    def to_dict(self) -> dict[str, Any]:
        """Every column as stored, by name, in table order (``file_path`` as recorded: see
        ``recorded_file_path``)."""
        values = {name: getattr(self, name) for name in COLUMNS}
        values["file_path"] = self.recorded_file_path
        return values


#: The table, reached from here only.
TABLE = AdapterRecord.__table__  # type: ignore[attr-defined]
#: Its column names, in table order (also the keys of ``to_dict()`` and of ``--json``).
COLUMNS: tuple[str, ...] = tuple(c.name for c in TABLE.columns)

# The hot query, query_best_for_task: one index range scan, already in ranking order. (Only
# SQLite gets the partial WHERE here: naming postgresql_where would import the PostgreSQL
# dialect on every import of the package; the PostgreSQL backend creates its own.)
Index(
    "ix_adapter_records_best",
    TABLE.c.task_type,
    TABLE.c.fitness_score.desc(),
    TABLE.c.created_at,
    TABLE.c.id,
    sqlite_where=text("is_archived = 0 AND fitness_score IS NOT NULL"),
)

# Rows become records without __init__ (no re-validation of what the database typed), and only
# __init__ would finish configuring the mapper on first use: do it once, here.
configure_mappers()

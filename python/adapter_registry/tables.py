"""The tables beside ``adapter_records``: lineage edges, aliases and their history, tags, and
evaluations. Each declares how it is written (``write_rules.py``): history is append-only,
names and labels are mutable, and nothing here ever changes an adapter.
"""

import json
from typing import Any

from sqlalchemy import REAL, BigInteger, Index, Table, Text
from sqlmodel import Field, SQLModel

from .write_rules import APPEND_ONLY, MUTABLE_TABLE, writes

__all__ = [
    "ALIASES",
    "ALIAS_MOVES",
    "EDGES",
    "EVALUATIONS",
    "TAGS",
    "VERIFY_REPORTS",
    "AdapterEdge",
    "Alias",
    "AliasMove",
    "Evaluation",
    "Tag",
    "VerifyReportRow",
]


class AdapterEdge(SQLModel, table=True):
    """One parent -> child link, from ``parent_ids``: what lets children be found by index."""

    __tablename__ = "adapter_edges"
    __table_args__ = (
        Index("ix_adapter_edges_child", "child_id"),
        writes(APPEND_ONLY),
    )

    parent_id: str = Field(primary_key=True, sa_type=Text)
    child_id: str = Field(primary_key=True, sa_type=Text)


class Alias(SQLModel, table=True):
    """A mutable name for one adapter (MLflow's champion and challenger)."""

    __tablename__ = "adapter_aliases"
    __table_args__ = (
        Index("ix_adapter_aliases_adapter", "adapter_id"),
        writes(MUTABLE_TABLE),
    )

    alias: str = Field(primary_key=True, sa_type=Text)
    adapter_id: str = Field(sa_type=Text)
    set_at: str = Field(sa_type=Text)
    set_by: str | None = Field(default=None, sa_type=Text)


class AliasMove(SQLModel, table=True):
    """Every move of an alias, in order; ``adapter_id`` is None where it was deleted."""

    __tablename__ = "alias_moves"
    __table_args__ = (Index("ix_alias_moves_alias", "alias", "id"), writes(APPEND_ONLY))

    id: int | None = Field(default=None, primary_key=True)
    alias: str = Field(sa_type=Text)
    adapter_id: str | None = Field(default=None, sa_type=Text)
    moved_at: str = Field(sa_type=Text)
    moved_by: str | None = Field(default=None, sa_type=Text)


class Tag(SQLModel, table=True):
    """A mutable key/value label on an adapter."""

    __tablename__ = "adapter_tags"
    __table_args__ = (Index("ix_adapter_tags_pair", "key", "value"), writes(MUTABLE_TABLE))

    adapter_id: str = Field(primary_key=True, sa_type=Text)
    key: str = Field(primary_key=True, sa_type=Text)
    value: str = Field(sa_type=Text)


class Evaluation(SQLModel, table=True):
    """One recorded measurement of an adapter: append-only, never changed or deleted."""

    __tablename__ = "evaluations"
    __table_args__ = (
        Index("ix_evaluations_adapter", "adapter_id", "metric", "id"),
        writes(APPEND_ONLY),
    )

    id: int | None = Field(default=None, primary_key=True)
    adapter_id: str = Field(sa_type=Text)
    metric: str = Field(sa_type=Text)
    value: float = Field(sa_type=REAL)
    evaluator: str | None = Field(default=None, sa_type=Text)
    eval_set_hash: str | None = Field(default=None, sa_type=Text)
    #: A JSON object (at most 64 KB), as text.
    details: str | None = Field(default=None, sa_type=Text)
    recorded_at: str = Field(sa_type=Text)

    def details_dict(self) -> dict[str, Any] | None:
        """``details`` decoded."""
        return None if self.details is None else dict(json.loads(self.details))


class VerifyReportRow(SQLModel, table=True):
    """One report of ``adapter-registry verify --all --save``: append-only (the dashboard shows
    the latest). ``counts`` is a JSON object of adapters by verdict; ``problems`` a JSON list of
    the adapters that are not ok (at most ``saved_reports.MAX_PROBLEMS``; ``problems_left_out``
    counts the rest)."""

    __tablename__ = "verify_reports"
    __table_args__ = (writes(APPEND_ONLY),)

    id: int | None = Field(default=None, primary_key=True)
    saved_at: str = Field(sa_type=Text)
    saved_by: str | None = Field(default=None, sa_type=Text)
    adapters: int
    files: int
    bytes: int = Field(sa_type=BigInteger)
    seconds: float = Field(sa_type=REAL)
    counts: str = Field(sa_type=Text)
    problems: str = Field(sa_type=Text)
    problems_left_out: int


#: The tables, reached from here only (as ``record.TABLE`` is for adapter_records).
EDGES: Table = AdapterEdge.__table__  # type: ignore[attr-defined]
ALIASES: Table = Alias.__table__  # type: ignore[attr-defined]
ALIAS_MOVES: Table = AliasMove.__table__  # type: ignore[attr-defined]
TAGS: Table = Tag.__table__  # type: ignore[attr-defined]
EVALUATIONS: Table = Evaluation.__table__  # type: ignore[attr-defined]
VERIFY_REPORTS: Table = VerifyReportRow.__table__  # type: ignore[attr-defined]

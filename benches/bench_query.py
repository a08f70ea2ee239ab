"""query_best_for_task over 100,000 records of 50 task types through the public API, beside the
same query through a SQLModel session (the usual way) and on raw sqlite3 (the floor). Target:
p50 at most 50 us."""

from __future__ import annotations

import itertools
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import Session, col, select

from adapter_registry import AdapterRecord, AdapterRegistry

from conftest import record_rows, run_pedantic, size

GROUP = "query_best_for_task, 100k records (per call)"
ROUNDS = 15
CALLS = 200
RECORDS, TASKS = size(100_000, 2_000), 50
BEST_SQL = (
    "SELECT * FROM adapter_records WHERE task_type = ? AND is_archived = 0 "
    "AND fitness_score IS NOT NULL ORDER BY fitness_score DESC, created_at, id LIMIT 1"
)


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[AdapterRegistry, Iterator[str], sqlite3.Connection]]:
    """100,000 rows written straight into the table (the files are not what is measured)."""
    home = workdir
    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    rows = record_rows(RECORDS, TASKS)
    with registry._db.write() as conn:
        conn.execute(insert(AdapterRecord.__table__), rows)  # type: ignore[attr-defined]
    raw = sqlite3.connect(home / "r.db", isolation_level=None, check_same_thread=False)
    yield registry, tasks(), raw
    raw.close()
    registry.close()


def tasks() -> Iterator[str]:
    return itertools.cycle(f"task-{i}" for i in range(TASKS))


def public_api(registry: AdapterRegistry, names: Iterator[str], raw: Any) -> Any:
    best = registry.query_best_for_task(next(names))
    assert best is not None
    return best


def sqlmodel_session(registry: AdapterRegistry, names: Iterator[str], raw: Any) -> Any:
    with Session(registry._db.engine) as session:
        stmt = (
            select(AdapterRecord)
            .where(AdapterRecord.task_type == next(names), AdapterRecord.is_archived == False)  # noqa: E712
            .where(col(AdapterRecord.fitness_score).is_not(None))
            .order_by(col(AdapterRecord.fitness_score).desc(), AdapterRecord.created_at)
            .limit(1)
        )
        return session.exec(stmt).first()


def raw_sqlite3(registry: AdapterRegistry, names: Iterator[str], raw: Any) -> Any:
    return raw.execute(BEST_SQL, (next(names),)).fetchone()


CONTENDERS = [public_api, sqlmodel_session, raw_sqlite3]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_query_best_for_task(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) is not None

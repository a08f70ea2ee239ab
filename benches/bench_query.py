"""query_best_for_task over 100,000 records of 50 task types, through the public API, beside
the same query on raw sqlite3 (the floor) and through a SQLModel session (the usual way).

    .venv/bin/python -m pytest benches/bench_query.py --benchmark-only
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert
from sqlmodel import Session, col, select

from adapter_registry import AdapterRecord, AdapterRegistry

RECORDS, TASKS = 100_000, 50
BEST_SQL = (
    "SELECT * FROM adapter_records WHERE task_type = ? AND is_archived = 0 "
    "AND fitness_score IS NOT NULL ORDER BY fitness_score DESC, created_at, id LIMIT 1"
)


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdapterRegistry]:
    """100,000 rows written straight into the table (the files are not what is measured)."""
    home = tmp_path_factory.mktemp("query")
    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    rng = random.Random(0)
    rows = [
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "version": 1,
            "task_type": f"task-{i % TASKS}", "base_model_id": "Qwen/Qwen2.5-Coder-7B", "rank": 64,
            "created_at": f"2026-01-01T00:00:{i:09d}+00:00", "file_path": f"/x/{i}",
            "file_hash": "0" * 64, "file_size_bytes": 1, "source": "evolution",
            "session_id": "s", "is_archived": i % 10 == 0, "parent_ids": "[]", "generation": 0,
            "config_hash": "0" * 64, "pass_rate": rng.random(),
            "fitness_score": rng.random() if i % 4 else None,
        }
        for i in range(RECORDS)
    ]  # fmt: skip
    with registry._db.write() as conn:
        conn.execute(insert(AdapterRecord.__table__), rows)  # type: ignore[attr-defined]
    yield registry
    registry.close()


def tasks() -> Iterator[str]:
    return itertools.cycle(f"task-{i}" for i in range(TASKS))


def test_query_best_public_api(benchmark: Any, populated: AdapterRegistry) -> None:
    benchmark.group = "query_best_for_task, 100k records"
    names = tasks()
    best = benchmark(lambda: populated.query_best_for_task(next(names)))
    assert best is not None and best.fitness_score is not None


def test_query_best_raw_sqlite3(benchmark: Any, populated: AdapterRegistry) -> None:
    benchmark.group = "query_best_for_task, 100k records"
    conn = sqlite3.connect(populated.db_url.removeprefix("sqlite:///"), isolation_level=None)
    names = tasks()
    assert benchmark(lambda: conn.execute(BEST_SQL, (next(names),)).fetchone()) is not None
    conn.close()


def test_query_best_sqlmodel_session(benchmark: Any, populated: AdapterRegistry) -> None:
    benchmark.group = "query_best_for_task, 100k records"
    names = tasks()

    def query() -> AdapterRecord | None:
        with Session(populated._db.engine) as session:
            stmt = (
                select(AdapterRecord)
                .where(AdapterRecord.task_type == next(names), AdapterRecord.is_archived == False)  # noqa: E712
                .where(col(AdapterRecord.fitness_score).is_not(None))
                .order_by(col(AdapterRecord.fitness_score).desc(), AdapterRecord.created_at)
                .limit(1)
            )
            return session.exec(stmt).first()

    assert benchmark(query) is not None

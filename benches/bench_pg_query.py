"""query_best_for_task over 100,000 records of 50 task types through the public API, on
PostgreSQL beside SQLite, in one run (the same rows in each)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from adapter_registry import AdapterRecord, AdapterRegistry

from conftest import record_rows, run_pedantic, size

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from postgres import PostgresServer

GROUP = "query_best_for_task, 100k records: PostgreSQL beside SQLite (per call)"
ROUNDS = 15
CALLS = 200
RECORDS, TASKS = size(100_000, 2_000), 50


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[AdapterRegistry, AdapterRegistry, Iterator[str]]]:
    rows = record_rows(RECORDS, TASKS)
    with ExitStack() as stack:
        server = stack.enter_context(PostgresServer(fsync=True))
        registries = []
        for name, url in (
            ("postgresql", server.create_database("bench")),
            ("sqlite", f"sqlite:///{workdir / 'r.db'}"),
        ):
            registry = AdapterRegistry(root=workdir / name, db_url=url)
            stack.callback(registry.close)
            with registry._db.write() as conn:
                conn.execute(insert(AdapterRecord.__table__), rows)  # type: ignore[attr-defined]
            if name == "postgresql":
                with registry._db.write() as conn:
                    conn.exec_driver_sql("ANALYZE adapter_records")
            registries.append(registry)
        yield registries[0], registries[1], itertools.cycle(f"task-{i}" for i in range(TASKS))


def postgresql(pg: AdapterRegistry, lite: AdapterRegistry, names: Iterator[str]) -> Any:
    best = pg.query_best_for_task(next(names))
    assert best is not None
    return best


def sqlite(pg: AdapterRegistry, lite: AdapterRegistry, names: Iterator[str]) -> Any:
    best = lite.query_best_for_task(next(names))
    assert best is not None
    return best


CONTENDERS = [postgresql, sqlite]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_pg_query(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args).task_type

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

from adapter_registry import AdapterRegistry

from conftest import postgres_beside_sqlite, record_rows, run_pedantic, size

GROUP = "query_best_for_task, 100k records: PostgreSQL beside SQLite (per call)"
ROUNDS = 15
CALLS = 200
RECORDS, TASKS = size(100_000, 2_000), 50


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[AdapterRegistry, AdapterRegistry, Iterator[str]]]:
    rows = record_rows(RECORDS, TASKS)
    with ExitStack() as stack:
        pg, lite = postgres_beside_sqlite(stack, workdir, rows)
        yield pg, lite, itertools.cycle(f"task-{i}" for i in range(TASKS))


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

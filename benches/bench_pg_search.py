"""search(task_type=T, agent_id=A, min_fitness=0.5, order_by="-fitness_score", limit=5) over
bench_search's 100,000 records (50 task types, 21 agents) through the public API, on
PostgreSQL beside SQLite, in one run (the same rows in each)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRecord, AdapterRegistry

import bench_search
from conftest import postgres_beside_sqlite, record_rows, run_pedantic

GROUP = "search, an agent's top 5 for a task, 100k records: PostgreSQL beside SQLite (per call)"
ROUNDS = 15
CALLS = 200


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[AdapterRegistry, AdapterRegistry, bench_search.Pairs]]:
    rows = record_rows(bench_search.RECORDS, bench_search.TASKS, bench_search.AGENTS)
    with ExitStack() as stack:
        pg, lite = postgres_beside_sqlite(stack, workdir, rows)
        for pair in (("task-0", "agent-0"), ("task-49", "agent-20")):
            assert _ids(bench_search._search(pg, *pair)) == _ids(bench_search._search(lite, *pair))
        yield pg, lite, bench_search.pairs()


def _ids(records: list[AdapterRecord]) -> list[str]:
    return [r.id for r in records]


def postgresql(pg: AdapterRegistry, lite: AdapterRegistry, names: bench_search.Pairs) -> Any:
    return bench_search._search(pg, *next(names))


def sqlite(pg: AdapterRegistry, lite: AdapterRegistry, names: bench_search.Pairs) -> Any:
    return bench_search._search(lite, *next(names))


CONTENDERS = [postgresql, sqlite]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_pg_search(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) is not None

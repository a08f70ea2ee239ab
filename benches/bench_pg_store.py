"""Stores/s on PostgreSQL beside SQLite: 80 adapters of 1 MiB stored by 8 writer processes at
once, and by 1 writer, into one root, on each backend, in one run (stores/s = 80 / time).

The PostgreSQL server is a real one (Debian's PostgreSQL 15), started for the run in a
temporary folder on a Unix socket, with fsync on, as SQLite runs with synchronous=FULL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from bench_swarm import PROCESSES, SOURCES, TOTAL, Worker, open_registry, run
from conftest import lora_dir, run_pedantic

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from postgres import PostgresServer

GROUP = "store 80 1 MiB adapters: PostgreSQL beside SQLite, 8 writers and 1"
ROUNDS = 5

Swarms = dict[str, list[Worker]]


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[Swarms]]:
    for i in range(SOURCES):
        lora_dir(workdir / "src" / str(i), seed=i)
    with ExitStack() as stack:
        server = stack.enter_context(PostgresServer(fsync=True))
        urls = {"sqlite": "", "postgresql": server.create_database("bench")}
        swarms: Swarms = {}
        for backend, url in urls.items():
            home = workdir / backend
            home.mkdir()
            (home / "src").symlink_to(workdir / "src")
            open_registry(home, url or None).close()
            workers = [Worker(home, i, url) for i in range(PROCESSES + 1)]
            for worker in workers:
                stack.callback(worker.stop)
            for worker in workers:
                worker.ready()
            swarms[f"{backend} 8"], swarms[f"{backend} 1"] = workers[:PROCESSES], workers[-1:]
        yield (swarms,)


def postgresql_8_writers(swarms: Swarms) -> int:
    return run(swarms["postgresql 8"], TOTAL // PROCESSES)


def sqlite_8_writers(swarms: Swarms) -> int:
    return run(swarms["sqlite 8"], TOTAL // PROCESSES)


def postgresql_1_writer(swarms: Swarms) -> int:
    return run(swarms["postgresql 1"], TOTAL)


def sqlite_1_writer(swarms: Swarms) -> int:
    return run(swarms["sqlite 1"], TOTAL)


CONTENDERS = [postgresql_8_writers, sqlite_8_writers, postgresql_1_writer, sqlite_1_writer]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_pg_store(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) == TOTAL

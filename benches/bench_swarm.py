"""Aggregate store() throughput of 1 MiB adapters: 8 processes storing at once into one root and
one SQLite database, beside 1 process storing alone. Each contender stores the same total, 80
adapters (8 processes x 10, or 1 process x 80), so the ratio time(1 process) / time(8 processes)
is the throughput ratio. Target: 1.5x.

The worker processes are started, have imported the package and opened the registry in
setup(), and then wait on their standard input; a call writes the start signal to each and
returns when every one has answered that it is done, so interpreter start-up is not measured.
A worker is this file run as a script: `python bench_swarm.py WORKDIR INDEX [DB_URL]`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from adapter_registry import AdapterRegistry

from conftest import lora_dir, run_pedantic, size

GROUP = "store 80 1 MiB adapters, 8 processes at once (one root, one db)"
ROUNDS = 5
TOTAL, PROCESSES = size(80, 16), 8
SOURCES = 8  # distinct adapter directories the workers take turns storing


def open_registry(workdir: Path, db_url: str | None = None) -> AdapterRegistry:
    return AdapterRegistry(
        root=workdir / "adapters", db_url=db_url or f"sqlite:///{workdir / 'r.db'}"
    )


class Worker:
    def __init__(self, workdir: Path, index: int, db_url: str = "") -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(workdir), str(index), db_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        self.stdout: IO[str] = self.process.stdout  # type: ignore[assignment]

    def ready(self) -> None:
        assert self.stdout.readline() == "ready\n"

    def start(self, count: int) -> None:
        self.stdin.write(f"{count}\n")
        self.stdin.flush()

    def done(self) -> int:
        line = self.stdout.readline()
        assert line.startswith("done "), line
        return int(line.split()[1])

    def stop(self) -> None:
        self.stdin.close()
        self.process.wait(timeout=60)


def run(workers: list[Worker], each: int) -> int:
    for worker in workers:
        worker.start(each)
    return sum(worker.done() for worker in workers)


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[list[Worker], list[Worker]]]:
    for i in range(SOURCES):
        lora_dir(workdir / "src" / str(i), seed=i)
    open_registry(workdir).close()  # the database made once, before the workers race to it
    with ExitStack() as stack:
        workers = [Worker(workdir, i) for i in range(PROCESSES + 1)]
        for worker in workers:
            stack.callback(worker.stop)
        for worker in workers:
            worker.ready()
        yield workers[:PROCESSES], workers[PROCESSES:]


def eight_processes(swarm: list[Worker], single: list[Worker]) -> int:
    return run(swarm, TOTAL // PROCESSES)


def one_process(swarm: list[Worker], single: list[Worker]) -> int:
    return run(single, TOTAL)


CONTENDERS = [eight_processes, one_process]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_swarm_store(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) == TOTAL


def worker(workdir: Path, index: int, db_url: str | None) -> None:
    """Store `count` adapters for each count read from stdin; answer `done <stored>`."""
    registry = open_registry(workdir, db_url)
    sources = [workdir / "src" / str(i) for i in range(SOURCES)]
    print("ready", flush=True)
    stored = 0
    for line in sys.stdin:
        count = int(line)
        for _ in range(count):
            registry.store(
                sources[(index + stored) % SOURCES],
                task_type="bug-fix",
                source="manual",
                session_id=f"swarm-{index}",
            )
            stored += 1
        print(f"done {count}", flush=True)
    registry.close()


if __name__ == "__main__":
    worker(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)

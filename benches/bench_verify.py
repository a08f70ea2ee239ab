"""Batch verification: verify_all over 1,000 adapters of 1 MiB plus two of 200 MiB, on both
cores, beside hashlib.file_digest on a ThreadPoolExecutor(2) and in a one-thread loop. Target:
at least 1.25x the pool (issue 14)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import one_pair

from conftest import run_pedantic, size

GROUP = "verify 1,000 x 1 MiB + 2 x 200 MiB"
ROUNDS = 5
MIB = 1 << 20
#: The small adapters and the MiB of each large one (the smoke run: 20 and 9, still past the
#: core's pipelining threshold of 8 MiB).
SMALL, LARGE_MIB = size(1000, 20), size(200, 9)
CONFIG = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"], "base_model_name_or_path": "m"}


@contextmanager
def setup(home: Path) -> Iterator[tuple[AdapterRegistry, list[str]]]:
    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    meta = {"config": CONFIG, "task_type": "bug-fix", "source": "manual", "session_id": "b"}
    small = one_pair(MIB, 0)
    for _ in range(SMALL):
        registry.store(small, **meta)
    for seed in (1, 2):
        registry.store(one_pair(LARGE_MIB * MIB, seed), **meta)
    paths = [r.file_path for r in registry.list_all()]
    for path in paths:
        Path(path).read_bytes()  # all in the page cache
    yield registry, paths
    registry.close()


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_all(registry: AdapterRegistry, paths: list[str]) -> int:
    return sum(r.ok for r in registry.verify_all(threads=2))


def hashlib_thread_pool_2(registry: AdapterRegistry, paths: list[str]) -> int:
    with ThreadPoolExecutor(2) as pool:
        return len(list(pool.map(digest, paths)))


def hashlib_one_thread(registry: AdapterRegistry, paths: list[str]) -> int:
    return len([digest(p) for p in paths])


CONTENDERS = [verify_all, hashlib_thread_pool_2, hashlib_one_thread]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_verify_fleet(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) == SMALL + 2

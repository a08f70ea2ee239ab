"""Batch verification of a swarm's population of small LoRAs: verify_all over 3,000 adapters of
64 KiB (200 MB), beside a one-thread hashlib.file_digest loop over the same weight and config
files and the 10-line script a user might write instead (list_all, a 2-thread hashlib pool
over the weights, compare). `integrity_verify_stored` is the verification path verify_all()
takes once the registry routes it there (one query of the columns verification needs, no
records built). Target: verify_all at least 2.2x the one-thread loop."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRegistry, integrity
from adapter_registry._lora_files import one_pair

from conftest import run_pedantic, size

GROUP = "verify 3,000 x 64 KiB"
ROUNDS = 9
KIB = 1 << 10
COUNT = size(3000, 30)
CONFIG = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"], "base_model_name_or_path": "m"}


@contextmanager
def setup(home: Path) -> Iterator[tuple[AdapterRegistry, list[str]]]:
    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    meta = {"config": CONFIG, "task_type": "bug-fix", "source": "manual", "session_id": "b"}
    for seed in range(COUNT):
        registry.store(one_pair(64 * KIB, seed), **meta)
    files = []
    for record in registry.list_all():
        weights = Path(record.file_path)
        files += [str(weights), str(weights.with_name("adapter_config.json"))]
    for path in files:
        Path(path).read_bytes()  # all in the page cache
    yield registry, files
    registry.close()


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_all(registry: AdapterRegistry, files: list[str]) -> int:
    return sum(r.ok for r in registry.verify_all())


def integrity_verify_stored(registry: AdapterRegistry, files: list[str]) -> int:
    return sum(r.ok for r in integrity.verify_stored(registry._records, registry.root))


def hashlib_one_thread(registry: AdapterRegistry, files: list[str]) -> int:
    return len([digest(p) for p in files]) // 2


def list_all_and_hashlib_pool_2(registry: AdapterRegistry, files: list[str]) -> int:
    records = registry.list_all()
    with ThreadPoolExecutor(2) as pool:
        digests = pool.map(digest, [r.file_path for r in records])
        return sum(d == r.file_hash for d, r in zip(digests, records, strict=True))


CONTENDERS = [verify_all, integrity_verify_stored, hashlib_one_thread, list_all_and_hashlib_pool_2]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_verify_small_fleet(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) == COUNT

"""verify(id) of one cached 200 MiB adapter (both files hashed, the seal checked) beside
hashlib.file_digest of its weights alone. The core hashes a large file on one thread while a
second reads ahead. Target: at least 1.12x."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import one_pair

from conftest import run_pedantic, size

GROUP = "verify(id) of a cached 200 MiB adapter"
ROUNDS = 9
MIB = 1 << 20
#: The adapter's MiB (the smoke run: 9, past the core's pipelining threshold of 8 MiB).
WEIGHTS_MIB = size(200, 9)
CONFIG = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"], "base_model_name_or_path": "m"}


@contextmanager
def setup(home: Path) -> Iterator[tuple[AdapterRegistry, str, Path]]:
    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    record = registry.store(
        one_pair(WEIGHTS_MIB * MIB, 0), config=CONFIG, task_type="bug-fix", source="manual",
        session_id="b",
    )  # fmt: skip
    weights = Path(record.file_path)
    weights.read_bytes()  # in the page cache
    yield registry, record.id, weights
    registry.close()


def registry_verify(registry: AdapterRegistry, adapter_id: str, weights: Path) -> bool:
    return registry.verify(adapter_id).ok


def hashlib_file_digest(registry: AdapterRegistry, adapter_id: str, weights: Path) -> bool:
    with open(weights, "rb") as f:
        return bool(hashlib.file_digest(f, "sha256").hexdigest())


CONTENDERS = [registry_verify, hashlib_file_digest]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_verify_one_200mib(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args)

"""Verified loading of a cached ~161 MB adapter (a rank-64 q/k/v/o LoRA of Qwen2.5-Coder-7B in
fp32): the registry's verified load_state_dict beside hashlib.file_digest of the file alone and
the unverified safetensors.torch.load_file. Target: verified <= 1.1 x (hash + unverified)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import qwen_7b_adapter

from conftest import run_pedantic, size

GROUP = "load a cached 161 MB adapter"
ROUNDS = 7
#: The baselines whose sum the verified load is measured against.
COMPOSITE = ("hashlib_file_digest", "unverified_load_file")


def verified_load_state_dict(registry: AdapterRegistry, adapter_id: str, path: str) -> int:
    return len(registry.load_state_dict(adapter_id))


def hashlib_file_digest(registry: AdapterRegistry, adapter_id: str, path: str) -> int:
    with open(path, "rb") as f:
        return len(hashlib.file_digest(f, "sha256").hexdigest())


def unverified_load_file(registry: AdapterRegistry, adapter_id: str, path: str) -> int:
    return len(load_file(path))


CONTENDERS = [verified_load_state_dict, hashlib_file_digest, unverified_load_file]


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[AdapterRegistry, str, str]]:
    weights, config = qwen_7b_adapter(r=size(64, 2))
    source = workdir / "adapter.safetensors"
    source.write_bytes(weights)
    registry = AdapterRegistry(root=workdir / "adapters", db_url=f"sqlite:///{workdir / 'r.db'}")
    record = registry.store(
        source, config=config, task_type="bug-fix", source="manual", session_id="bench"
    )
    Path(record.file_path).read_bytes()  # in the page cache
    yield registry, record.id, record.file_path
    registry.close()


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_load_161mb(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) > 0

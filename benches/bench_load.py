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

import numpy as np
import pytest
from safetensors.numpy import save_file
from safetensors.torch import load_file

from adapter_registry import AdapterRegistry

from conftest import run_pedantic

GROUP = "load a cached 161 MB adapter"
ROUNDS = 7
#: The baselines whose sum the verified load is measured against.
COMPOSITE = ("hashlib_file_digest", "unverified_load_file")

# Qwen2.5-Coder-7B: 28 layers, hidden 3584, 4 KV heads of 128 (k/v out 512).
LAYERS, HIDDEN, KV_OUT, RANK = 28, 3584, 512, 64
OUT = {"q_proj": HIDDEN, "k_proj": KV_OUT, "v_proj": KV_OUT, "o_proj": HIDDEN}


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
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(LAYERS):
        for module, out in OUT.items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((RANK, HIDDEN), np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out, RANK), np.float32)
    source = workdir / "adapter.safetensors"
    save_file(tensors, source)
    registry = AdapterRegistry(root=workdir / "adapters", db_url=f"sqlite:///{workdir / 'r.db'}")
    config = {
        "peft_type": "LORA", "r": RANK, "lora_alpha": 2 * RANK, "target_modules": list(OUT),
        "base_model_name_or_path": "Qwen/Qwen2.5-Coder-7B",
    }  # fmt: skip
    record = registry.store(
        source, config=config, task_type="bug-fix", source="manual", session_id="bench"
    )
    Path(record.file_path).read_bytes()  # in the page cache
    yield registry, record.id, record.file_path
    registry.close()


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_load_161mb(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) > 0

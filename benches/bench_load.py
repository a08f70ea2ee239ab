"""Verified loading of a cached ~160 MB adapter (a rank-64 q/k/v/o LoRA of Qwen2.5-Coder-7B in
fp32), in one run: the registry's verified load_state_dict, hashlib.file_digest of the file
alone, and the unverified safetensors.torch.load_file. The target: verified <= 1.1 x (hash +
unverified load).

    .venv/bin/python -m pytest benches/bench_load.py --benchmark-only
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file
from safetensors.torch import load_file

from adapter_registry import AdapterRecord, AdapterRegistry

# Qwen2.5-Coder-7B: 28 layers, hidden 3584, 4 KV heads of 128 (k/v out 512).
LAYERS, HIDDEN, KV_OUT, RANK = 28, 3584, 512, 64
OUT = {"q_proj": HIDDEN, "k_proj": KV_OUT, "v_proj": KV_OUT, "o_proj": HIDDEN}


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AdapterRegistry, str]]:
    home = tmp_path_factory.mktemp("load")
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(LAYERS):
        for module, out in OUT.items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((RANK, HIDDEN), np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out, RANK), np.float32)
    source = home / "adapter.safetensors"
    save_file(tensors, source)
    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    config = {
        "peft_type": "LORA", "r": RANK, "lora_alpha": 2 * RANK, "target_modules": list(OUT),
        "base_model_name_or_path": "Qwen/Qwen2.5-Coder-7B",
    }  # fmt: skip
    record: AdapterRecord = registry.store(
        source, config=config, task_type="bug-fix", source="manual", session_id="bench"
    )
    Path(record.file_path).read_bytes()  # in the page cache
    yield registry, record.id
    registry.close()


def verified_load_state_dict(registry: AdapterRegistry, adapter_id: str) -> int:
    return len(registry.load_state_dict(adapter_id))


def hashlib_file_digest(registry: AdapterRegistry, adapter_id: str) -> int:
    with open(registry.retrieve_by_id(adapter_id).file_path, "rb") as f:
        return len(hashlib.file_digest(f, "sha256").hexdigest())


def unverified_load_file(registry: AdapterRegistry, adapter_id: str) -> int:
    return len(load_file(registry.retrieve_by_id(adapter_id).file_path))


@pytest.mark.parametrize(
    "contender",
    [verified_load_state_dict, hashlib_file_digest, unverified_load_file],
    ids=lambda f: f.__name__,
)
def test_load_160mb(benchmark: Any, adapter: tuple[AdapterRegistry, str], contender: Any) -> None:
    registry, adapter_id = adapter
    benchmark.group = "load a cached 161 MB adapter"
    benchmark.extra_info["bytes"] = registry.retrieve_by_id(adapter_id).file_size_bytes
    assert benchmark.pedantic(contender, args=adapter, rounds=7, warmup_rounds=1) > 0

"""The one test-file builder (adapter_registry._lora_files, pure Python) writes what the
safetensors package writes, deterministically, with finite values, and fast enough for 200 MB."""

from __future__ import annotations

import time

import numpy as np
from safetensors.numpy import load, save

from adapter_registry._lora_files import (
    lora_bytes,
    lora_of_size,
    lora_tensors,
    one_pair,
    safetensors_bytes,
)


def test_the_bytes_are_those_the_safetensors_package_writes() -> None:
    tensors = lora_tensors(r=4, layers=3, seed=1, ranks={"1.self_attn.k_proj": 8})
    arrays = {k: np.frombuffer(data, np.float32).reshape(s) for k, (s, data) in tensors.items()}
    assert safetensors_bytes(tensors) == save(arrays, metadata={"format": "pt"})
    pair = one_pair(1 << 16, seed=2)
    assert save(load(pair), metadata={"format": "pt"}) == pair


def test_values_are_finite_and_deterministic_per_seed() -> None:
    assert lora_bytes(seed=3) == lora_bytes(seed=3) != lora_bytes(seed=4)
    for array in load(lora_bytes(r=16, seed=3)).values():
        assert np.isfinite(array).all() and array.dtype == np.float32


def test_a_200_mb_file_takes_well_under_two_seconds() -> None:
    started = time.perf_counter()
    weights, config = lora_of_size(200_000_000, seed=5)
    assert time.perf_counter() - started < 2.0
    assert abs(len(weights) - 200_000_000) < 10_000_000 and config["r"] == 64

"""The one test-file builder (adapter_registry._lora_files, pure Python) writes what the
safetensors package writes, deterministically, with finite values; a large one is a LoRA its
config describes (how fast it builds is measured nowhere in the tests: no timed asserts)."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import load, save

from adapter_registry import _core
from adapter_registry._lora_files import (
    lora_bytes,
    lora_of_size,
    lora_tensors,
    one_pair,
    safetensors_bytes,
)
from adapter_registry.lora_config import check_tensors, parse_config


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


def test_a_file_of_about_200_mb_is_what_its_config_says() -> None:
    weights, config = lora_of_size(200_000_000, seed=5)
    assert abs(len(weights) - 200_000_000) < 10_000_000 and config["r"] == 64
    tensors, _ = _core.read_safetensors_header(weights)
    check_tensors(parse_config(json.dumps(config).encode()), tensors)

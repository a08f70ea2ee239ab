"""Real LoRA adapter files, built with the standard library alone: the one builder of the demo,
the tests and the benchmarks (the core install has neither numpy nor safetensors).

The files are what PEFT's ``save_pretrained`` writes for a Qwen2-style model: A/B pairs for the
q/k/v/o projections of every layer, float32, in a safetensors file laid out byte for byte as the
safetensors package lays it out (tensors in name order, the header padded with spaces to a
multiple of 8, ``__metadata__`` ``{"format": "pt"}``), beside the ``adapter_config.json`` dict.
Values are finite and deterministic per seed: each tensor tiles a random rotation of a block of
drawn values, so that a 200 MB file takes a fraction of a second, not a loop over every float.
"""

from __future__ import annotations

import json
import random
import struct
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "BASE_MODEL",
    "HIDDEN",
    "KV_OUT",
    "MODULES",
    "QWEN_7B",
    "QWEN_7B_SHAPE",
    "Tensor",
    "lora_bytes",
    "lora_config",
    "lora_of_size",
    "lora_tensors",
    "model_shape",
    "one_pair",
    "peft_dir",
    "qwen_7b_adapter",
    "safetensors_bytes",
]

#: A tensor as it is written: its shape and its little-endian float32 data.
Tensor = tuple[list[int], bytes]

#: The default shape: a 2-layer Qwen2-style model, hidden 32, 4 query heads per kv head.
HIDDEN = 32
KV_OUT = 16
MODULES = {"q_proj": HIDDEN, "k_proj": KV_OUT, "v_proj": KV_OUT, "o_proj": HIDDEN}
BASE_MODEL = "tiny/qwen2-2layer"
QWEN_7B = "Qwen/Qwen2.5-Coder-7B"
#: Its shape: 28 layers, hidden 3584, 4 KV heads of 128 (k/v out 512).
QWEN_7B_SHAPE = {"layers": 28, "hidden": 3584, "kv_out": 512}

_BLOCK = 8192  # drawn values per distribution; every tensor tiles a rotation of them


def safetensors_bytes(
    tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """F32 tensors as a safetensors file, the same bytes as ``safetensors.numpy.save`` writes.

    The u64 header length, the compact JSON header (``__metadata__`` first, then the tensors in
    name order with ascending offsets) padded with spaces so that the data starts 8-byte
    aligned, then the data in the same order.
    """
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    names = sorted(tensors)  # all F32: the package sorts by dtype alignment, then by name
    for name in names:
        shape, data = tensors[name]
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(tensors[n][1] for n in names)


class _Floats:
    """Float32 data for A (uniform in +-1/sqrt(fan_in), as PEFT initialises A) and B (normal,
    sigma 0.02, as after some training), deterministic per seed."""

    def __init__(self, seed: int, fan_in: int) -> None:
        self.rng = rng = random.Random(seed)
        bound = fan_in**-0.5
        self.blocks = {
            "A": array("f", (rng.uniform(-bound, bound) for _ in range(_BLOCK))).tobytes(),
            "B": array("f", (rng.gauss(0.0, 0.02) for _ in range(_BLOCK))).tobytes(),
        }

    def __call__(self, side: str, count: int) -> bytes:
        """``count`` floats: the side's block, rotated by a random offset, tiled."""
        block = self.blocks[side]
        k = self.rng.randrange(_BLOCK) * 4
        block = block[k:] + block[:k]
        return (block * (-(-count * 4 // len(block))))[: count * 4]


def lora_tensors(
    r: int = 4,
    layers: int = 2,
    seed: int = 0,
    ranks: Mapping[str, int] | None = None,
    *,
    hidden: int = HIDDEN,
    kv_out: int = KV_OUT,
) -> dict[str, Tensor]:
    """PEFT-named A/B pairs for q/k/v/o of every layer.

    ``ranks`` overrides r per module, keyed by the name's tail (``"0.self_attn.q_proj"``).
    A is [rank, hidden]; B is [out, rank], out = hidden for q/o and kv_out for k/v.
    """
    floats = _Floats(seed, hidden)
    outs = {"q_proj": hidden, "k_proj": kv_out, "v_proj": kv_out, "o_proj": hidden}
    tensors: dict[str, Tensor] = {}
    for layer in range(layers):
        for module, out in outs.items():
            rank = (ranks or {}).get(f"{layer}.self_attn.{module}", r)
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = ([rank, hidden], floats("A", rank * hidden))
            tensors[f"{prefix}.lora_B.weight"] = ([out, rank], floats("B", out * rank))
    return tensors


def lora_bytes(r: int = 4, seed: int = 0, **kwargs: Any) -> bytes:
    """The safetensors file of :func:`lora_tensors` (the same keyword arguments)."""
    return safetensors_bytes(lora_tensors(r=r, seed=seed, **kwargs))


def lora_config(r: int = 4, **overrides: Any) -> dict[str, Any]:
    """adapter_config.json as PEFT's LoraConfig writes it (abridged), for the default shape."""
    config: dict[str, Any] = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": r,
        "lora_alpha": 2 * r,
        "lora_dropout": 0.0,
        "target_modules": sorted(MODULES),
        "base_model_name_or_path": BASE_MODEL,
        "rank_pattern": {},
        "alpha_pattern": {},
        "bias": "none",
    }
    config.update(overrides)
    return config


def peft_dir(path: Path, r: int = 4, seed: int = 0, config: dict[str, Any] | None = None) -> Path:
    """A directory as PEFT's save_pretrained writes it."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_model.safetensors").write_bytes(lora_bytes(r=r, seed=seed))
    (path / "adapter_config.json").write_text(json.dumps(config or lora_config(r=r), indent=2))
    return path


def lora_of_size(nbytes: int, seed: int = 0) -> tuple[bytes, dict[str, Any]]:
    """A LoRA file of about ``nbytes`` (at least 2 layers at rank 1) and its config."""
    units = max(2, nbytes // (4 * sum(MODULES.values()) + 4 * HIDDEN * len(MODULES)))
    layers, r = (2, units // 2) if units <= 128 else (units // 64, 64)
    return lora_bytes(r=r, seed=seed, layers=layers), lora_config(r=r)


def qwen_7b_adapter(r: int = 64, seed: int = 0) -> tuple[bytes, dict[str, Any]]:
    """A q/k/v/o LoRA of Qwen2.5-Coder-7B (about 161 MB at rank 64) and its config."""
    weights = lora_bytes(r=r, seed=seed, **QWEN_7B_SHAPE)
    return weights, lora_config(r=r, base_model_name_or_path=QWEN_7B)


def model_shape(nbytes: float, layers: int, r: int) -> tuple[int, int]:
    """(hidden, kv_out) of a Qwen2-style GQA model whose q/k/v/o LoRA of ``layers`` layers at
    rank ``r`` is about ``nbytes`` (hidden a multiple of 64, at least 64)."""
    # Per layer and unit of rank: A is [r, hidden] for all four projections and B is [out, r],
    # out = hidden for q/o and hidden/4 for k/v (4 query heads per kv head): 6.5 * hidden floats.
    hidden = max(64, round(nbytes / (layers * r * 26) / 64) * 64)
    return hidden, hidden // 4


def one_pair(nbytes: int, seed: int = 0, r: int = 8) -> bytes:
    """One LoRA pair on ``m.q_proj`` (A [r, width], B [width, r]) of about ``nbytes``: the
    fewest tensors for a given size."""
    width = max(1, nbytes // (2 * r * 4))
    floats = _Floats(seed, width)
    return safetensors_bytes({
        "m.q_proj.lora_A.weight": ([r, width], floats("A", r * width)),
        "m.q_proj.lora_B.weight": ([width, r], floats("B", width * r)),
    })  # fmt: skip

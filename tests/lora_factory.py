"""Real LoRA adapters for the tests: PEFT's tensor names and config format, written with the
safetensors package, in the shapes a 2-layer Qwen2-style model gives them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save

HIDDEN = 32
KV_OUT = 16
MODULES = {"q_proj": HIDDEN, "k_proj": KV_OUT, "v_proj": KV_OUT, "o_proj": HIDDEN}
BASE_MODEL = "tiny/qwen2-2layer"


def lora_config(r: int = 4, **overrides: Any) -> dict[str, Any]:
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


def lora_tensors(
    r: int = 4, layers: int = 2, seed: int = 0, ranks: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """A/B pairs for every attention projection; ``ranks`` overrides r per module suffix."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(layers):
        for module, out in MODULES.items():
            name = f"model.layers.{layer}.self_attn.{module}"
            rank = (ranks or {}).get(f"{layer}.self_attn.{module}", r)
            prefix = f"base_model.model.{name}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((rank, HIDDEN), np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out, rank), np.float32)
    return tensors


def lora_bytes(r: int = 4, seed: int = 0, **kwargs: Any) -> bytes:
    return save(lora_tensors(r=r, seed=seed, **kwargs), metadata={"format": "pt"})


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

"""PEFT LoRA configs: parse ``adapter_config.json`` and check it against the tensors it describes.

A tampered ``r``, ``rank_pattern`` or ``target_modules`` changes what an adapter does as surely
as a tampered weight, so the registry refuses a config that disagrees with its weights: every
LoRA module has both its A and B matrix, each of the rank the config gives it, and is one of the
config's target modules. Matching follows PEFT's own rules (``get_pattern_key`` for
``rank_pattern``, ``check_target_module_exists`` for ``target_modules``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidAdapterError
from .validation import MAX_BASE_MODEL, check_text

__all__ = ["LoraConfig", "check_tensors", "parse_config"]

#: The prefix PEFT gives every key of a saved adapter; module names in configs omit it.
SAVED_PREFIX = "base_model.model."
#: A config larger than this is not a PEFT config.
MAX_CONFIG_BYTES = 1 << 20

_LORA_TENSOR = re.compile(
    r"^(?P<module>.+)\.(?:lora_(?P<linear>[AB])\.weight|lora_embedding_(?P<embedding>[AB]))$"
)

TensorTuple = tuple[str, str, Sequence[int]]


@dataclass(frozen=True)
class LoraConfig:
    r: int
    target_modules: list[str] | str | None
    rank_pattern: dict[str, int] = field(default_factory=dict)
    base_model_name_or_path: str | None = None

    def rank_for(self, module: str) -> int:
        """The rank PEFT gives ``module``: the first matching ``rank_pattern`` key, else ``r``."""
        for pattern, rank in self.rank_pattern.items():
            if re.match(rf"(.*\.)?({pattern})$", module):
                return rank
        return self.r

    def targets(self, module: str) -> bool:
        targets = self.target_modules
        if targets is None or targets == "all-linear":
            return True  # decided by the model's layer types, which the weights alone do not show
        if isinstance(targets, str):
            return re.fullmatch(targets, module) is not None
        return module in targets or any(module.endswith(f".{t}") for t in targets)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidAdapterError(f"adapter_config.json has the key {key!r} twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def parse_config(data: bytes) -> LoraConfig:
    """Parse the bytes of an ``adapter_config.json`` of a LoRA adapter."""
    if len(data) > MAX_CONFIG_BYTES:
        raise InvalidAdapterError(f"adapter_config.json is {len(data)} bytes, over 1 MiB")
    try:
        raw = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constant,
        )
    except RecursionError:
        raise InvalidAdapterError("adapter_config.json is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError, an int of 4301 digits
        raise InvalidAdapterError(f"adapter_config.json is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise InvalidAdapterError("adapter_config.json is not a JSON object")
    if raw.get("peft_type") != "LORA":
        raise InvalidAdapterError(
            f"adapter_config.json has peft_type {raw.get('peft_type')!r}; only 'LORA' is stored"
        )
    r: Any = raw.get("r")
    if not _positive_int(r):
        raise InvalidAdapterError(f"adapter_config.json has r={r!r}; it must be a positive integer")
    targets = raw.get("target_modules")
    if targets is not None and not (
        isinstance(targets, str)
        or (isinstance(targets, list) and all(isinstance(t, str) and t for t in targets))
    ):
        raise InvalidAdapterError(
            "adapter_config.json target_modules must be a string or a list of names"
        )
    rank_pattern = raw.get("rank_pattern") or {}
    if not isinstance(rank_pattern, dict) or not all(
        _positive_int(v) for v in rank_pattern.values()
    ):
        raise InvalidAdapterError(
            "adapter_config.json rank_pattern must map module patterns to positive integers"
        )
    for pattern in [*rank_pattern, *([targets] if isinstance(targets, str) else [])]:
        try:
            re.compile(pattern)
        except re.error as err:
            raise InvalidAdapterError(
                f"adapter_config.json has an invalid pattern {pattern!r}: {err}"
            ) from err
    base = raw.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        raise InvalidAdapterError("adapter_config.json base_model_name_or_path must be a string")
    if base:
        check_text("adapter_config.json base_model_name_or_path", base, MAX_BASE_MODEL)
    return LoraConfig(
        r=r,
        target_modules=targets,
        rank_pattern=dict(rank_pattern),
        base_model_name_or_path=base or None,
    )


def check_tensors(config: LoraConfig, tensors: Sequence[TensorTuple]) -> None:
    """Raise InvalidAdapterError unless ``tensors`` are the LoRA weights ``config`` describes."""
    pairs: dict[str, dict[str, Sequence[int]]] = {}
    for name, _dtype, shape in tensors:
        match = _LORA_TENSOR.match(name)
        if match is None:
            continue  # modules_to_save, biases, DoRA magnitudes: not rank-bearing
        module = match["module"].removeprefix(SAVED_PREFIX)
        pairs.setdefault(module, {})[match["linear"] or match["embedding"]] = shape
    if not pairs:
        raise InvalidAdapterError("the weights hold no LoRA tensors (no lora_A/lora_B pairs)")
    for module, sides in sorted(pairs.items()):
        missing = {"A", "B"} - sides.keys()
        if missing:
            raise InvalidAdapterError(f"module {module!r} has no lora_{missing.pop()} tensor")
        if not config.targets(module):
            raise InvalidAdapterError(
                f"module {module!r} carries LoRA weights but is not in target_modules "
                f"{config.target_modules!r}"
            )
        rank = config.rank_for(module)
        a, b = sides["A"], sides["B"]
        if len(a) < 2 or len(b) < 2 or a[0] != rank or b[1] != rank:
            raise InvalidAdapterError(
                f"module {module!r}: lora_A {list(a)} and lora_B {list(b)} do not have the "
                f"config's rank {rank}"
            )

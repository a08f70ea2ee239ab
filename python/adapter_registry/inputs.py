"""What ``store()`` accepts as an adapter, resolved to (weights source, config bytes).

- a PEFT adapter directory, as ``save_pretrained`` writes it: ``adapter_model.safetensors``
  (or ``adapter.safetensors``) beside ``adapter_config.json``;
- a ``.safetensors`` file, with ``config`` given as a dict or a path;
- the safetensors file's bytes, with ``config`` likewise.

The weights are never read here: the Rust core reads them once, while it copies them.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._core import CONFIG_FILE, PEFT_WEIGHTS_FILE, WEIGHTS_FILE
from .errors import FilesNotStoredWarning, InvalidAdapterError
from .lora_config import MAX_CONFIG_BYTES

__all__ = ["ConfigInput", "WeightsInput", "resolve"]

#: A PEFT adapter directory, a ``.safetensors`` file, or the file's bytes.
WeightsInput = str | os.PathLike[str] | bytes | bytearray | memoryview
#: A dict, a path to ``adapter_config.json``, or None (then it is read beside the weights).
ConfigInput = Mapping[str, Any] | str | os.PathLike[str] | None


def resolve(weights: WeightsInput, config: ConfigInput) -> tuple[str | bytes, bytes]:
    if isinstance(weights, (bytes, bytearray, memoryview)):
        if config is None:
            raise InvalidAdapterError("weights given as bytes need a config (a dict or a path)")
        return bytes(weights), _config_bytes(config)
    if not isinstance(weights, (str, os.PathLike)):
        raise InvalidAdapterError(f"weights must be a path or bytes, not {type(weights).__name__}")
    path = Path(weights).expanduser().absolute()
    if not os.path.lexists(path):
        raise InvalidAdapterError(f"weights file {path} does not exist")
    if path.is_dir():
        weights_path = _weights_in_directory(path)
        _warn_of_files_left_out(
            path, {weights_path.name, *([CONFIG_FILE] if config is None else [])}
        )
        if config is None:
            config = path / CONFIG_FILE
        return str(weights_path), _config_bytes(config)
    if config is None:
        raise InvalidAdapterError(
            f"weights {path} are a file: give config as a dict or a path, "
            "or pass the PEFT adapter directory"
        )
    return str(path), _config_bytes(config)


def _warn_of_files_left_out(directory: Path, kept: set[str]) -> None:
    """A PEFT or Trainer directory holds more than an adapter (README.md, trainer_state.json,
    tokenizer files): the registry keeps the weights and the config, as the spec says, and
    says which files it left out."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return
    left_out = [n for n in names if n not in kept | {PEFT_WEIGHTS_FILE, WEIGHTS_FILE}]
    if left_out:
        shown = ", ".join(left_out[:8]) + (
            f" and {len(left_out) - 8} more" if len(left_out) > 8 else ""
        )
        warnings.warn(
            FilesNotStoredWarning(
                f"{directory}: stored the weights and the config only; left out {shown}"
            ),
            stacklevel=4,
        )


def _weights_in_directory(directory: Path) -> Path:
    found = [directory / name for name in (PEFT_WEIGHTS_FILE, WEIGHTS_FILE)]
    present = [p for p in found if p.exists()]
    if not present:
        legacy = (
            " (adapter_model.bin is not accepted: save with safetensors)"
            if (directory / "adapter_model.bin").exists()
            else ""
        )
        raise InvalidAdapterError(
            f"{directory} holds neither {PEFT_WEIGHTS_FILE} nor {WEIGHTS_FILE}{legacy}"
        )
    if len(present) == 2 and not os.path.samefile(*present):
        raise InvalidAdapterError(
            f"{directory} holds both {PEFT_WEIGHTS_FILE} and {WEIGHTS_FILE} and they differ"
        )
    return present[0]


def _config_bytes(config: Mapping[str, Any] | str | os.PathLike[str]) -> bytes:
    if isinstance(config, Mapping):
        try:
            text = json.dumps(dict(config), indent=2, sort_keys=True, allow_nan=False)
        except RecursionError:
            raise InvalidAdapterError("config is nested too deeply") from None
        except (TypeError, ValueError) as err:
            raise InvalidAdapterError(f"config is not JSON-serialisable: {err}") from None
        try:
            return (text + "\n").encode()
        except UnicodeEncodeError as err:
            raise InvalidAdapterError(f"config is not valid Unicode: {err.reason}") from None
    if not isinstance(config, (str, os.PathLike)):
        raise InvalidAdapterError(f"config must be a dict or a path, not {type(config).__name__}")
    path = Path(config).expanduser()
    try:
        # O_NONBLOCK: a FIFO must not hang the open; only a regular file is read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidAdapterError(f"config {path} does not exist") from None
    except OSError as err:
        raise InvalidAdapterError(f"config {path} cannot be read: {err.strerror}") from err
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # before open(): a directory would raise
            raise InvalidAdapterError(f"config {path} is not a regular file")
        with open(fd, "rb", closefd=False) as f:
            return f.read(MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)

"""Verified loading onto torch and PEFT: never a corrupt adapter on the GPU.

Needs the ``torch`` extra (``pip install 'adapter-registry[torch]'``); torch and peft are
imported here, lazily, and nowhere else in the package. The registry's methods
``load_state_dict``, ``load_peft`` and ``store_peft_model`` call these functions.

Every load reads the weight file once, into memory the tensors then view, hashing each chunk as
it lands (the Rust core, GIL released); the digest and size are compared with the record before
any tensor exists, so the bytes deserialized are exactly the bytes verified. The config is
verified by hash too, and checked against the tensors (rank, target modules) as at store time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _core
from .errors import (
    IntegrityError,
    InvalidAdapterError,
    MissingDependencyError,
    about_adapter,
)
from .integrity import seal_problems
from .lora_config import check_tensors, parse_config
from .record import AdapterRecord
from .records import adapter_directory

if TYPE_CHECKING:
    import torch as torch_

    from .registry import AdapterRegistry

__all__ = ["load_peft", "load_state_dict", "store_peft_model"]

#: safetensors dtype names to torch dtype attribute names.
_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "I32": "int32", "U32": "uint32", "I64": "int64", "U64": "uint64", "F16": "float16",
    "BF16": "bfloat16", "F32": "float32", "F64": "float64", "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
}  # fmt: skip


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{module} is not installed: loading adapters needs the torch extra "
            "(pip install 'adapter-registry[torch]')"
        ) from err


def _verified_tensors(
    directory: Path, record: AdapterRecord, device: Any
) -> dict[str, torch_.Tensor]:
    torch = _require("torch")
    # A PEFT name that is a byte-identical copy of the weights (rsync -a) is no problem.
    if broken := seal_problems(directory, record.file_hash, record.file_size_bytes):
        raise IntegrityError(f"stored weights cannot be trusted: {broken[0]}")
    try:
        weights = str(directory / _core.WEIGHTS_FILE)
        data, digest, placed = _core.read_verified(weights, record.file_size_bytes)
    except InvalidAdapterError as err:  # missing, unreadable, wrong size, bad header
        raise IntegrityError(f"stored weights cannot be trusted: {err}") from err
    if digest != record.file_hash:
        raise IntegrityError(
            f"{_core.WEIGHTS_FILE} has sha256 {digest}, its record says {record.file_hash}"
        )
    flat = torch.frombuffer(data, dtype=torch.uint8)  # a view: no copy
    device = torch.device(device)
    if device.type != "cpu":
        flat = flat.to(device)  # one host-to-device copy; the tensors below are views of it
    tensors = {}
    for name, dtype, shape, begin, end in placed:
        if dtype not in _DTYPES or not hasattr(torch, _DTYPES[dtype]):
            raise InvalidAdapterError(f"tensor {name!r} has dtype {dtype}, which torch lacks")
        target = getattr(torch, _DTYPES[dtype])
        chunk = flat[begin:end]
        if chunk.data_ptr() % target.itemsize:  # unaligned in the file: copy to align
            chunk = chunk.clone()
        tensors[name] = chunk.view(target).reshape(shape)
    return tensors


def load_state_dict(
    registry: AdapterRegistry, adapter_id: str, device: Any = "cpu"
) -> dict[str, torch_.Tensor]:
    """The adapter's verified tensors.

    Args:
        registry: The registry that holds it.
        adapter_id: Its id.
        device: Where the tensors go (one host-to-device copy from the verified bytes).

    Returns:
        Its tensors by their PEFT names.

    Raises:
        AdapterNotFoundError: No such adapter.
        IntegrityError: A byte, the size or the seal of the stored file differs from what was
            recorded (no tensor is handed out then).
        MissingDependencyError: torch is not installed.
    """
    record = registry.retrieve_by_id(adapter_id)
    with about_adapter(adapter_id):
        return _verified_tensors(adapter_directory(registry.root, adapter_id), record, device)


def _verified_config(directory: Path, record: AdapterRecord) -> bytes:
    path = directory / _core.CONFIG_FILE
    try:
        data = path.read_bytes()
    except OSError as err:
        raise IntegrityError(f"{_core.CONFIG_FILE} cannot be read: {err.strerror}") from err
    if hashlib.sha256(data).hexdigest() != record.config_hash:
        raise IntegrityError(f"{_core.CONFIG_FILE} does not match its record")
    return data


def _model_device(model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return "cpu"


@contextmanager
def _offline() -> Iterator[None]:
    """Hub access off for the PEFT and transformers calls we make: they are given verified bytes
    and absolute paths, and must never turn a name like `org/model` into a download."""
    saved = {name: os.environ.get(name) for name in _OFFLINE_ENV}
    os.environ.update(dict.fromkeys(_OFFLINE_ENV, "1"))
    constants: Any = sys.modules.get("huggingface_hub.constants")
    was_offline = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if constants is not None:
            constants.HF_HUB_OFFLINE = was_offline


_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def load_peft(
    registry: AdapterRegistry,
    base_model: Any,
    adapter_id: str,
    adapter_name: str | None = None,
    device: Any = None,
    is_trainable: bool = False,
    check_base_model: bool = True,
) -> Any:
    """A PeftModel with the verified adapter loaded.

    Args:
        registry: The registry that holds it.
        base_model: A transformers model (a new PeftModel wraps it, the adapter named
            ``adapter_name`` or "default") or already a PeftModel (the adapter is added under
            ``adapter_name``, default the adapter id, and not activated).
        adapter_id: Its id.
        adapter_name: The adapter's name in the model.
        device: Default: the model's device.
        is_trainable: Load for training (else eval mode, inference config).
        check_base_model: Refuse an adapter trained for another base model than
            ``base_model.name_or_path`` (the default).

    Returns:
        The PeftModel (``base_model`` itself if it was one).

    Raises:
        AdapterNotFoundError: No such adapter.
        IntegrityError: The stored weights or config differ from their record.
        InvalidAdapterError: Another base model, or tensors that do not fit the model; the
            caller's model is left as it was.
        MissingDependencyError: peft or torch is not installed.
    """
    peft = _require("peft")
    record = registry.retrieve_by_id(adapter_id)
    with about_adapter(adapter_id):
        model_name = getattr(base_model, "name_or_path", None)
        if check_base_model and model_name != record.base_model_id:
            raise InvalidAdapterError(
                f"it was trained on {record.base_model_id!r} but the model is {model_name!r} "
                "(check_base_model=False loads it anyway)"
            )
        directory = adapter_directory(registry.root, adapter_id)
        config_bytes = _verified_config(directory, record)
        tensors = _verified_tensors(directory, record, device or _model_device(base_model))
        check_tensors(
            parse_config(config_bytes),
            [(name, str(t.dtype), list(t.shape)) for name, t in tensors.items()],
        )
        config = peft.PeftConfig.from_peft_type(**json.loads(config_bytes))
        config.inference_mode = not is_trainable
        with _offline():  # built from the verified bytes; no hub id is ever passed either
            return _attach(peft, base_model, config, tensors, adapter_id, adapter_name,
                           is_trainable)  # fmt: skip


def _attach(
    peft: Any,
    base_model: Any,
    config: Any,
    tensors: dict[str, Any],
    adapter_id: str,
    adapter_name: str | None,
    is_trainable: bool,
) -> Any:
    """The adapter's config and verified tensors put into the model, or the model as it was."""
    if isinstance(base_model, peft.PeftModel):
        name = adapter_name or adapter_id
        base_model.add_adapter(name, config)
        model = base_model
    else:
        name = adapter_name or "default"
        kind = peft.MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(config.task_type, peft.PeftModel)
        model = kind(base_model, config, adapter_name=name)
    try:
        result = peft.set_peft_model_state_dict(model, tensors, adapter_name=name)
        missing = [k for k in result.missing_keys if "lora_" in k and f".{name}." in k]
        if missing or result.unexpected_keys:
            raise InvalidAdapterError(
                f"its tensors do not fit the model: missing {missing[:3]}, "
                f"unexpected {list(result.unexpected_keys)[:3]}"
            )
    except Exception:
        # Leave the caller's model as it was: never a half-loaded adapter in it.
        if model is base_model:
            model.delete_adapter(name)
        else:
            model.unload()
        raise
    if not is_trainable:
        model.eval()
    return model


def store_peft_model(
    registry: AdapterRegistry, peft_model: Any, adapter_name: str = "default", **metadata: Any
) -> AdapterRecord:
    """Save one adapter of a PeftModel with PEFT's own save_pretrained and store it, once.

    Args:
        registry: Where to store it.
        peft_model: The model.
        adapter_name: Which of its adapters.
        **metadata: ``store()``'s keyword arguments (task_type, source, session_id, ...).

    Returns:
        The stored adapter's record.

    Raises:
        InvalidAdapterError: No such adapter in the model, or what ``store()`` refuses.
        AdapterAlreadyExistsError, AdapterStorageError: As ``store()`` raises them.
        MissingDependencyError: peft is not installed.
    """
    _require("peft")
    if adapter_name not in getattr(peft_model, "peft_config", {}):
        raise InvalidAdapterError(f"the model has no adapter named {adapter_name!r}")
    with tempfile.TemporaryDirectory(prefix="adapter-registry-export-") as tmp, _offline():
        peft_model.save_pretrained(
            tmp, selected_adapters=[adapter_name], safe_serialization=True,
            save_embedding_layers=False,
        )  # fmt: skip
        saved = Path(tmp) if adapter_name == "default" else Path(tmp) / adapter_name
        return registry.store(saved, **metadata)

"""Messages that name the input (issue 18, item 2, and item 6): a file in a common format that
is not safetensors is named for what it is, with what to do; a missing path is said to be
missing; a PEFT or Trainer directory's other files are named in a FilesNotStoredWarning."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapter_registry import AdapterRegistry, FilesNotStoredWarning, InvalidAdapterError
from adapter_registry._lora_files import lora_config, peft_dir

from conftest import assert_nothing_written, entries, rows

BACKENDS = ["sqlite"]  # what the input is, before any database is asked


def _torch_zip(path: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(4)}, path)


def _torch_pickle(path: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(4)}, path, _use_new_zipfile_serialization=False)


def _gguf(path: Path) -> None:
    path.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(64))


def _npy(path: Path) -> None:
    with open(path, "wb") as f:  # np.save(path) would add ".npy" to the name
        np.save(f, np.zeros(4, np.float32))


FORMATS = {
    "torch.save (zip)": (_torch_zip, "PyTorch zip archive"),
    "torch.save (pickle)": (_torch_pickle, "Python pickle"),
    "GGUF": (_gguf, "GGUF file"),
    "numpy": (_npy, "NumPy .npy array"),
}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_a_file_that_is_not_safetensors_is_named_for_what_it_is(
    registry: AdapterRegistry, tmp_path: Path, kind: str
) -> None:
    make, named = FORMATS[kind]
    path = tmp_path / "adapter_model.bin"
    make(path)
    before_rows, before = rows(registry), entries(registry)
    with pytest.raises(InvalidAdapterError, match=f"{named}.*not safetensors") as caught:
        registry.store(path, config=lora_config(), task_type="bug-fix", source="manual",
                       session_id="s")  # fmt: skip
    assert str(path) in str(caught.value) and "header length" not in str(caught.value)
    assert_nothing_written(registry, before_rows, before)


def test_a_missing_path_is_said_to_be_missing(registry: AdapterRegistry, tmp_path: Path) -> None:
    gone = tmp_path / "nowhere" / "adapter.safetensors"
    with pytest.raises(InvalidAdapterError, match=f"weights file {gone} does not exist"):
        registry.store(gone, config=lora_config(), task_type="bug-fix", source="manual",
                       session_id="s")  # fmt: skip


def test_the_files_a_directory_store_leaves_out_are_named(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    directory = peft_dir(tmp_path / "checkpoint-500")
    (directory / "README.md").write_text("# model card")
    (directory / "trainer_state.json").write_text(json.dumps({"step": 500}))
    meta: dict[str, Any] = {"task_type": "bug-fix", "source": "manual", "session_id": "s"}
    with pytest.warns(FilesNotStoredWarning, match="left out README.md, trainer_state.json"):
        record = registry.store(directory, **meta)
    assert registry.verify(record.id).ok
    plain = peft_dir(tmp_path / "plain", seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a directory of just the adapter warns of nothing
        registry.store(plain, **meta)


def test_a_refused_store_names_its_input_not_an_id_that_exists_nowhere(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    from adapter_registry._lora_files import lora_bytes

    meta: dict[str, Any] = {"task_type": "bug-fix", "source": "manual", "session_id": "a\x00b"}
    with pytest.raises(InvalidAdapterError, match=r"^adapter from bytes: session_id"):
        registry.store(lora_bytes(), config=lora_config(), **meta)
    directory = peft_dir(tmp_path / "out")
    with pytest.raises(InvalidAdapterError, match=f"^adapter from {directory}: session_id"):
        registry.store(directory, **meta)
    given = "0f0f0f0f-0000-4000-8000-00000000000a"
    with pytest.raises(InvalidAdapterError, match=f"^adapter {given}: session_id"):
        registry.store(directory, adapter_id=given, **meta)

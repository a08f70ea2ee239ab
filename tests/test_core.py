"""The Rust core on its own, through its Python binding: hashing, header validation, batch
verification, and that file work releases the GIL."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save, save_file

from adapter_registry import (
    AdapterRegistryError,
    AdapterStorageError,
    InvalidAdapterError,
    _core,
)
from adapter_registry._lora_files import lora_bytes


@pytest.mark.parametrize("size", [0, 1, (1 << 20) + 1, 64 << 20])
def test_hash_equals_hashlib(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(np.random.default_rng(size).bytes(size))
    with open(path, "rb") as f:
        expected = hashlib.file_digest(f, "sha256").hexdigest()
    assert _core.hash_file(path) == (expected, size)


def test_hash_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidAdapterError, match=r"nope\.safetensors does not exist"):
        _core.hash_file(tmp_path / "nope.safetensors")


def test_hashing_releases_the_gil(tmp_path: Path) -> None:
    # A Python thread feeds a FIFO that the core hashes. Were the GIL held while hashing, the
    # writer could never run and the child would hang until the timeout kills it.
    script = textwrap.dedent(
        f"""
        import hashlib, os, threading
        from adapter_registry import _core
        fifo = {str(tmp_path / "fifo")!r}
        os.mkfifo(fifo)
        chunks = [bytes([i]) * 65536 for i in range(64)]
        def feed():
            with open(fifo, "wb") as f:
                for c in chunks:
                    f.write(c)
        t = threading.Thread(target=feed)
        t.start()
        digest, size = _core.hash_file(fifo)
        t.join()
        assert digest == hashlib.sha256(b"".join(chunks)).hexdigest(), digest
        assert size == 64 * 65536
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.stdout.strip() == b"ok", done.stderr.decode()


DTYPES = ["float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_header_of_files_the_safetensors_writer_makes(tmp_path: Path, dtype: str) -> None:
    tensors = {
        "a": np.zeros((3, 5), dtype=dtype),
        "b.weight": np.ones((7,), dtype=dtype),
        "empty": np.zeros((0, 4), dtype=dtype),
        "scalar": np.zeros((), dtype=dtype),
    }
    path = tmp_path / "t.safetensors"
    save_file(tensors, path, metadata={"format": "pt", "k": "v"})
    found, metadata = _core.read_safetensors_header(path)
    assert {name: tuple(shape) for name, _, shape in found} == {
        k: v.shape for k, v in tensors.items()
    }
    assert sorted(metadata) == [("format", "pt"), ("k", "v")]
    assert _core.read_safetensors_header(path.read_bytes())[0] == found


def test_header_errors_reach_python_as_invalid_adapter_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(lora_bytes()[:-3])
    with pytest.raises(InvalidAdapterError, match=r"bad\.safetensors is not a valid safetensors"):
        _core.read_safetensors_header(path)
    assert issubclass(InvalidAdapterError, ValueError)


def test_verify_files_gives_a_verdict_per_item_in_order(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(save({"x": np.arange(1000, dtype=np.float32)}))
    digest, size = _core.hash_file(good)
    bad = tmp_path / "bad"
    bad.write_bytes(b"something else")
    seen: list[tuple[int, int, int]] = []
    out = _core.verify_files(
        [
            (str(good), digest),
            (str(bad), digest),
            (str(tmp_path / "gone"), digest),
            (str(tmp_path), digest),
        ],
        threads=2,
        progress=lambda *p: seen.append(p),
    )
    assert [o[0] for o in out] == ["ok", "mismatch", "missing", "unreadable"]
    assert out[0][1:3] == (digest, size)
    assert out[1][1] == hashlib.sha256(b"something else").hexdigest()
    assert seen[-1] == (4, 4, size + len(b"something else"))


def test_an_exception_in_the_progress_callback_stops_verification(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    digest, _ = _core.hash_file(f)

    def boom(*_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _core.verify_files([(str(f), digest)] * 50, threads=2, progress=boom)


def test_staging_into_an_unusable_root_is_a_storage_error_with_errno(tmp_path: Path) -> None:
    root = tmp_path / "a-file"
    root.write_bytes(b"")
    with pytest.raises(AdapterStorageError) as caught:
        _core.stage(str(root), "label", lora_bytes(), b"{}")
    assert caught.value.errno == 20  # ENOTDIR
    assert str(root) in str(caught.value)


def test_stage_refuses_a_source_that_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    root = tmp_path / "root"
    root.mkdir()
    for source in (fifo, tmp_path):
        with pytest.raises(InvalidAdapterError, match="not a regular file"):
            _core.stage(str(root), "label", str(source), b"{}")
    assert os.listdir(root) == []  # refused on opening: no staging directory was made


def test_a_panic_in_the_core_is_an_ordinary_registry_error() -> None:
    with pytest.raises(AdapterRegistryError, match="internal error in the core: boom"):
        _core._panic("boom")

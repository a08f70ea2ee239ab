"""Hostile paths and files (issue 5): names that try to leave the root, planted symlinks,
sources that are not regular files, absurd header lengths, an unwritable root, a database that
is not SQLite. Each gets our typed error, nothing is written outside the root, nothing hangs."""

from __future__ import annotations

import os
import struct
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import (
    AdapterAlreadyExistsError,
    AdapterRegistry,
    AdapterStorageError,
    InvalidAdapterError,
)
from adapter_registry._lora_files import lora_bytes, lora_config

from conftest import assert_nothing_written, entries, rows

ARGS: dict[str, Any] = {"task_type": "bug-fix", "source": "manual", "session_id": "hostile"}


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


NOT_AN_ID = r"adapter id .* is not a canonical UUID v4"
NOT_KEBAB = r"task_type .* is not kebab-case"


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("adapter_id", "../escaped", NOT_AN_ID),
        ("adapter_id", "/tmp/escaped", NOT_AN_ID),
        ("adapter_id", "a\0b", NOT_AN_ID),
        ("adapter_id", "x" * 5000, NOT_AN_ID),
        ("adapter_id", str(uuid.uuid4()).upper(), NOT_AN_ID),
        ("task_type", "../../escaped", NOT_KEBAB),
        ("task_type", "/etc/passwd", NOT_KEBAB),
        ("task_type", "bug\0fix", NOT_KEBAB),
        ("task_type", "t" * 5000, NOT_KEBAB),
        ("session_id", "line\nbreak", r"session_id .* single-line .*U\+000A"),
    ],
)
def test_names_that_try_to_leave_the_root(
    registry: AdapterRegistry, tmp_path: Path, field: str, value: str, problem: str
) -> None:
    outside = tree(tmp_path)
    before_rows, before = rows(registry), entries(registry)
    # the message names the adapter (the id given, else the one drawn) and the problem
    with pytest.raises(InvalidAdapterError, match=r"^adapter [^:]+: " + problem) as caught:
        registry.store(lora_bytes(), config=lora_config(), **{**ARGS, field: value})
    if field == "adapter_id":
        assert str(caught.value).startswith(f"adapter {value}: ")
    assert_nothing_written(registry, before_rows, before)
    assert [e for e in tree(tmp_path) if not e.startswith("home")] == [
        e for e in outside if not e.startswith("home")
    ]


def test_a_symlink_planted_under_an_adapter_name_is_never_written_through(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    adapter_id = str(uuid.uuid4())
    (registry.root / adapter_id).symlink_to(target)
    with pytest.raises(AdapterAlreadyExistsError, match=adapter_id):
        registry.store(lora_bytes(), config=lora_config(), adapter_id=adapter_id, **ARGS)
    assert list(target.iterdir()) == [] and rows(registry) == 0


def test_a_symlinked_staging_directory_is_refused_before_any_write(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (registry.root / ".staging").symlink_to(target)
    with pytest.raises(AdapterStorageError, match="staging"):
        registry.store(lora_bytes(), config=lora_config(), **ARGS)
    assert list(target.iterdir()) == [] and rows(registry) == 0


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "fifo.safetensors"
    os.mkfifo(path)
    yield path


# A FIFO opened without O_NONBLOCK would block in the core, where no signal gets through (the
# open is retried on EINTR): the thread method ends the run with every stack, instead of a hang.
@pytest.mark.timeout(120, method="thread")
@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "symlink loop", "missing"])
def test_sources_that_are_not_regular_files(
    registry: AdapterRegistry, tmp_path: Path, fifo: Path, kind: str
) -> None:
    loop = tmp_path / "loop.safetensors"
    loop.symlink_to(loop)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    source = {
        "fifo": fifo,  # opened without blocking: no writer must not mean a hang
        "directory": empty_dir,
        "device": Path("/dev/zero"),  # endless: must be refused, not read
        "symlink loop": loop,
        "missing": tmp_path / "absent.safetensors",
    }[kind]
    before_rows, before = rows(registry), entries(registry)
    with pytest.raises((InvalidAdapterError, AdapterStorageError), match="adapter "):
        registry.store(source, config=lora_config(), **ARGS)
    assert_nothing_written(registry, before_rows, before)


#: The safetensors reference reader's own limit on a header, and ours.
MAX_HEADER_LEN = 100_000_000


@pytest.mark.parametrize("length", [1 << 63, (1 << 64) - 1, MAX_HEADER_LEN + 1])
def test_absurd_header_lengths(registry: AdapterRegistry, length: int) -> None:
    data = struct.pack("<Q", length) + lora_bytes()[8:]
    before_rows, before = rows(registry), entries(registry)
    # the limit's own message: "runs past the end of the file" would be true of each as well
    with pytest.raises(
        InvalidAdapterError, match=f"header length {length} exceeds the {MAX_HEADER_LEN}-byte"
    ):
        registry.store(data, config=lora_config(), **ARGS)
    assert_nothing_written(registry, before_rows, before)


def padded_header(length: int) -> bytes:
    """A LoRA file whose header is `length` bytes: its JSON padded with spaces, as the format
    allows, so that only the length decides whether it is read."""
    data = lora_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8 : 8 + n].rstrip(b" ")
    return struct.pack("<Q", length) + header + b" " * (length - len(header)) + data[8 + n :]


def test_a_header_at_the_limit_is_read_and_one_byte_over_is_refused(tmp_path: Path) -> None:
    """The limit itself, whole files: nothing runs past the end, so only the limit can refuse."""
    registry = AdapterRegistry(root=tmp_path / "adapters", db_url=f"sqlite:///{tmp_path}/r.db")
    try:
        over = tmp_path / "over.safetensors"
        over.write_bytes(padded_header(MAX_HEADER_LEN + 1))
        before_rows, before = rows(registry), entries(registry)
        with pytest.raises(
            InvalidAdapterError,
            match=f"header length {MAX_HEADER_LEN + 1} exceeds the {MAX_HEADER_LEN}-byte limit",
        ):
            registry.store(over, config=lora_config(), **ARGS)
        assert_nothing_written(registry, before_rows, before)
        over.unlink()
        at = tmp_path / "at.safetensors"
        at.write_bytes(padded_header(MAX_HEADER_LEN))
        record = registry.store(at, config=lora_config(), **ARGS)
        assert record.file_size_bytes == at.stat().st_size > MAX_HEADER_LEN
        assert registry.verify(record.id).ok
    finally:
        registry.close()


def test_a_root_that_is_not_writable(tmp_path: Path) -> None:
    root = tmp_path / "readonly"
    root.mkdir()
    # Bound while writable (opening a new registry writes the root's .registry.json).
    registry = AdapterRegistry(root=root, db_url=f"sqlite:///{tmp_path / 'r.db'}")
    with read_only(root):
        with pytest.raises(AdapterStorageError, match=r"adapter .*(Read-only|Permission)") as err:
            registry.store(lora_bytes(), config=lora_config(), **ARGS)
        assert err.value.errno in (30, 13)  # EROFS, EACCES
        assert rows(registry) == 0
        assert [p.name for p in root.iterdir() if p.name != ".registry.json"] == []
    registry.close()


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The directory made unwritable: a read-only tmpfs mounted over it where this process may
    mount (root, as in CI), or mode 0555 where it is not root and permissions bind."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", path], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", path], check=True)
    else:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)


def test_a_database_file_that_is_not_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    db.write_bytes(b"this is not a database, just text long enough to look like a file" * 100)
    with pytest.raises(AdapterStorageError, match="not a database"):
        AdapterRegistry(root=tmp_path / "adapters", db_url=f"sqlite:///{db}")
    assert db.read_bytes().startswith(b"this is not a database")

"""Ingest of a 200 MiB adapter: store() (copy, hash, validate, publish, fsync, insert) beside a
hand-written Python one-pass ingest (read 1 MiB, hash, write, fsync file and folder) and
`cp && sync && sha256sum`. The machine's disk bounds all three. Targets: 1.5x and 4x."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import one_pair

from conftest import run_pedantic

GROUP = "ingest a 200 MiB adapter"
ROUNDS = 5
MIB = 1 << 20
CONFIG = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"], "base_model_name_or_path": "m"}
_n = itertools.count()


@contextmanager
def setup(home: Path) -> Iterator[tuple[Path, AdapterRegistry]]:
    path = home / "src.safetensors"
    path.write_bytes(one_pair(200 * MIB, 0))
    path.read_bytes()
    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    yield path, registry
    registry.close()


def registry_store(path: Path, registry: AdapterRegistry) -> str:
    record = registry.store(
        path, config=CONFIG, task_type="bug-fix", source="manual", session_id="bench"
    )
    return record.file_hash


def python_one_pass(path: Path, registry: AdapterRegistry) -> str:
    target = registry.root.parent / f"py-{next(_n)}"
    target.mkdir()
    h = hashlib.sha256()
    with open(path, "rb") as src, open(target / "adapter.safetensors", "wb") as out:
        while chunk := src.read(MIB):
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    fd = os.open(target, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return h.hexdigest()


def cp_sync_sha256sum(path: Path, registry: AdapterRegistry) -> str:
    target = registry.root.parent / f"cp-{next(_n)}"
    done = subprocess.run(
        f"cp {path} {target} && sync && sha256sum {target}",
        shell=True, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.split()[0]


CONTENDERS = [registry_store, python_one_pass, cp_sync_sha256sum]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_ingest_200mib(benchmark: Any, args: Any, contender: Any) -> None:
    expected = hashlib.sha256(args[0].read_bytes()).hexdigest()
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) == expected

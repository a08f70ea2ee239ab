"""SHA-256 of a cached 200 MiB file: the core against hashlib.file_digest."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapter_registry import _core

from conftest import run_pedantic, size

GROUP = "sha256 of a cached 200 MiB file"
ROUNDS = 5
MIB = 1 << 20


def core_hash_file(path: Path) -> str:
    return _core.hash_file(path)[0]


def hashlib_file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


CONTENDERS = [core_hash_file, hashlib_file_digest]


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[Path]]:
    path = workdir / "weights.bin"
    path.write_bytes(np.random.default_rng(0).bytes(size(200, 2) * MIB))
    path.read_bytes()  # in the page cache
    yield (path,)


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_sha256_200mib(benchmark: Any, args: tuple[Path], contender: Any) -> None:
    digest = run_pedantic(benchmark, sys.modules[__name__], contender, args)
    assert digest == hashlib_file_digest(*args)

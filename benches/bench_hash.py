"""SHA-256 of a cached 200 MiB file: the core against hashlib.file_digest, in one run.

make bench        (or: .venv/bin/python -m pytest benches/bench_hash.py --benchmark-only)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import _core


def hashlib_file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def core_hash_file(path: Path) -> str:
    return _core.hash_file(path)[0]


@pytest.mark.parametrize(
    "contender", [core_hash_file, hashlib_file_digest], ids=lambda f: f.__name__
)
def test_sha256_200mib(benchmark: Any, cached_200mib: Path, contender: Any) -> None:
    benchmark.group = "sha256 of a cached 200 MiB file"
    benchmark.extra_info["bytes"] = cached_200mib.stat().st_size
    digest = benchmark.pedantic(contender, args=(cached_200mib,), rounds=5, warmup_rounds=1)
    assert digest == hashlib_file_digest(cached_200mib)

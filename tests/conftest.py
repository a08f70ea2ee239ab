from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRecord, AdapterRegistry

from lora_factory import lora_bytes, lora_config


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path) -> Iterator[AdapterRegistry]:
    reg = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'registry.db'}")
    yield reg
    reg.close()


@pytest.fixture
def store_one(registry: AdapterRegistry) -> Any:
    """store() with sensible defaults: store_one(seed=..., **overrides)."""

    def store(seed: int = 0, r: int = 4, **kwargs: Any) -> AdapterRecord:
        kwargs.setdefault("config", lora_config(r=r))
        kwargs.setdefault("task_type", "bug-fix")
        kwargs.setdefault("source", "manual")
        kwargs.setdefault("session_id", "session-1")
        return registry.store(lora_bytes(r=r, seed=seed), **kwargs)

    return store


def rows(registry: AdapterRegistry) -> int:
    db = registry.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM adapter_records").fetchone()[0])


def entries(registry: AdapterRegistry) -> list[str]:
    """Everything under the root, staging included, as relative paths."""
    out = []
    for dirpath, dirnames, filenames in os.walk(registry.root):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), registry.root))
    return sorted(out)


def assert_nothing_written(registry: AdapterRegistry, before_rows: int, before: list[str]) -> None:
    assert rows(registry) == before_rows
    after = [e for e in entries(registry) if e != ".staging"]
    assert after == [e for e in before if e != ".staging"]

"""SQLite's locking, as the README promises it: every write transaction takes the write lock at
its BEGIN (IMMEDIATE), and none is held while a store copies, fsyncs or publishes bytes.

Why it matters: a deferred transaction that reads and then writes fails at once with
"database is locked" when another writer committed in between (its snapshot is stale, and the
busy timeout does not cover that); and a lock held across a copy would stall every other
writer for as long as the largest adapter takes to write."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import lora_bytes, lora_config

from conftest import at_core_call

META: dict[str, Any] = {"task_type": "bug-fix", "source": "manual", "session_id": "locks"}


def another_writer_can_start(db: Path) -> bool:
    """Whether a writer on its own connection can take the write lock now, without waiting."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as err:
        assert "database is locked" in str(err)
        return False
    finally:
        conn.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[AdapterRegistry]:
    reg = AdapterRegistry(root=tmp_path / "adapters", db_url=f"sqlite:///{tmp_path}/r.db")
    yield reg
    reg.close()


def test_every_write_transaction_holds_the_write_lock_from_its_begin(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    """Statements the registry's engine runs, and whether another writer could still start
    right after each BEGIN: after the BEGIN of a transaction that writes, it must not."""
    db = tmp_path / "r.db"
    seen: list[tuple[str, bool | None]] = []

    def after_execute(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if conn.engine.url.database != str(db):
            return
        text = " ".join(statement.split())
        begins = text.upper().startswith("BEGIN")
        seen.append((text, another_writer_can_start(db) if begins else None))

    event.listen(Engine, "after_cursor_execute", after_execute)
    try:
        parent = registry.store(lora_bytes(seed=1), config=lora_config(), **META)
        registry.store(
            lora_bytes(seed=2), config=lora_config(), parent_ids=[parent.id],
            **{**META, "source": "evolution"},
        )  # fmt: skip
        registry.update_fitness(parent.id, fitness_score=0.5, pass_rate=0.25)
        registry.archive(parent.id)
    finally:
        event.remove(Engine, "after_cursor_execute", after_execute)

    writes = 0
    lock_at_begin: bool | None = None
    for text, free in seen:
        if free is not None:
            lock_at_begin = not free
        elif text.upper().startswith(("INSERT", "UPDATE", "DELETE", "REPLACE")):
            writes += 1
            assert lock_at_begin is True, f"{text!r} ran in a transaction that began deferred"
    assert writes >= 4, seen  # two inserts, the fitness, the archive flag


def test_no_lock_is_held_while_a_store_copies_or_publishes(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    """At the start of the copy (staging) and of the publish (fsync, rename), another writer
    can take the lock at once: the store holds none while the bytes move."""
    db = tmp_path / "r.db"
    free: list[bool] = []
    points = ("OpenedWeights.stage", "StagedAdapter.publish")
    with at_core_call(points, lambda: free.append(another_writer_can_start(db))) as ran:
        registry.store(lora_bytes(seed=1), config=lora_config(), **META)
    assert ran == list(points) and free == [True, True]

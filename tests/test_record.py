"""The record's typed accessors (issue 18, item 1): ``created`` is an aware UTC datetime,
``directory`` is the adapter's folder from its registry's root and id (right after the home
moves, where ``file_path`` still names the old place), ``parents`` a list, ``to_dict()``
every column."""

from __future__ import annotations

import shutil
from datetime import timezone
from pathlib import Path
from typing import Any

from adapter_registry import AdapterRecord, AdapterRegistry, _core
from adapter_registry.record import COLUMNS

BACKENDS = ["sqlite"]  # the accessors are the record's, not the database's


def test_created_is_an_aware_utc_datetime(store_one: Any) -> None:
    record = store_one()
    assert record.created.tzinfo is not None
    assert record.created.utcoffset() == timezone.utc.utcoffset(None)
    assert record.created.isoformat(timespec="microseconds") == record.created_at


def test_directory_follows_the_registry_not_the_recorded_path(
    store_one: Any, registry: AdapterRegistry, home: Path, tmp_path: Path
) -> None:
    parent = store_one(seed=1)
    child = store_one(seed=2, parent_ids=[parent.id])
    assert child.directory == registry.root / child.id
    assert (child.directory / _core.PEFT_WEIGHTS_FILE).is_file()
    assert child.parents == [parent.id] and list(child.to_dict()) == list(COLUMNS)
    registry.close()
    moved = tmp_path / "moved-home"
    shutil.move(home, moved)
    again = AdapterRegistry(root=moved / "adapters", db_url=f"sqlite:///{moved / 'registry.db'}")
    for record in (again.retrieve_by_id(child.id), *again.search(parent_id=parent.id)):
        assert record.directory == moved / "adapters" / child.id
        assert (record.directory / _core.CONFIG_FILE).is_file()
        assert record.file_path == str(record.directory / _core.WEIGHTS_FILE)  # now
        assert Path(record.recorded_file_path).parent != record.directory  # where written
        assert record.to_dict()["file_path"] == record.recorded_file_path
    again.close()


def test_a_record_made_by_hand_falls_back_to_its_file_path() -> None:
    values = {c: None for c in COLUMNS} | {
        "id": "x", "version": 1, "task_type": "t", "base_model_id": "m", "rank": 1,
        "created_at": "2026-01-01T00:00:00.000000+00:00", "file_path": "/a/b/adapter.safetensors",
        "file_hash": "0", "file_size_bytes": 1, "source": "manual", "session_id": "s",
        "config_hash": "0",
    }  # fmt: skip
    assert AdapterRecord.model_validate(values).directory == Path("/a/b")

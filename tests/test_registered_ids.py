"""Write once, for ids whose directory is gone: an id that is registered keeps its row and stays
"missing" when its files are lost. No store under that id publishes a directory, not even for a
moment, and a publish that loses to a registration made while it staged is withdrawn."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterAlreadyExistsError, AdapterRecord, AdapterRegistry, _core
from adapter_registry._lora_files import lora_bytes, lora_config

from conftest import at_core_call, rows
from workers import store_in_child


def lose_directory(registry: AdapterRegistry, record: AdapterRecord) -> None:
    """What an operator's `rm -rf` or a lost disk does: the row stays, the files go."""
    shutil.rmtree(registry.root / record.id)


def staging(registry: AdapterRegistry) -> list[str]:
    path = registry.root / _core.STAGING_DIR
    return os.listdir(path) if path.exists() else []


def assert_still_missing(registry: AdapterRegistry, record: AdapterRecord) -> None:
    """The row is the first store's, there is no directory under its id, no staging is left,
    verify says missing (never mismatch) and recover() reports it missing, registering nothing."""
    assert registry.retrieve_by_id(record.id) == record
    assert not os.path.lexists(registry.root / record.id)
    assert staging(registry) == []
    report = registry.verify(record.id)
    assert report.status == "missing", report.problems
    recovered = registry.recover()
    assert recovered.missing == [record.id]
    assert recovered.rolled_forward == [] and recovered.unregistered == []
    assert not os.path.lexists(registry.root / record.id)


def test_a_registered_id_whose_directory_is_gone_is_refused(
    store_one: Any, registry: AdapterRegistry
) -> None:
    first = store_one(seed=1)
    lose_directory(registry, first)
    with pytest.raises(AdapterAlreadyExistsError, match=f"adapter {first.id} already exists"):
        store_one(seed=2, adapter_id=first.id)  # other bytes under the same id
    assert rows(registry) == 1
    assert_still_missing(registry, first)


def test_a_store_of_a_registered_id_never_reaches_its_publish(
    store_one: Any, registry: AdapterRegistry
) -> None:
    """Killed at the step after its publish, a store of a registered id must never have got
    there: it is refused before staging. (A check after the publish alone would leave the new
    directory behind when the process dies, and verify would report the old id as mismatch.)"""
    first = store_one(seed=1)
    lose_directory(registry, first)
    for step in ("staged", "published"):
        done = store_in_child(registry.root, registry.db_url, first.id, step, seed=2)
        assert done.returncode == 1 and done.returncode != -signal.SIGKILL, done.stderr
        assert "AdapterAlreadyExistsError" in done.stderr and first.id in done.stderr
        assert_still_missing(registry, first)


def test_a_publish_that_loses_to_a_registration_made_while_it_staged_is_withdrawn(
    registry: AdapterRegistry, home: Path, db_url: str
) -> None:
    """The window the pre-check cannot close: while this store copies its bytes, another store
    registers the same id, and that adapter's directory is then lost. Our publish finds the
    name free, our insert finds the row: our directory must not stay under that id."""
    adapter_id = str(uuid.uuid4())
    other = AdapterRegistry(root=home / "adapters", db_url=db_url)
    registered: list[AdapterRecord] = []

    def register_meanwhile() -> None:
        record = other.store(
            lora_bytes(seed=1), config=lora_config(), task_type="bug-fix", source="manual",
            session_id="meanwhile", adapter_id=adapter_id,
        )  # fmt: skip
        registered.append(record)
        lose_directory(other, record)

    try:
        with (
            at_core_call("OpenedWeights.stage", register_meanwhile) as ran,
            pytest.raises(AdapterAlreadyExistsError, match=f"adapter {adapter_id} already exists"),
        ):
            registry.store(
                lora_bytes(seed=2), config=lora_config(), task_type="bug-fix", source="manual",
                session_id="late", adapter_id=adapter_id,
            )  # fmt: skip
        assert ran == ["OpenedWeights.stage"] and len(registered) == 1
        assert registered[0].session_id == "meanwhile"
        assert_still_missing(registry, registered[0])
        assert rows(registry) == 1
    finally:
        other.close()

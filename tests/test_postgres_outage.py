"""A PostgreSQL server that is down, or goes away in the middle of a store (issue 7): a clear
error, no half state, and once the server is back recover() registers what was published."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter_registry import AdapterRegistry, AdapterStorageError
from adapter_registry._lora_files import lora_of_size

from postgres import PostgresServer

ARGS = {"task_type": "bug-fix", "source": "manual", "session_id": "outage"}


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    with PostgresServer() as own:  # its own server: these tests stop it
        yield own


def test_a_server_that_is_down_is_a_clear_error_and_nothing_is_written(
    server: PostgresServer, tmp_path: Path
) -> None:
    url = server.create_database("outage")
    registry = AdapterRegistry(root=tmp_path / "adapters", db_url=url, connect_timeout=2)
    weights, config = lora_of_size(64 << 10)
    registry.store(weights, config=config, **ARGS)
    server.stop()
    # a store without an id is named by its input (no id exists until the publish)
    with pytest.raises(AdapterStorageError, match=r"^adapter from bytes: database .*"):
        registry.store(weights, config=config, **ARGS)
    assert len([e for e in os.listdir(registry.root) if not e.startswith(".")]) == 1
    assert os.listdir(registry.root / ".staging") == []
    with pytest.raises(AdapterStorageError, match="database"):
        AdapterRegistry(root=tmp_path / "adapters", db_url=url, connect_timeout=2)
    server.start()
    assert len(registry.list_all()) == 1  # the pool reconnects once the server is back
    registry.store(weights, config=config, **ARGS)
    assert len(registry.list_all()) == 2
    registry.close()


def test_a_server_lost_mid_store_is_rolled_forward_by_recover(
    server: PostgresServer, tmp_path: Path
) -> None:
    url = server.create_database("midstore")
    registry = AdapterRegistry(root=tmp_path / "adapters", db_url=url, connect_timeout=2)
    source = tmp_path / "big.safetensors"
    weights, config = lora_of_size(192 << 20)
    source.write_bytes(weights)
    del weights
    outcome: list[BaseException | str] = []

    def store() -> None:
        try:
            outcome.append(registry.store(source, config=config, **ARGS).id)
        except BaseException as err:
            outcome.append(err)

    storing = threading.Thread(target=store)
    storing.start()
    staging = registry.root / ".staging"
    deadline = time.monotonic() + 120  # a limit for a hang, not a timed assert
    while not (staging.exists() and os.listdir(staging)):  # the copy has begun
        assert storing.is_alive() and time.monotonic() < deadline, f"no copy began: {outcome}"
        time.sleep(0.001)
    server.stop(mode="immediate")  # the server goes away while the bytes are still copied
    storing.join(timeout=300)
    assert not storing.is_alive(), "the store never returned once the server was gone"
    (err,) = outcome
    assert isinstance(err, AdapterStorageError), err
    assert "was published" in str(err) and "recover() registers it" in str(err)
    (published,) = [e for e in os.listdir(registry.root) if not e.startswith(".")]
    assert f"adapter {published} was published at {registry.root / published}" in str(err)
    assert os.listdir(staging) == []

    server.start()
    report = registry.recover()
    assert report.rolled_forward == [published] and report.clean
    assert registry.retrieve_by_id(published).file_size_bytes == source.stat().st_size
    assert registry.verify(published).ok
    registry.close()

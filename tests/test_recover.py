"""recover(): after a crash at any step there is never a row without its files; a publish
whose insert never happened is rolled forward, and a dead store's staging is cleared."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import (
    AdapterAlreadyExistsError,
    AdapterRecord,
    AdapterRegistry,
    AdapterStorageError,
    _core,
)
from adapter_registry._lora_files import lora_bytes, lora_config

from conftest import rows
from workers import open_registry, recover_until, store_in_child, store_many


def crash_store(registry: AdapterRegistry, adapter_id: str, step: str) -> None:
    """A store of `adapter_id` killed at `step`, on this registry's own backend."""
    done = store_in_child(registry.root, registry.db_url, adapter_id, step)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr


def store_again(registry: AdapterRegistry, adapter_id: str) -> AdapterRecord:
    """The retry a restarted agent would make: the same adapter under the same id."""
    return registry.store(
        lora_bytes(seed=7), config=lora_config(), task_type="bug-fix", source="manual",
        session_id="retry", adapter_id=adapter_id,
    )  # fmt: skip


def staging(registry: AdapterRegistry) -> list[str]:
    return os.listdir(registry.root / ".staging")


def test_a_publish_whose_insert_never_happened_is_rolled_forward(registry: AdapterRegistry) -> None:
    adapter_id = str(uuid.uuid4())
    crash_store(registry, adapter_id, "published")
    assert (registry.root / adapter_id / "adapter.safetensors").exists()
    assert rows(registry) == 0
    report = registry.recover()
    assert report.rolled_forward == [adapter_id] and report.clean
    record = registry.retrieve_by_id(adapter_id)
    written = json.loads((registry.root / adapter_id / ".record.json").read_bytes())
    assert record.to_dict() == {**written, "is_archived": bool(written["is_archived"])}
    assert record.session_id == "crashing" and record.training_task_hash == "t"
    assert registry.verify(adapter_id).ok
    with pytest.raises(AdapterAlreadyExistsError):
        store_again(registry, adapter_id)
    assert registry.recover().rolled_forward == []


def test_recover_reads_the_record_of_an_earlier_or_later_release(registry: AdapterRegistry) -> None:
    """A record written before a column existed takes the column's default; a key a later
    release added is ignored; a record without a column that has no default is refused."""
    adapter_id = str(uuid.uuid4())
    crash_store(registry, adapter_id, "published")
    record_file = registry.root / adapter_id / _core.RECORD_FILE
    written = json.loads(record_file.read_bytes())
    older = {k: v for k, v in written.items() if k not in ("agent_id", "generation")}
    broken = {k: v for k, v in older.items() if k != "file_hash"}
    record_file.chmod(0o644)
    record_file.write_text(json.dumps(broken))
    [(name, why)] = registry.recover().unregistered
    assert name == adapter_id and "file_hash" in why
    record_file.write_text(json.dumps({**older, "a_later_column": [1, 2]}))
    assert registry.recover().rolled_forward == [adapter_id]
    record = registry.retrieve_by_id(adapter_id)
    assert (record.agent_id, record.generation) == (None, 0)
    assert record.training_task_hash == written["training_task_hash"] == "t"


def test_a_crash_after_staging_leaves_nothing_visible_and_is_swept(
    registry: AdapterRegistry,
) -> None:
    adapter_id = str(uuid.uuid4())
    crash_store(registry, adapter_id, "staged")
    assert len(staging(registry)) == 1 and staging(registry)[0].startswith(adapter_id)
    assert not (registry.root / adapter_id).exists() and rows(registry) == 0
    report = registry.recover()
    [removed] = report.removed_staging
    assert removed.startswith(adapter_id) and report.clean
    assert staging(registry) == []
    record = store_again(registry, adapter_id)
    assert registry.retrieve_by_id(adapter_id) == record


def test_recover_leaves_a_live_store_alone(registry: AdapterRegistry) -> None:
    live = _core.stage(str(registry.root), "live", lora_bytes(), b"{}")
    report = registry.recover()
    assert report.removed_staging == [] and os.path.isdir(live.path)
    live.discard()
    assert staging(registry) == []


def test_a_tampered_unregistered_directory_is_reported_not_registered(
    registry: AdapterRegistry,
) -> None:
    adapter_id = str(uuid.uuid4())
    crash_store(registry, adapter_id, "published")
    weights = registry.root / adapter_id / "adapter.safetensors"
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    report = registry.recover()
    assert report.rolled_forward == []
    [(name, why)] = report.unregistered
    assert name == adapter_id and "adapter.safetensors does not match its record" in why
    assert weights.read_bytes() == bytes(data), "recover never changes an adapter's files"
    assert rows(registry) == 0


def test_recover_clears_empty_claims_and_reports_strangers_and_missing_files(
    store_one: Any, registry: AdapterRegistry
) -> None:
    claim = str(uuid.uuid4())
    (registry.root / claim).mkdir()
    (registry.root / "not-an-adapter").mkdir()
    (registry.root / "stray-file").write_bytes(b"x")
    gone = store_one(seed=1)
    kept = store_one(seed=2)
    Path(gone.file_path).unlink()
    report = registry.recover()
    assert report.removed_claims == [claim] and not (registry.root / claim).exists()
    assert report.unregistered == [
        ("not-an-adapter", "not an adapter id"),
        ("stray-file", "not a directory"),
    ]
    assert report.missing == [gone.id]
    assert not report.clean
    assert registry.verify(kept.id).ok
    assert registry.verify(gone.id).status == "missing"


@pytest.mark.parametrize(
    "change", [{"pass_rate": 5.0}, {"task_type": "Not Kebab"}, {"file_size_bytes": "many"}]
)
def test_a_record_file_with_bad_fields_is_reported_not_registered(
    registry: AdapterRegistry, change: dict[str, Any]
) -> None:
    adapter_id = str(uuid.uuid4())
    crash_store(registry, adapter_id, "published")
    record_file = registry.root / adapter_id / ".record.json"
    record_file.chmod(0o644)
    record_file.write_text(json.dumps({**json.loads(record_file.read_bytes()), **change}))
    [(name, why)] = registry.recover().unregistered
    assert name == adapter_id and why.startswith("no valid .record.json")
    assert rows(registry) == 0


def test_recover_running_beside_live_stores_breaks_none_of_them(tmp_path: Path) -> None:
    open_registry(str(tmp_path)).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(5) as pool:
        stop = manager.Event()
        sweepers = [pool.apply_async(recover_until, (str(tmp_path), stop)) for _ in range(2)]
        stored = pool.starmap(store_many, [(str(tmp_path), w, 15) for w in range(3)])
        stop.set()
        calls = [s.get(timeout=60) for s in sweepers]
    assert all(c > 0 for c in calls)
    registry = open_registry(str(tmp_path))
    assert sorted(r.id for r in registry.list_all()) == sorted(i for ids in stored for i in ids)
    report = registry.recover()
    assert report.clean and report.rolled_forward == [] and report.removed_staging == []
    assert all(r.ok for r in registry.verify_all())
    registry.close()


def test_a_symlinked_staging_directory_is_refused_not_followed(
    registry: AdapterRegistry, store_one: Any, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    (victim / "important").mkdir(parents=True)
    (registry.root / ".staging").symlink_to(victim)
    with pytest.raises(AdapterStorageError, match=r"\.staging"):
        registry.recover()
    with pytest.raises(AdapterStorageError, match=r"\.staging"):
        store_one()
    assert os.listdir(victim) == ["important"] and rows(registry) == 0


def test_a_copy_of_an_adapter_under_another_id_is_reported_not_registered(
    store_one: Any, registry: AdapterRegistry
) -> None:
    """Its .record.json describes the original: registering it would give a second id the
    first one's row, and ignoring it would leave an adapter nobody can verify."""
    original = store_one(seed=1)
    copy_id = str(uuid.uuid4())
    shutil.copytree(registry.root / original.id, registry.root / copy_id)
    report = registry.recover()
    assert report.unregistered == [
        (copy_id, f"{_core.RECORD_FILE} describes another adapter ({original.id})")
    ]
    assert not report.clean and report.rolled_forward == [] and report.missing == []
    assert [r.id for r in registry.list_all()] == [original.id]
    assert sorted(os.listdir(registry.root / copy_id)) == sorted(
        os.listdir(registry.root / original.id)
    ), "recover never changes or removes a directory it cannot register"
    # the record names the right id but another directory's path: refused the same way
    moved = json.loads((registry.root / copy_id / _core.RECORD_FILE).read_bytes())
    record_file = registry.root / copy_id / _core.RECORD_FILE
    record_file.chmod(0o644)
    record_file.write_text(json.dumps({**moved, "id": copy_id}))
    [(name, why)] = registry.recover().unregistered
    assert name == copy_id
    assert why == f"{_core.RECORD_FILE} names another adapter's file ({moved['file_path']})"
    assert rows(registry) == 1

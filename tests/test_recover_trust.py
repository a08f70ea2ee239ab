"""recover() trusts nothing it finds (issue 12, item 2): a directory planted under the root,
with correct hashes and a record that lies, is refused with a one-line reason by the same rules
store() applies; one bad entry never stops the others; parents are registered before their
children. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRecord, AdapterRegistry, _core
from adapter_registry._lora_files import lora_bytes, lora_config


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[AdapterRegistry]:
    """Another registry, where the adapters to plant are made by a real store()."""
    other = AdapterRegistry(root=tmp_path / "elsewhere", db_url=f"sqlite:///{tmp_path}/e.db")
    yield other
    other.close()


def plant(
    registry: AdapterRegistry, source: AdapterRecord, **changes: Any
) -> tuple[str, dict[str, Any]]:
    """Copy a stored adapter's files under ``registry``'s root, sealed and linked as a publish
    leaves them, with a record that says what ``changes`` say. Returns its id and record."""
    adapter_id = changes.pop("id", source.id)
    record = {**source.to_dict(), "id": adapter_id, **changes}
    target = registry.root / adapter_id
    record["file_path"] = str(target / _core.WEIGHTS_FILE)
    target.mkdir()
    origin = Path(source.file_path).parent
    for name in (_core.WEIGHTS_FILE, _core.CONFIG_FILE):
        shutil.copyfile(origin / name, target / name)
        (target / name).chmod(0o444)
    os.link(target / _core.WEIGHTS_FILE, target / _core.PEFT_WEIGHTS_FILE)
    (target / _core.RECORD_FILE).write_text(json.dumps(record))
    return adapter_id, record


def _store(registry: AdapterRegistry, seed: int = 0, **kwargs: Any) -> AdapterRecord:
    return registry.store(lora_bytes(seed=seed), config=lora_config(), task_type="bug-fix",
                          source="manual", session_id="s", **kwargs)  # fmt: skip


LIES: dict[str, tuple[Callable[[AdapterRecord], dict[str, Any]], str]] = {
    "rank 999": (lambda r: {"rank": 999}, "rank 999 is not the config's r 4"),
    "version 0": (lambda r: {"version": 0}, "version 0 must be an integer from 1"),
    "version -3": (lambda r: {"version": -3}, "version -3 must be"),
    "version 2**70": (lambda r: {"version": 2**70}, "must be an integer from 1 to 2**63 - 1"),
    "generation -1": (lambda r: {"generation": -1}, "generation -1 must be"),
    "a parent that does not exist": (
        lambda r: {"parent_ids": json.dumps([str(uuid.uuid4())])},
        "is not registered",
    ),
    "a NUL in session_id": (lambda r: {"session_id": "a\x00b"}, "session_id"),
    "an impossible created_at": (
        lambda r: {"created_at": "2026-13-45T00:00:00.000000+00:00"},
        "created_at",
    ),
    "a created_at in the future": (
        lambda r: {"created_at": "2999-01-01T00:00:00.000000+00:00"},
        "in the future",
    ),
    "an upper-case hash": (
        lambda r: {"file_hash": r.file_hash.upper()},
        "file_hash is not a lower-case hex SHA-256",
    ),
    "pass_rate 7": (lambda r: {"pass_rate": 7.0}, "pass_rate 7.0 is outside 0..1"),
    "another base model's text with ESC": (
        lambda r: {"base_model_id": "x\x1b[2J"},
        "base_model_id",
    ),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_planted_record_that_lies_is_refused_and_never_ranks(
    registry: AdapterRegistry, elsewhere: AdapterRegistry, lie: str
) -> None:
    change, reason = LIES[lie]
    source = _store(elsewhere, fitness_score=0.99)
    honest = _store(registry, seed=1, fitness_score=0.5)
    adapter_id, _ = plant(registry, source, **change(source))
    report = registry.recover()
    [(name, why)] = report.unregistered
    assert name == adapter_id and reason in why, why
    assert "\n" not in why
    assert report.rolled_forward == [] and not report.clean
    assert [r.id for r in registry.list_all()] == [honest.id]
    assert registry.query_best_for_task("bug-fix").id == honest.id


def test_one_bad_entry_never_stops_the_others(
    registry: AdapterRegistry, elsewhere: AdapterRegistry
) -> None:
    good = _store(elsewhere, seed=1)
    bad = _store(elsewhere, seed=2)
    (registry.root / "lost+found").mkdir()
    (registry.root / "lost+found" / "x").write_text("fsck left this")
    bad_id, _ = plant(registry, bad, version=2**70)
    good_id, _ = plant(registry, good)
    (registry.root / str(uuid.uuid4())).mkdir()  # an empty claim, removed
    record_less = registry.root / str(uuid.uuid4())
    record_less.mkdir()
    (record_less / _core.RECORD_FILE).symlink_to("/etc/passwd")
    report = registry.recover()
    assert report.rolled_forward == [good_id]
    reasons = dict(report.unregistered)
    assert reasons["lost+found"] == "not an adapter id"
    assert "version" in reasons[bad_id]
    assert reasons[record_less.name].startswith(f"no valid {_core.RECORD_FILE}")
    assert len(report.removed_claims) == 1
    assert registry.verify(good_id).ok


def test_parents_are_registered_before_their_children(
    registry: AdapterRegistry, elsewhere: AdapterRegistry
) -> None:
    # Ids chosen so that the child sorts first: a single pass in name order would refuse it.
    parent = _store(elsewhere, seed=1, adapter_id="ffffffff-0000-4000-8000-000000000000")
    child = _store(elsewhere, seed=2, adapter_id="00000000-0000-4000-8000-000000000000",
                   parent_ids=[parent.id])  # fmt: skip
    grandchild = _store(elsewhere, seed=3, parent_ids=[child.id])
    for record in (grandchild, child, parent):
        plant(registry, record)
    report = registry.recover()
    assert report.clean, report
    assert sorted(report.rolled_forward) == sorted([parent.id, child.id, grandchild.id])
    assert [r.id for r in registry.lineage(grandchild.id)] == [child.id, parent.id]
    assert registry.retrieve_by_id(grandchild.id).generation == 2


def test_a_child_that_claims_a_version_below_its_parents_is_refused(
    registry: AdapterRegistry, elsewhere: AdapterRegistry
) -> None:
    parent = _store(elsewhere, seed=1, version=5)
    child = _store(elsewhere, seed=2, parent_ids=[parent.id])
    plant(registry, parent)
    child_id, _ = plant(registry, child, version=3)
    report = registry.recover()
    assert report.rolled_forward == [parent.id]
    [(name, why)] = report.unregistered
    assert name == child_id and "must exceed its parents' highest version 5" in why

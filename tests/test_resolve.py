"""registry.resolve (issue 15): a name (an id, an alias, best:<task>) to a verified adapter and
its content id, on SQLite and on PostgreSQL. The files are checked before the directory is
handed out; another base model is refused; lora_int_id comes from the content alone, the same
in every process, and a collision with another content of the registry is refused."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import (
    AdapterNotFoundError,
    AdapterRegistry,
    IntegrityError,
    InvalidAdapterError,
    LoraIdCollisionError,
    ServedAdapter,
)
from adapter_registry import serving as serving_module
from adapter_registry._lora_files import lora_bytes, lora_config
from adapter_registry.serving import lora_int_id

from conftest import assert_nothing_written, entries, rows

OTHER_BASE = "meta-llama/Llama-3.2-1B"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_serves(served: ServedAdapter, registry: AdapterRegistry, adapter_id: str) -> None:
    """The adapter handed out is the record's, and its directory holds the record's bytes, as
    vLLM's and PEFT's loaders read them."""
    record = registry.retrieve_by_id(adapter_id)
    assert served.id == record.id
    assert served.directory == registry.root / record.id
    assert sha256(served.directory / "adapter_model.safetensors") == record.file_hash
    assert sha256(served.directory / "adapter_config.json") == record.config_hash
    assert (served.file_hash, served.config_hash) == (record.file_hash, record.config_hash)
    assert (served.base_model_id, served.rank) == (record.base_model_id, record.rank)
    assert served.lora_int_id == lora_int_id(record.file_hash, record.config_hash)


def test_an_id_an_alias_and_best_resolve_to_the_adapter(
    store_one: Any, registry: AdapterRegistry
) -> None:
    low = store_one(seed=1, fitness_score=0.2)
    high = store_one(seed=2, fitness_score=0.9)
    other_base = store_one(seed=3, fitness_score=0.95, base_model_id=OTHER_BASE)
    registry.set_alias("production", low.id)
    for name, expected in (
        (low.id, low.id), ("production", low.id), ("best:bug-fix", other_base.id),
    ):  # fmt: skip
        served = registry.resolve(name)
        assert served.name == name
        assert_serves(served, registry, expected)
    # best: of a base model is the best of that base model's adapters
    best = registry.resolve("best:bug-fix", base_model_id=high.base_model_id)
    assert_serves(best, registry, high.id)
    assert best.to_dict() == {
        "id": high.id, "name": "best:bug-fix", "directory": str(registry.root / high.id),
        "file_hash": high.file_hash, "config_hash": high.config_hash,
        "base_model_id": high.base_model_id, "rank": high.rank, "lora_int_id": best.lora_int_id,
    }  # fmt: skip


def test_a_moved_alias_resolves_to_its_new_adapter(
    store_one: Any, registry: AdapterRegistry
) -> None:
    first, second = store_one(seed=1), store_one(seed=2)
    registry.set_alias("production", first.id)
    before = registry.resolve("production")
    registry.set_alias("production", second.id)
    after = registry.resolve("production")
    assert (before.id, after.id) == (first.id, second.id)
    assert before.lora_int_id != after.lora_int_id  # new content, new id: no stale cache entry


def test_unknown_names_are_not_found_and_prefixes_are_not_names(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one(seed=1)  # not evaluated: no best
    unregistered = "0f0f0f0f-0000-4000-8000-000000000000"
    for name in (unregistered, "nightly", record.id[:8], record.id[:13], "best:bug-fix",
                 "best:refactor"):  # fmt: skip
        with pytest.raises(AdapterNotFoundError) as caught:
            registry.resolve(name)
        assert name in str(caught.value)
    for bad in ("best:Bug Fix", "best:"):
        with pytest.raises(InvalidAdapterError, match="task_type"):
            registry.resolve(bad)
    with pytest.raises(InvalidAdapterError, match="not a string"):
        registry.resolve(None)  # type: ignore[arg-type]


def test_another_base_model_is_refused(store_one: Any, registry: AdapterRegistry) -> None:
    record = store_one(seed=1, fitness_score=0.5)
    registry.set_alias("production", record.id)
    for name in (record.id, "production"):
        with pytest.raises(InvalidAdapterError) as caught:
            registry.resolve(name, base_model_id=OTHER_BASE)
        message = str(caught.value)
        assert record.id in message and OTHER_BASE in message and record.base_model_id in message
    with pytest.raises(AdapterNotFoundError, match=OTHER_BASE):  # no adapter of that base
        registry.resolve("best:bug-fix", base_model_id=OTHER_BASE)
    assert registry.resolve(record.id, base_model_id=record.base_model_id).id == record.id


def test_altered_or_missing_files_are_an_integrity_error_and_nothing_is_written(
    store_one: Any, registry: AdapterRegistry
) -> None:
    altered, missing, sound = store_one(seed=1), store_one(seed=2), store_one(seed=3)
    registry.set_alias("production", altered.id)
    weights = Path(altered.file_path)
    os.chmod(weights, 0o644)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    (registry.root / missing.id / "adapter_config.json").unlink()
    before_rows, before = rows(registry), entries(registry)
    for name, adapter_id in ((altered.id, altered.id), ("production", altered.id),
                             (missing.id, missing.id)):  # fmt: skip
        with pytest.raises(IntegrityError) as caught:
            registry.resolve(name)
        assert adapter_id in str(caught.value)
    with pytest.raises(IntegrityError, match=r"adapter_config\.json"):
        registry.resolve(missing.id)
    assert_nothing_written(registry, before_rows, before)
    assert registry.resolve(sound.id).id == sound.id  # the others still serve


def test_lora_int_id_is_a_positive_63_bit_content_id() -> None:
    # Pinned: replicas and caches of different releases must agree on it.
    assert lora_int_id("00" * 32, "11" * 32) == int.from_bytes(
        hashlib.sha256(
            b"adapter-registry lora_int_id v1\x00" + b"00" * 32 + b"\x00" + b"11" * 32
        ).digest()[:8],
        "big",
    ) & (2**63 - 1)
    ids = {lora_int_id(f"{i:064x}", f"{j:064x}") for i in range(50) for j in range(4)}
    assert len(ids) == 200
    assert all(1 <= i < 2**63 for i in ids)
    assert lora_int_id("ab" * 32, "cd" * 32) != lora_int_id("cd" * 32, "ab" * 32)


SCRIPT = """
import sys
from adapter_registry import AdapterRegistry
with AdapterRegistry(root=sys.argv[1], db_url=sys.argv[2], create=False) as registry:
    print(registry.resolve(sys.argv[3]).lora_int_id)
"""


def test_lora_int_id_is_the_same_in_another_process(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one(seed=4)
    registry.set_alias("staging", record.id)
    here = registry.resolve("staging").lora_int_id
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    for name in (record.id, "staging"):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(registry.root), registry.db_url, name],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) == here


def test_the_same_content_twice_shares_its_id_and_is_no_collision(
    registry: AdapterRegistry,
) -> None:
    common = {"config": lora_config(), "task_type": "bug-fix", "source": "manual",
              "session_id": "s"}  # fmt: skip
    one = registry.store(lora_bytes(seed=7), **common)
    two = registry.store(lora_bytes(seed=7), **common)
    assert registry.resolve(one.id).lora_int_id == registry.resolve(two.id).lora_int_id


def test_a_collision_with_another_content_is_refused_naming_both(
    store_one: Any, registry: AdapterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 63 bits never collide in a test: the derivation is narrowed to a constant, as if they had.
    monkeypatch.setattr(serving_module, "lora_int_id", lambda file_hash, config_hash: 1)
    first = store_one(seed=1)
    assert registry.resolve(first.id).lora_int_id == 1  # alone: nothing to collide with
    registry.archive(first.id)  # archived adapters count: they may still be served by id
    second = store_one(seed=2)  # stored after the check above: found all the same
    for resolved, other in ((second, first), (first, second)):
        with pytest.raises(LoraIdCollisionError) as caught:
            registry.resolve(resolved.id)
        message = str(caught.value)
        assert message.startswith(f"adapter {resolved.id}: lora_int_id 1 is also that of")
        assert other.id in message


def test_an_archived_adapter_is_served_by_its_id_only(
    store_one: Any, registry: AdapterRegistry
) -> None:
    retired, live = store_one(seed=1, fitness_score=0.9), store_one(seed=2, fitness_score=0.1)
    registry.archive(retired.id)
    assert_serves(registry.resolve(retired.id), registry, retired.id)
    assert registry.resolve("best:bug-fix").id == live.id  # best: skips it

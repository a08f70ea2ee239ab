"""store(): the one write path. What it writes, what it derives, and what it refuses."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import (
    AdapterAlreadyExistsError,
    AdapterRegistry,
    InvalidAdapterError,
)
from adapter_registry._lora_files import (
    BASE_MODEL,
    lora_bytes,
    lora_config,
    lora_tensors,
    peft_dir,
    safetensors_bytes,
)

from conftest import assert_nothing_written, entries, rows


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_store_from_a_peft_directory_lays_out_a_sealed_adapter(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    src = peft_dir(tmp_path / "src", r=4, seed=1)
    record = registry.store(src, task_type="bug-fix", source="distillation", session_id="s")
    directory = registry.root / record.id
    assert sorted(os.listdir(directory)) == [
        ".record.json",
        "adapter.safetensors",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    weights = (src / "adapter_model.safetensors").read_bytes()
    config = (src / "adapter_config.json").read_bytes()
    assert (directory / "adapter.safetensors").read_bytes() == weights
    assert (directory / "adapter_config.json").read_bytes() == config, "config stored as given"
    assert os.path.samefile(
        directory / "adapter.safetensors", directory / "adapter_model.safetensors"
    )
    for name in ("adapter.safetensors", "adapter_config.json", ".record.json"):
        assert stat.S_IMODE(os.stat(directory / name).st_mode) == 0o444
    assert record.file_path == str(directory / "adapter.safetensors")
    assert record.file_hash == sha256(weights)
    assert record.file_size_bytes == len(weights)
    assert record.config_hash == sha256(config)
    assert os.listdir(registry.root / ".staging") == []


def test_the_registry_sets_the_derived_fields(registry: AdapterRegistry) -> None:
    before = datetime.now(timezone.utc)
    record = registry.store(
        lora_bytes(r=8),
        config=lora_config(r=8),
        task_type="feature-impl",
        source="manual",
        session_id="s",
        agent_id="agent-7",
        training_task_hash="t1",
    )
    assert uuid.UUID(record.id).version == 4
    created = datetime.fromisoformat(record.created_at)
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0
    assert before <= created <= datetime.now(timezone.utc)
    assert (record.rank, record.version, record.generation) == (8, 1, 0)
    assert record.base_model_id == BASE_MODEL
    assert (record.pass_rate, record.fitness_score, record.is_archived) == (None, None, False)
    assert record.parent_ids == "[]" and record.parents == []
    assert registry.retrieve_by_id(record.id) == record


def test_store_from_a_file_with_a_config_path(registry: AdapterRegistry, tmp_path: Path) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(lora_bytes())
    config = tmp_path / "c.json"
    config.write_text(json.dumps(lora_config()))
    record = registry.store(
        weights,
        config=config,
        task_type="bug-fix",
        source="manual",
        session_id="s",
        base_model_id="org/other-model",
        adapter_id="a1b2c3d4-e5f6-4890-abcd-ef1234567890",
    )
    assert record.id == "a1b2c3d4-e5f6-4890-abcd-ef1234567890"
    assert record.base_model_id == "org/other-model", "an explicit base_model_id wins"
    assert (registry.root / record.id / "adapter_config.json").read_bytes() == config.read_bytes()


def test_versions_and_generations_follow_the_parents(store_one: Any) -> None:
    a = store_one(seed=1)
    b = store_one(seed=2, version=3, generation=5)
    child = store_one(seed=3, source="evolution", parent_ids=[a.id, b.id])
    assert (child.version, child.generation) == (4, 6)
    assert child.parents == [a.id, b.id]
    grandchild = store_one(seed=4, source="evolution", parent_ids=[child.id])
    assert (grandchild.version, grandchild.generation) == (5, 7)


def test_rank_pattern_is_honoured(store_one: Any, registry: AdapterRegistry) -> None:
    ranks = {"0.self_attn.q_proj": 8}
    config = lora_config(r=4, rank_pattern={"model.layers.0.self_attn.q_proj": 8})
    record = registry.store(
        lora_bytes(r=4, ranks=ranks),
        config=config,
        task_type="bug-fix",
        source="manual",
        session_id="s",
    )
    assert record.rank == 4
    with pytest.raises(InvalidAdapterError, match=r"q_proj.*rank 4"):
        registry.store(
            lora_bytes(r=4, ranks=ranks),
            config=lora_config(r=4),
            task_type="bug-fix",
            source="manual",
            session_id="s",
        )


def test_the_same_id_twice_is_refused_and_the_first_kept(
    store_one: Any, registry: AdapterRegistry
) -> None:
    first = store_one(seed=1)
    before = (registry.root / first.id / "adapter.safetensors").read_bytes()
    with pytest.raises(AdapterAlreadyExistsError, match=first.id):
        store_one(seed=2, adapter_id=first.id)
    assert (registry.root / first.id / "adapter.safetensors").read_bytes() == before
    assert registry.retrieve_by_id(first.id) == first
    assert rows(registry) == 1 and os.listdir(registry.root / ".staging") == []


def test_an_existing_directory_without_a_row_is_refused(
    store_one: Any, registry: AdapterRegistry
) -> None:
    taken = "0f0e0d0c-0b0a-4908-8706-050403020100"
    (registry.root / taken).mkdir()
    (registry.root / taken / "keep").write_bytes(b"mine")
    before_rows, before = rows(registry), entries(registry)
    with pytest.raises(AdapterAlreadyExistsError, match=taken):
        store_one(adapter_id=taken)
    assert os.listdir(registry.root / taken) == ["keep"]
    assert_nothing_written(registry, before_rows, before)  # no row, directory or staging


def _malformed_safetensors() -> dict[str, bytes]:
    good = lora_bytes()
    n = int.from_bytes(good[:8], "little")
    header = json.loads(good[8 : 8 + n])
    data = good[8 + n :]

    def build(h: Any, body: bytes = data, raw: bytes | None = None) -> bytes:
        text = raw if raw is not None else json.dumps(h).encode()
        text += b" " * (-len(text) % 8)
        return len(text).to_bytes(8, "little") + text + body

    name = next(k for k in header if k != "__metadata__")
    out = {
        "empty file": b"",
        "shorter than the length prefix": good[:5],
        "header length past the end": (10**6).to_bytes(8, "little") + b"{}",
        "header length 2^63": (1 << 63).to_bytes(8, "little") + good[8:],
        "truncated data": good[:-1],
        "trailing bytes": good + b"\0",
        "not utf-8": build(None, raw=b'{"\xff":1}'),
        "not an object": build([1, 2]),
        "leading whitespace": build(None, raw=b" " + json.dumps(header).encode()),
        "non-space padding": build(None, raw=json.dumps(header).encode() + b"\n"),
        "unknown dtype": build({**header, name: {**header[name], "dtype": "F33"}}),
        "wrong byte length": build({**header, name: {**header[name], "shape": [1, 1]}}),
        "end before begin": build(
            {**header, name: {**header[name], "data_offsets": header[name]["data_offsets"][::-1]}}
        ),
        "unknown field": build({**header, name: {**header[name], "extra": 1}}),
        "entry not an object": build({**header, name: [1]}),
        "null metadata": build({**header, "__metadata__": None}),
        "non-string metadata": build({**header, "__metadata__": {"k": 1}}),
        "empty tensor name": build(
            {**{k: v for k, v in header.items() if k != name}, "": header[name]}
        ),
        "overflowing shape": build({**header, name: {**header[name], "shape": [2**40, 2**40]}}),
    }
    first, second = sorted(
        (k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"]
    )[:2]
    begin, end = header[second]["data_offsets"]
    out["gap between tensors"] = build(
        {**header, second: {**header[second], "data_offsets": [begin + 4, end + 4]}},
        data + bytes(4),
    )
    out["overlapping tensors"] = build(
        {**header, second: {**header[second], "data_offsets": [begin - 4, end - 4]}}, data[:-4]
    )
    out["NUL in a tensor name"] = build(
        {**{k: v for k, v in header.items() if k != first}, first + "\u0000x": header[first]}
    )
    text = json.dumps(header)
    dup = text[:-1] + ", " + json.dumps(name) + ": " + json.dumps(header[name]) + "}"
    out["duplicate tensor name"] = build(None, raw=dup.encode())
    meta_dup = text.replace('"__metadata__": {', '"__metadata__": {"format": "x", ', 1)
    out["duplicate metadata key"] = build(None, raw=meta_dup.encode())
    return out


MALFORMED = _malformed_safetensors()


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_safetensors_are_rejected_with_nothing_written(
    registry: AdapterRegistry, store_one: Any, kind: str
) -> None:
    store_one(seed=9)  # something already there, which must stay as it is
    before_rows, before = rows(registry), entries(registry)
    adapter_id = str(uuid.uuid4())
    with pytest.raises(InvalidAdapterError, match=f"adapter {adapter_id}: .*safetensors") as caught:
        registry.store(
            MALFORMED[kind],
            config=lora_config(),
            task_type="bug-fix",
            source="manual",
            session_id="s",
            adapter_id=adapter_id,
        )
    assert "<bytes>" in str(caught.value)
    assert_nothing_written(registry, before_rows, before)
    assert os.listdir(registry.root / ".staging") == []


def _bad_calls() -> dict[str, tuple[dict[str, Any], str]]:
    ok = lora_config()
    return {
        "non-uuid id": ({"adapter_id": "not-a-uuid"}, "not a canonical UUID v4"),
        "path-like id": ({"adapter_id": "../etc"}, "not a canonical UUID v4"),
        "uuid v1 id": ({"adapter_id": str(uuid.uuid1())}, "not a canonical UUID v4"),
        "upper-case id": ({"adapter_id": str(uuid.uuid4()).upper()}, "not a canonical UUID v4"),
        "bad task type": ({"task_type": "Bug Fix"}, "kebab-case"),
        "path task type": ({"task_type": "../x"}, "kebab-case"),
        "bad source": ({"source": "download"}, "source 'download'"),
        "empty session": ({"session_id": ""}, "session_id"),
        "pass_rate 1.5": ({"pass_rate": 1.5}, "pass_rate 1.5 is outside 0..1"),
        "pass_rate NaN": ({"pass_rate": float("nan")}, "pass_rate nan is not a finite"),
        "fitness inf": ({"fitness_score": float("inf")}, "fitness_score inf"),
        "fitness bool": ({"fitness_score": True}, "fitness_score True"),
        "missing parent": (
            {"parent_ids": ["11111111-2222-4333-8444-555555555555"]},
            "is not registered",
        ),
        "parent as a string": ({"parent_ids": "11111111-2222-4333-8444-555555555555"}, "list"),
        "version 0": ({"version": 0}, "version 0"),
        "negative generation": ({"generation": -1}, "generation -1"),
        "no base model": (
            {"config": {k: v for k, v in ok.items() if k != "base_model_name_or_path"}},
            "no base_model_id",
        ),
        "rank disagrees": ({"config": lora_config(r=8)}, "rank 8"),
        "module not targeted": (
            {"config": lora_config(target_modules=["q_proj", "k_proj", "v_proj"])},
            "o_proj.*not in target_modules",
        ),
        "regex target misses": (
            {"config": lora_config(target_modules=r".*\.q_proj")},
            "not in target",
        ),
        "not a lora config": ({"config": lora_config(peft_type="IA3")}, "peft_type 'IA3'"),
        "r not an int": ({"config": lora_config(r="4")}, "r='4'"),
        "config not json": ({"config": "GARBAGE"}, "not valid JSON"),
        "config missing": ({"config": "/nonexistent/adapter_config.json"}, "does not exist"),
        "no lora tensors": ({"weights": b"\x02\x00\x00\x00\x00\x00\x00\x00{}"}, "no LoRA tensors"),
        "missing B": ({"weights": "drop-B"}, "has no lora_B"),
        "weights not a path": ({"weights": 42}, "weights must be a path or bytes"),
        "weights missing": (
            {"weights": "/nonexistent/x.safetensors"},
            r"/nonexistent/x\.safetensors does not exist",
        ),
        "invalid target regex": (
            {"config": lora_config(target_modules="(q_proj")},
            "invalid pattern",
        ),
        "invalid rank_pattern regex": (
            {"config": lora_config(rank_pattern={"(": 8})},
            "invalid pattern",
        ),
        "config is a fifo": ({"config": "FIFO"}, "not a regular file"),
    }


BAD_CALLS = _bad_calls()


@pytest.mark.parametrize("kind", sorted(BAD_CALLS))
def test_bad_input_raises_invalid_adapter_error_and_writes_nothing(
    registry: AdapterRegistry, store_one: Any, kind: str
) -> None:
    store_one(seed=9)
    before_rows, before = rows(registry), entries(registry)
    overrides, message = dict(BAD_CALLS[kind][0]), BAD_CALLS[kind][1]
    weights: Any = overrides.pop("weights", lora_bytes())
    call: dict[str, Any] = {
        "config": lora_config(),
        "task_type": "bug-fix",
        "source": "manual",
        "session_id": "s",
        "adapter_id": str(uuid.uuid4()),
    }
    call.update(overrides)
    if call["config"] == "FIFO":
        call["config"] = registry.root.parent / "config.fifo"
        os.mkfifo(call["config"])
    elif call["config"] == "GARBAGE":
        call["config"] = registry.root.parent / "config.json"
        call["config"].write_bytes(b"{not json")
    if weights == "drop-B":
        tensors = lora_tensors()
        del tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
        weights = safetensors_bytes(tensors)
    with pytest.raises(InvalidAdapterError, match=message) as caught:
        registry.store(weights, **call)
    assert str(caught.value).startswith(f"adapter {call['adapter_id']}: ")
    assert_nothing_written(registry, before_rows, before)


def test_a_directory_with_two_different_weight_files_is_refused(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    src = peft_dir(tmp_path / "src")
    (src / "adapter.safetensors").write_bytes(lora_bytes(seed=5))
    before_rows, before = rows(registry), entries(registry)
    with pytest.raises(InvalidAdapterError, match=r"both .* differ"):
        registry.store(src, task_type="bug-fix", source="manual", session_id="s")
    assert_nothing_written(registry, before_rows, before)  # no row, directory or staging


def test_a_published_directory_can_be_stored_again_under_a_new_id(
    store_one: Any, registry: AdapterRegistry
) -> None:
    first = store_one()
    again = registry.store(
        registry.root / first.id, task_type="bug-fix", source="manual", session_id="s"
    )
    assert again.file_hash == first.file_hash and again.id != first.id

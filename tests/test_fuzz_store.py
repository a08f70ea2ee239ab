"""Property tests of store() (issue 5): generated malformed safetensors, configs, ids, task
types and numbers each end in our typed error naming the adapter, with nothing written; what
store() accepts verifies. ADAPTER_REGISTRY_STRESS_SCALE=N runs N times the examples."""

from __future__ import annotations

import math
import os
import struct
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import lora_bytes, lora_config
from adapter_registry.errors import AdapterRegistryError

from conftest import entries, rows

SCALE = int(os.environ.get("ADAPTER_REGISTRY_STRESS_SCALE", "1"))
FUZZ = settings(
    max_examples=150 * SCALE,
    deadline=None,
    derandomize=True,  # the same examples on every CI run; raise the scale to explore more
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
VALID = lora_bytes(r=4, seed=0)
HEADER_END = 8 + struct.unpack("<Q", VALID[:8])[0]
ARGS: dict[str, Any] = {
    "config": lora_config(r=4),
    "task_type": "bug-fix",
    "source": "manual",
    "session_id": "fuzz",
}


@contextmanager
def scratch_registry() -> Iterator[AdapterRegistry]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        registry = AdapterRegistry(root=f"{tmp}/adapters", db_url=f"sqlite:///{tmp}/r.db")
        try:
            yield registry
        finally:
            registry.close()


@pytest.fixture(scope="module")
def registry() -> Iterator[AdapterRegistry]:
    with scratch_registry() as reg:
        yield reg


def store_or_refuse(registry: AdapterRegistry, weights: Any, **overrides: Any) -> str:
    """Store; on refusal, check the error and that nothing was written. Says which happened."""
    adapter_id = str(uuid.uuid4())
    kwargs = {**ARGS, "adapter_id": adapter_id, **overrides}
    before_rows, before = rows(registry), entries(registry)
    try:
        record = registry.store(weights, **kwargs)
    except AdapterRegistryError as err:
        named = kwargs["adapter_id"]  # the message names the adapter, or the bad id itself
        assert str(err).startswith((f"adapter {named}: ", f"adapter id {named!r}")), err
        assert rows(registry) == before_rows
        after = [e for e in entries(registry) if e != ".staging"]
        assert after == [e for e in before if e != ".staging"]
        return type(err).__name__
    assert registry.verify(record.id).ok
    return "stored"


@FUZZ
@given(
    at=st.integers(0, HEADER_END - 1),
    change=st.sampled_from(["flip", "cut", "insert", "length"]),
    value=st.integers(0, 255),
    length=st.one_of(st.just(1 << 63), st.integers(0, 2**64 - 1), st.integers(0, 4096)),
)
def test_malformed_safetensors(
    registry: AdapterRegistry, at: int, change: str, value: int, length: int
) -> None:
    data = bytearray(VALID)
    if change == "flip":
        data[at] ^= value or 1
    elif change == "cut":
        del data[at:]
    elif change == "insert":
        data[at:at] = bytes([value])
    else:
        data[:8] = struct.pack("<Q", length)
    outcome = store_or_refuse(registry, bytes(data))
    assert outcome in ("stored", "InvalidAdapterError")
    if change in ("cut", "insert"):  # the data no longer fits the header: always refused
        assert outcome == "InvalidAdapterError"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@FUZZ
@given(key=st.sampled_from(sorted(lora_config())), value=json_values, drop=st.booleans())
def test_malformed_configs(registry: AdapterRegistry, key: str, value: Any, drop: bool) -> None:
    config = lora_config(r=4)
    if drop:
        del config[key]
    else:
        config[key] = value
    outcome = store_or_refuse(registry, VALID, config=config)
    assert outcome in ("stored", "InvalidAdapterError")
    if key in ("peft_type", "r") and (drop or config[key] != lora_config(r=4)[key]):
        assert outcome == "InvalidAdapterError"  # not a rank-4 LoRA config: never accepted


@FUZZ
@given(config=json_values)
def test_configs_that_are_any_json_at_all(registry: AdapterRegistry, config: Any) -> None:
    outcome = store_or_refuse(registry, VALID, config=config if isinstance(config, dict) else {})
    assert outcome == "InvalidAdapterError"  # no peft_type LORA with r=4 comes out of this


@FUZZ
@given(
    adapter_id=st.one_of(st.text(max_size=40), st.uuids().map(str), st.uuids(version=4).map(str)),
    task_type=st.one_of(st.text(max_size=70), st.sampled_from(["bug-fix", "../x", "/etc", "a\0"])),
)
def test_ids_and_task_types(registry: AdapterRegistry, adapter_id: str, task_type: str) -> None:
    valid_id = adapter_id == str(uuid.UUID(adapter_id)) if _is_uuid4(adapter_id) else False
    taken = valid_id and any(r.id == adapter_id for r in registry.list_all())
    outcome = store_or_refuse(registry, VALID, adapter_id=adapter_id, task_type=task_type)
    if taken:  # an id drawn twice: written once, then refused
        assert outcome in ("AdapterAlreadyExistsError", "InvalidAdapterError")
    elif outcome == "stored":
        assert valid_id and task_type.replace("-", "").isalnum() and task_type.islower()
    else:
        assert outcome == "InvalidAdapterError"
        assert not valid_id or task_type != "bug-fix"
    assert not any(os.path.isabs(e) or e.startswith("..") for e in entries(registry))


def _is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


numbers = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70),
    st.booleans(), st.text(max_size=4),
)  # fmt: skip


@FUZZ
@given(pass_rate=numbers, fitness=numbers, version=numbers, generation=numbers)
@example(pass_rate=None, fitness=None, version=None, generation=2**63)  # found at scale 5
@example(pass_rate=None, fitness=None, version=2**63, generation=None)
@example(pass_rate=None, fitness=None, version=2**63 - 1, generation=2**63 - 1)
def test_numbers(
    registry: AdapterRegistry, pass_rate: Any, fitness: Any, version: Any, generation: Any
) -> None:
    outcome = store_or_refuse(
        registry, VALID, pass_rate=pass_rate, fitness_score=fitness, version=version,
        generation=generation,
    )  # fmt: skip
    good_rate = pass_rate is None or (_real(pass_rate) and 0 <= pass_rate <= 1)
    good_fitness = fitness is None or _real(fitness)
    good_version = version is None or (_integer(version) and 1 <= version < 2**63)
    good_generation = generation is None or (_integer(generation) and 0 <= generation < 2**63)
    expected_ok = good_rate and good_fitness and good_version and good_generation
    assert outcome == ("stored" if expected_ok else "InvalidAdapterError")


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def test_a_scratch_registry_starts_empty() -> None:
    with scratch_registry() as registry:
        assert rows(registry) == 0 and Path(registry.root).is_dir()

"""The whole input surface of store(), as a property (issue 12): any text, number or config
either stores and verifies, or raises our typed error naming the adapter with nothing written;
and recover() afterwards is clean. On SQLite and on PostgreSQL.

Strategies (``EXAMPLES`` examples per backend in CI, derandomized; the stress scale multiplies):
- ``any_text``: every code point (surrogates, C0/C1 controls, NUL, ESC included), empty to
  5,000 characters, for session_id, agent_id, training_task_hash and base_model_id;
- ``any_number``: floats (NaN, infinities, subnormals, float32 widths), ints up to 10**400,
  bools, Decimals, Fractions, numpy float32/float64/int64, None, for fitness_score, pass_rate,
  version and generation;
- ``any_config``: the valid LoRA config with any of its keys replaced by any JSON value
  (nested, huge ints, odd strings), and extra keys of any JSON value.
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import lora_bytes, lora_config
from adapter_registry.errors import AdapterRegistryError

from conftest import entries, rows

SCALE = int(os.environ.get("ADAPTER_REGISTRY_STRESS_SCALE", "1"))
EXAMPLES = 120 * SCALE
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
WEIGHTS = lora_bytes(r=4, seed=0)
TEXT_FIELDS = ("session_id", "agent_id", "training_task_hash", "base_model_id")
NUMBER_FIELDS = ("fitness_score", "pass_rate", "version", "generation")

any_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.text(st.characters(max_codepoint=0xA0), max_size=20),
    st.integers(0, 5000).map(lambda n: "m" * n),
    st.sampled_from(["ok-text", "a\ud800b", "x\x1b[2J", "tab\there", "\x9b", " ", ""]),
)
any_number = st.one_of(
    st.none(),
    st.floats(),
    st.floats(width=32).map(np.float32),
    st.floats().map(np.float64),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.booleans(),
    st.decimals(allow_nan=True),
    st.fractions(),
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
any_config = st.builds(
    lambda replaced, extra: {**lora_config(r=4), **replaced, **extra},
    st.dictionaries(st.sampled_from(sorted(lora_config(r=4))), json_values | any_text, max_size=3),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)


def _store_or_refuse(registry: AdapterRegistry, **fields: Any) -> str:
    adapter_id = str(uuid.uuid4())
    before_rows, before = rows(registry), entries(registry)
    kwargs = {"config": lora_config(r=4), "task_type": "bug-fix", "source": "manual",
              "session_id": "property", **fields}  # fmt: skip
    try:
        record = registry.store(WEIGHTS, adapter_id=adapter_id, **kwargs)
    except AdapterRegistryError as err:
        assert str(err).startswith(f"adapter {adapter_id}: "), err
        assert rows(registry) == before_rows
        assert [e for e in entries(registry) if e != ".staging"] == [
            e for e in before if e != ".staging"
        ]
        return type(err).__name__
    assert registry.verify(record.id).ok
    stored = registry.retrieve_by_id(record.id)
    assert stored == record
    return "stored"


@PROPERTY
@given(
    field=st.sampled_from(TEXT_FIELDS + NUMBER_FIELDS + ("config",)),
    text=any_text,
    number=any_number,
    config=any_config,
)
def test_any_text_number_or_config_stores_and_verifies_or_is_refused_cleanly(
    registry: AdapterRegistry, field: str, text: str, number: Any, config: dict[str, Any]
) -> None:
    value = text if field in TEXT_FIELDS else number if field in NUMBER_FIELDS else config
    _store_or_refuse(registry, **{field: value})
    report = registry.recover()
    assert report.clean and report.rolled_forward == [], report


def test_the_strategies_reach_both_outcomes(registry: AdapterRegistry) -> None:
    """The property is not vacuous: representative draws of each strategy both store and are
    refused."""
    outcomes = {
        _store_or_refuse(registry, session_id="a\ud800b"),
        _store_or_refuse(registry, fitness_score=np.float32(0.25)),
        _store_or_refuse(registry, fitness_score=Decimal("0.5")),
        _store_or_refuse(registry, pass_rate=Fraction(1, 3)),
        _store_or_refuse(registry, config={**lora_config(r=4), "r": 10**40}),
    }
    assert outcomes == {"stored", "InvalidAdapterError"}

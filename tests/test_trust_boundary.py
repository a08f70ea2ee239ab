"""The trust boundary (issue 12): text that cannot be stored or shown, numbers and configs that
used to escape as bare Python exceptions, and rows whose paths point outside the root. Each
ends in our typed error with nothing written, or in a verdict that names the problem; on
SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapter_registry import (
    AdapterRegistry,
    AdapterStorageError,
    InvalidAdapterError,
    _core,
)
from adapter_registry._lora_files import lora_bytes, lora_config
from adapter_registry.validation import MAX_BASE_MODEL, MAX_TEXT

from conftest import assert_nothing_written, entries, raw_sql, rows

TEXT_FIELDS = ("session_id", "agent_id", "training_task_hash", "base_model_id")
BAD_TEXT = {
    "a lone surrogate": ("a\ud800b", "not valid Unicode"),
    "a tab": ("a\tb", "U+0009"),
    "an ESC": ("a\x1b[31mred", "U+001B"),
    "a C1 control": ("a\x9bb", "U+009B"),
    "DEL": ("a\x7fb", "U+007F"),
    "too long": ("x" * (MAX_TEXT + 1), f"the limit is {MAX_TEXT}"),
}


def _store(registry: AdapterRegistry, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "config": lora_config(),
        "task_type": "bug-fix",
        "source": "manual",
        "session_id": "session-1",
    }
    kwargs.update(overrides)
    return registry.store(lora_bytes(), **kwargs)


def _refused(registry: AdapterRegistry, match: str, **overrides: Any) -> None:
    before_rows, before = rows(registry), entries(registry)
    with pytest.raises(InvalidAdapterError, match=match):
        _store(registry, **overrides)
    assert_nothing_written(registry, before_rows, before)


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("kind", sorted(BAD_TEXT))
def test_text_that_cannot_be_stored_or_shown_is_refused_before_anything_is_written(
    registry: AdapterRegistry, field: str, kind: str
) -> None:
    value, problem = BAD_TEXT[kind]
    if field == "base_model_id" and kind == "too long":
        value, problem = "x" * (MAX_BASE_MODEL + 1), f"the limit is {MAX_BASE_MODEL}"
    _refused(registry, f"{field}.*{re.escape(problem)}", **{field: value})
    assert registry.recover().clean  # nothing half-stored for a later recover() to trip on
    assert _store(registry).session_id == "session-1"  # and the registry still takes stores


def test_a_base_model_may_be_a_long_local_path(registry: AdapterRegistry) -> None:
    path = ("/" + "m" * 99) * (MAX_BASE_MODEL // 100)  # 4,000 characters
    assert _store(registry, base_model_id=path).base_model_id == path


def test_the_configs_base_model_is_checked_like_the_field(registry: AdapterRegistry) -> None:
    _refused(
        registry,
        "base_model_name_or_path.*U\\+001B",
        config=lora_config(base_model_name_or_path="org/\x1b]0;owned\x07model"),
    )


NUMBERS = {
    "an int too large for a float": ({"fitness_score": 10**400}, "fitness_score"),
    "a huge version": ({"version": 2**70}, "version"),
    "parent_ids None": ({"parent_ids": None}, "parent_ids must be a list"),
    "parent_ids an int": ({"parent_ids": 3}, "parent_ids must be a list"),
}


@pytest.mark.parametrize("case", sorted(NUMBERS))
def test_values_that_raised_bare_python_errors_are_typed(
    registry: AdapterRegistry, case: str
) -> None:
    overrides, match = NUMBERS[case]
    _refused(registry, match, **overrides)


def test_numpy_and_fraction_scores_are_accepted(registry: AdapterRegistry) -> None:
    record = _store(registry, fitness_score=np.float32(0.5), pass_rate=Fraction(1, 4))
    assert (record.fitness_score, record.pass_rate) == (0.5, 0.25)
    assert type(record.fitness_score) is float
    assert registry.update_fitness(record.id, np.float64(0.75)).fitness_score == 0.75


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


CONFIG_FILES = {
    "nested 100k deep": _nested(100_000),
    "an int of 5000 digits": json.dumps(lora_config())[:-1] + ', "big": ' + "9" * 5000 + "}",
    "NaN": json.dumps(lora_config())[:-1] + ', "lora_dropout_x": NaN}',
    "Infinity": json.dumps(lora_config())[:-1] + ', "x": -Infinity}',
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILES))
def test_config_files_that_raised_bare_errors_are_refused(
    registry: AdapterRegistry, tmp_path: Path, case: str
) -> None:
    path = tmp_path / "adapter_config.json"
    path.write_text(CONFIG_FILES[case])
    _refused(registry, "adapter_config.json", config=str(path))


def test_a_config_dict_nested_5000_deep_or_holding_nan_is_refused(
    registry: AdapterRegistry,
) -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(5000):
        inner["a"] = {}
        inner = inner["a"]
    _refused(registry, "nested too deeply", config={**lora_config(), "deep": deep})
    _refused(registry, "not JSON-serialisable", config={**lora_config(), "x": float("nan")})


def test_a_config_that_is_a_directory_is_named(registry: AdapterRegistry, tmp_path: Path) -> None:
    _refused(registry, f"config {tmp_path} is not a regular file", config=str(tmp_path))


@pytest.mark.parametrize("threads", [-1, 0, "x", 2.5, True])
def test_verify_all_refuses_a_bad_thread_count(registry: AdapterRegistry, threads: Any) -> None:
    _store(registry)
    with pytest.raises(InvalidAdapterError, match="threads"):
        registry.verify_all(threads=threads)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(AdapterStorageError, match="in-memory"):
        AdapterRegistry(root=tmp_path / "adapters", db_url=url)


def _point_row_at(registry: AdapterRegistry, adapter_id: str, path: str) -> None:
    """What someone with write access to the database and no regard for the triggers does."""
    if registry.db_url.startswith("sqlite"):
        raw_sql(registry, "DROP TRIGGER adapter_records_write_once")
    else:
        raw_sql(registry, "ALTER TABLE adapter_records DISABLE TRIGGER adapter_records_write_once")
    raw_sql(registry, "UPDATE adapter_records SET file_path = :p WHERE id = :id",
            p=path, id=adapter_id)  # fmt: skip


def test_a_rows_file_path_is_never_followed(registry: AdapterRegistry, tmp_path: Path) -> None:
    record = _store(registry)
    outside = tmp_path / "outside.txt"
    outside.write_text("not an adapter")
    _point_row_at(registry, record.id, str(outside))
    report = registry.verify(record.id)
    assert report.status == "mismatch"
    assert report.problems == (
        f"its row's file_path {outside} is not "
        f"{registry.root / record.id / _core.WEIGHTS_FILE}, where the registry keeps it",
    )
    assert registry.recover().missing == []  # the files are where the registry keeps them
    # The adapter's own files, not the row's, are what loading and listing read.
    assert (registry.root / record.id / _core.WEIGHTS_FILE).read_bytes() == lora_bytes()

"""Write-once at every level: the schema as the spec gives it, an API without overwrite, a
filesystem that refuses to replace, and a database that refuses even raw SQL."""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import Any

import pytest

from adapter_registry import AdapterAlreadyExistsError, AdapterRegistry, _core

# (name, type, not null, default, primary key) as the spec's table gives them, + config_hash.
SPEC_COLUMNS = [
    ("id", "TEXT", 1, None, 1),
    ("version", "INTEGER", 1, None, 0),
    ("task_type", "TEXT", 1, None, 0),
    ("base_model_id", "TEXT", 1, None, 0),
    ("rank", "INTEGER", 1, None, 0),
    ("created_at", "TEXT", 1, None, 0),
    ("file_path", "TEXT", 1, None, 0),
    ("file_hash", "TEXT", 1, None, 0),
    ("file_size_bytes", "INTEGER", 1, None, 0),
    ("pass_rate", "REAL", 0, None, 0),
    ("fitness_score", "REAL", 0, None, 0),
    ("source", "TEXT", 1, None, 0),
    ("session_id", "TEXT", 1, None, 0),
    ("is_archived", "INTEGER", 0, "0", 0),
    ("parent_ids", "TEXT", 0, None, 0),
    ("generation", "INTEGER", 0, "0", 0),
    ("training_task_hash", "TEXT", 0, None, 0),
    ("agent_id", "TEXT", 0, None, 0),
    ("config_hash", "TEXT", 1, None, 0),
]
MUTABLE = {"pass_rate": 0.5, "fitness_score": 2.0, "is_archived": 1}


def connect(registry: AdapterRegistry) -> sqlite3.Connection:
    return sqlite3.connect(registry.db_url.removeprefix("sqlite:///"), isolation_level=None)


def test_the_table_is_the_specs(registry: AdapterRegistry) -> None:
    with connect(registry) as conn:
        columns = [
            (n, t, nn, d, pk)
            for _, n, t, nn, d, pk in conn.execute("PRAGMA table_info(adapter_records)")
        ]
        indexes = {row[1]: row for row in conn.execute("PRAGMA index_list(adapter_records)")}
        indexed = {
            name: [r[2] for r in conn.execute(f"PRAGMA index_info({name})")] for name in indexes
        }
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert columns == SPEC_COLUMNS
    assert indexed["ix_adapter_records_task_type"] == ["task_type"]
    assert indexed["ix_adapter_records_training_task_hash"] == ["training_task_hash"]
    assert journal == "wal"


@pytest.mark.parametrize(
    ("column", "value"),
    [(name, "x") for name, *_ in SPEC_COLUMNS if name not in MUTABLE]
    + [("version", 99), ("file_size_bytes", 1), ("generation", 7), ("parent_ids", '["x"]')],
)
def test_raw_sql_cannot_update_an_immutable_column(
    store_one: Any, registry: AdapterRegistry, column: str, value: Any
) -> None:
    record = store_one()
    with connect(registry) as conn, pytest.raises(sqlite3.IntegrityError, match="write-once"):
        conn.execute(f"UPDATE adapter_records SET {column} = ? WHERE id = ?", (value, record.id))
    assert registry.retrieve_by_id(record.id) == record


def test_raw_sql_can_update_the_evaluation_columns(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one()
    with connect(registry) as conn:
        for column, value in MUTABLE.items():
            conn.execute(
                f"UPDATE adapter_records SET {column} = ? WHERE id = ?", (value, record.id)
            )
    after = registry.retrieve_by_id(record.id)
    assert (after.pass_rate, after.fitness_score, after.is_archived) == (0.5, 2.0, True)


def test_raw_sql_cannot_delete(store_one: Any, registry: AdapterRegistry) -> None:
    record = store_one()
    with connect(registry) as conn, pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        conn.execute("DELETE FROM adapter_records")
    assert registry.retrieve_by_id(record.id) == record


@pytest.mark.parametrize("verb", ["INSERT OR REPLACE", "REPLACE"])
def test_raw_sql_cannot_replace_a_row(store_one: Any, registry: AdapterRegistry, verb: str) -> None:
    record = store_one()
    columns = ", ".join(name for name, *_ in SPEC_COLUMNS)
    with connect(registry) as conn, pytest.raises(sqlite3.IntegrityError, match="write-once"):
        conn.execute(
            f"{verb} INTO adapter_records ({columns}) SELECT id, version, task_type, "
            "base_model_id, rank, created_at, file_path, '0000', file_size_bytes, pass_rate, "
            "fitness_score, source, session_id, is_archived, parent_ids, generation, "
            "training_task_hash, agent_id, config_hash FROM adapter_records WHERE id = ?",
            (record.id,),
        )
    assert registry.retrieve_by_id(record.id) == record


def test_the_api_has_no_way_to_change_weights() -> None:
    public = {name for name in dir(AdapterRegistry) if not name.startswith("_")}
    assert public == {
        "archive",
        "close",
        "find_by_training_task_hash",
        "lineage",
        "list_all",
        "load_peft",
        "load_state_dict",
        "query_best_for_task",
        "query_by_task_type",
        "recover",
        "retrieve_by_id",
        "store",
        "store_peft_model",
        "update_fitness",
        "verify",
        "verify_all",
    }


@pytest.mark.parametrize("exclusive_claim", [False, True])
def test_the_filesystem_refuses_to_replace_a_published_adapter(
    store_one: Any, registry: AdapterRegistry, exclusive_claim: bool
) -> None:
    record = store_one(seed=1)
    directory = registry.root / record.id
    before = {name: (directory / name).read_bytes() for name in os.listdir(directory)}
    staged = _core.stage(str(registry.root), "intruder", b"\x02" + bytes(7) + b"{}", b"{}")
    with pytest.raises(AdapterAlreadyExistsError, match=record.id):
        staged.publish(record.id, b"{}", exclusive_claim=exclusive_claim)
    assert {name: (directory / name).read_bytes() for name in os.listdir(directory)} == before
    assert os.listdir(registry.root / ".staging") == []


def test_published_files_are_read_only(store_one: Any, registry: AdapterRegistry) -> None:
    record = store_one()
    mode = stat.S_IMODE(os.stat(record.file_path).st_mode)
    assert mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0

"""Write-once at every level: the schema as the spec gives it, an API without overwrite, a
filesystem that refuses to replace, and a database that refuses even raw SQL."""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest
from sqlalchemy import exc as sa_exc

from adapter_registry import AdapterAlreadyExistsError, AdapterRegistry, _core

from conftest import raw_sql

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


# The same table on PostgreSQL: SQLite's 64-bit INTEGER and REAL as BIGINT and DOUBLE PRECISION.
POSTGRES_TYPES = {"TEXT": "text", "INTEGER": "bigint", "REAL": "double precision"}


def table_columns(registry: AdapterRegistry, backend: str) -> list[tuple[Any, ...]]:
    if backend == "sqlite":
        return [tuple(r[1:]) for r in raw_sql(registry, "PRAGMA table_info(adapter_records)")]
    rows = raw_sql(
        registry,
        "SELECT c.column_name, c.data_type, c.is_nullable, c.column_default, "
        "coalesce(k.constraint_name IS NOT NULL, false) FROM information_schema.columns c "
        "LEFT JOIN information_schema.key_column_usage k ON k.table_name = c.table_name "
        "AND k.column_name = c.column_name WHERE c.table_name = 'adapter_records' "
        "ORDER BY c.ordinal_position",
    )
    return [(n, t, int(nullable == "NO"), d, int(pk)) for n, t, nullable, d, pk in rows]


def test_the_table_is_the_specs(registry: AdapterRegistry, backend: str) -> None:
    columns = table_columns(registry, backend)
    if backend == "sqlite":
        assert columns == SPEC_COLUMNS
        assert raw_sql(registry, "PRAGMA journal_mode")[0][0] == "wal"
        index_sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    else:
        expected = [
            (n, "integer" if n == "is_archived" else POSTGRES_TYPES[t], nn, d, pk)
            for n, t, nn, d, pk in SPEC_COLUMNS
        ]
        assert columns == expected
        index_sql = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'adapter_records'"
    indexes = {name: sql for name, sql in raw_sql(registry, index_sql)}
    assert "(task_type)" in indexes["ix_adapter_records_task_type"]
    assert "(training_task_hash)" in indexes["ix_adapter_records_training_task_hash"]
    assert "is_archived = 0" in indexes["ix_adapter_records_best"]


@pytest.mark.parametrize(
    ("column", "value"),
    [(name, "x") for name, *_ in SPEC_COLUMNS if name not in MUTABLE]
    + [("version", 99), ("file_size_bytes", 1), ("generation", 7), ("parent_ids", '["x"]')],
)
def test_raw_sql_cannot_update_an_immutable_column(
    store_one: Any, registry: AdapterRegistry, column: str, value: Any
) -> None:
    record = store_one()
    if value == "x" and column in ("version", "rank", "file_size_bytes", "generation"):
        value = 12345  # a typed database would refuse text here before any trigger
    with pytest.raises(sa_exc.IntegrityError, match="write-once"):
        raw_sql(registry, f"UPDATE adapter_records SET {column} = :v WHERE id = :id",
                v=value, id=record.id)  # fmt: skip
    assert registry.retrieve_by_id(record.id) == record


def test_raw_sql_can_update_the_evaluation_columns(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one()
    for column, value in MUTABLE.items():
        raw_sql(registry, f"UPDATE adapter_records SET {column} = :v WHERE id = :id",
                v=value, id=record.id)  # fmt: skip
    after = registry.retrieve_by_id(record.id)
    assert (after.pass_rate, after.fitness_score, after.is_archived) == (0.5, 2.0, True)


@pytest.mark.parametrize("verb", ["DELETE FROM adapter_records", "TRUNCATE adapter_records"])
def test_raw_sql_cannot_delete(
    store_one: Any, registry: AdapterRegistry, backend: str, verb: str
) -> None:
    record = store_one()
    if verb.startswith("TRUNCATE") and backend == "sqlite":
        verb = "DELETE FROM adapter_records WHERE 1"  # SQLite's truncate optimization
    with pytest.raises(sa_exc.IntegrityError, match="never deleted"):
        raw_sql(registry, verb)
    assert registry.retrieve_by_id(record.id) == record


_COPY = (
    "SELECT id, version, task_type, base_model_id, rank, created_at, file_path, '0000', "
    "file_size_bytes, pass_rate, fitness_score, source, session_id, is_archived, parent_ids, "
    "generation, training_task_hash, agent_id, config_hash FROM adapter_records WHERE id = :id"
)
REPLACING = {
    "sqlite": [f"INSERT OR REPLACE INTO adapter_records ({{}}) {_COPY}",
               f"REPLACE INTO adapter_records ({{}}) {_COPY}"],
    "postgresql": [f"INSERT INTO adapter_records ({{}}) {_COPY} "
                   "ON CONFLICT (id) DO UPDATE SET file_hash = EXCLUDED.file_hash"],
}  # fmt: skip


@pytest.mark.parametrize("form", [0, 1])
def test_raw_sql_cannot_replace_a_row(
    store_one: Any, registry: AdapterRegistry, backend: str, form: int
) -> None:
    record = store_one()
    statements = REPLACING[backend]
    columns = ", ".join(name for name, *_ in SPEC_COLUMNS)
    with pytest.raises(sa_exc.IntegrityError, match="write-once"):
        raw_sql(registry, statements[form % len(statements)].format(columns), id=record.id)
    assert registry.retrieve_by_id(record.id) == record


def test_the_api_has_no_way_to_change_weights() -> None:
    public = {name for name in dir(AdapterRegistry) if not name.startswith("_")}
    # None of these writes weights: labels, history and the archive flag only (store and
    # import_bundle add adapters through the one write path; export and backup only read).
    assert public == {
        "backup",
        "export",
        "import_bundle",
        "resolve",
        "alias_history",
        "aliases",
        "archive",
        "children",
        "close",
        "delete_alias",
        "delete_tags",
        "evaluations",
        "record_evaluation",
        "resolve_alias",
        "latest_verify_report",
        "save_verify_report",
        "search",
        "set_alias",
        "set_tags",
        "tags",
        "unarchive",
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

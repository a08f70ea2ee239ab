"""What may change is declared once (write_rules.py, on the model) and the database holds to it:
the head schema's triggers match the declaration column by column, a column that a later
migration adds is write-once unless declared mutable, and the other table kinds behave as
declared. On SQLite and on PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, Text, create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from adapter_registry import AdapterRegistry, schema, write_rules
from adapter_registry.record import COLUMNS, TABLE

from conftest import NEXT_MIGRATION, raw_sql


@pytest.fixture
def engine(registry: AdapterRegistry) -> Iterator[Engine]:
    engine = create_engine(registry.db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def _changed(value: Any) -> Any:
    """Another value of the same type."""
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, float):
        return value / 2
    assert isinstance(value, int), value
    return value + 1


def _update_refused(engine: Engine, table: str, column: str, value: Any, where: str) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET {column} = :v WHERE {where}"), {"v": value})
    except sa_exc.DBAPIError as err:
        assert "write-once" in str(err) or "append-only" in str(err), err
        return True
    return False


def test_the_head_schemas_triggers_are_the_declaration(
    store_one: Any, registry: AdapterRegistry, engine: Engine
) -> None:
    parent = store_one(seed=1)
    store_one(
        seed=2, parent_ids=[parent.id], agent_id="agent-7", training_task_hash="t1",
        fitness_score=0.5, pass_rate=0.5,
    )  # fmt: skip
    child = registry.list_all()[-1]
    mutable = write_rules.mutable_columns(TABLE)
    assert mutable == ["pass_rate", "fitness_score", "is_archived"]
    refused = {}
    for column in COLUMNS:
        (value,) = raw_sql(registry, f"SELECT {column} FROM adapter_records WHERE id = :id",
                           id=child.id)[0]  # fmt: skip
        assert value is not None, column
        refused[column] = _update_refused(
            engine, "adapter_records", column, _changed(value), f"id = '{child.id}'"
        )
    assert {c for c, r in refused.items() if not r} == set(mutable)


def test_a_column_a_later_migration_adds_is_write_once_unless_declared(
    store_one: Any, registry: AdapterRegistry, engine: Engine, tmp_path: Path
) -> None:
    record = store_one()
    next_release = tmp_path / "next-migrations"
    shutil.copytree(schema.MIGRATIONS, next_release)
    (next_release / "versions" / "9999_next.py").write_text(NEXT_MIGRATION.format(head=schema.HEAD))
    with engine.begin() as conn:
        assert schema.upgrade(conn, next_release) == "9999"
    where = f"id = '{record.id}'"
    assert _update_refused(engine, "adapter_records", "notes", "a note", where)
    assert not _update_refused(engine, "adapter_records", "fitness_score", 0.9, where)
    assert registry.update_fitness(record.id, 0.8).fitness_score == 0.8


@pytest.mark.parametrize("kind", [write_rules.APPEND_ONLY, write_rules.MUTABLE_TABLE])
def test_tables_to_come_are_append_only_or_mutable_as_declared(
    registry: AdapterRegistry, engine: Engine, kind: str
) -> None:
    table = Table(
        "stand_in_history", MetaData(),
        Column("id", Integer, primary_key=True), Column("note", Text),
        info=write_rules.writes(kind)["info"],
    )  # fmt: skip
    with engine.begin() as conn:
        table.create(conn)
        write_rules.install(conn, [table])
        conn.execute(text("INSERT INTO stand_in_history (id, note) VALUES (1, 'first')"))
    append_only = kind == write_rules.APPEND_ONLY
    assert _update_refused(engine, "stand_in_history", "note", "second", "id = 1") == append_only
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO stand_in_history (id, note) VALUES (2, 'more')"))
    try:
        raw_sql(registry, "DELETE FROM stand_in_history WHERE id = 2")
        deleted = True
    except sa_exc.DBAPIError as err:
        assert "rows are never deleted" in str(err)
        deleted = False
    assert deleted != append_only
    assert write_rules.mutable_columns(table) == []


def test_a_table_kind_must_be_one_of_the_three() -> None:
    with pytest.raises(ValueError, match="unknown write rule"):
        write_rules.writes("sometimes")

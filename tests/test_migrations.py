"""Schema versions (issue 7): a registry made by this release opens with the next one; a
SQLite registry made before Alembic carries on; many processes opening a new registry at once
migrate it exactly once."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from adapter_registry import AdapterRegistry, schema
from adapter_registry._lora_files import lora_bytes, lora_config
from adapter_registry.record import AdapterRecord

from conftest import NEXT_MIGRATION, raw_sql


def test_head_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == schema.HEAD


def test_the_next_release_upgrades_a_registry_made_by_this_one(
    store_one: Any, registry: AdapterRegistry, tmp_path: Path
) -> None:
    records = [store_one(seed=i) for i in range(3)]
    registry.update_fitness(records[1].id, 0.7)
    assert raw_sql(registry, "SELECT version_num FROM alembic_version") == [(schema.HEAD,)]

    next_release = tmp_path / "next-migrations"
    shutil.copytree(schema.MIGRATIONS, next_release)
    (next_release / "versions" / "9999_next.py").write_text(NEXT_MIGRATION.format(head=schema.HEAD))
    engine = create_engine(registry.db_url, poolclass=NullPool)
    with engine.begin() as conn:
        assert schema.upgrade(conn, next_release) == "9999"
    engine.dispose()

    assert raw_sql(registry, "SELECT version_num FROM alembic_version") == [("9999",)]
    assert [r.id for r in registry.list_all()] == [r.id for r in records]
    assert registry.query_best_for_task("bug-fix").id == records[1].id
    assert all(r.ok for r in registry.verify_all())
    store_one(seed=9)  # still writable, still write-once
    with pytest.raises(Exception, match="write-once"):
        raw_sql(registry, "DELETE FROM adapter_records")


def test_a_sqlite_registry_made_before_alembic_is_stamped_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    # Made as the first release made it: the model's create_all, then its triggers (these are
    # the ones revision 0001 writes out), and no alembic_version table.
    first = schema.MIGRATIONS / "versions" / "0001_initial.py"
    namespace: dict[str, Any] = {}
    exec(compile(first.read_text(), str(first), "exec"), namespace)
    engine = create_engine(f"sqlite:///{db}", poolclass=NullPool)
    AdapterRecord.metadata.create_all(engine, tables=[AdapterRecord.__table__])  # type: ignore[attr-defined]
    with sqlite3.connect(db) as conn:
        for trigger in namespace["SQLITE_TRIGGERS"]:
            conn.execute(trigger)
    registry = AdapterRegistry(root=tmp_path / "adapters", db_url=f"sqlite:///{db}")
    record = registry.store(lora_bytes(), config=lora_config(), task_type="bug-fix",
                            source="manual", session_id="old")  # fmt: skip
    assert raw_sql(registry, "SELECT version_num FROM alembic_version") == [(schema.HEAD,)]
    assert registry.retrieve_by_id(record.id) == record
    registry.close()


def _open(root: str, db_url: str, barrier: Any) -> int:
    barrier.wait()
    registry = AdapterRegistry(root=root, db_url=db_url)
    count = len(registry.list_all())
    registry.close()
    return count


def test_many_processes_opening_a_new_registry_migrate_it_once(home: Path, db_url: str) -> None:
    processes = 8
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(processes) as pool:
        barrier = manager.Barrier(processes)
        counts = pool.starmap(_open, [(str(home / "adapters"), db_url, barrier)] * processes)
    assert counts == [0] * processes
    registry = AdapterRegistry(root=home / "adapters", db_url=db_url)
    assert raw_sql(registry, "SELECT version_num FROM alembic_version") == [(schema.HEAD,)]
    registry.close()

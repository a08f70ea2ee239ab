"""Reads and the two metadata changes: retrieve, queries, ranking, lineage, archive, fitness."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

from adapter_registry import (
    AdapterNotFoundError,
    AdapterRecord,
    AdapterRegistry,
    InvalidAdapterError,
    queries,
)
from adapter_registry._lora_files import lora_bytes, lora_config

MISSING = "12345678-1234-4234-8234-123456789abc"


def test_retrieve_by_id_and_not_found(store_one: Any, registry: AdapterRegistry) -> None:
    record = store_one()
    assert registry.retrieve_by_id(record.id) == record
    with pytest.raises(AdapterNotFoundError, match=f"adapter {MISSING} is not registered"):
        registry.retrieve_by_id(MISSING)
    assert issubclass(AdapterNotFoundError, LookupError)


def test_query_by_task_type_oldest_first_without_archived(
    store_one: Any, registry: AdapterRegistry
) -> None:
    a, b, c = (store_one(seed=i) for i in range(3))
    other = store_one(seed=4, task_type="refactor")
    registry.archive(b.id)
    assert [r.id for r in registry.query_by_task_type("bug-fix")] == [a.id, c.id]
    assert [r.id for r in registry.query_by_task_type("bug-fix", include_archived=True)] == [
        a.id,
        b.id,
        c.id,
    ]
    assert [r.id for r in registry.query_by_task_type("refactor")] == [other.id]
    assert registry.query_by_task_type("docs") == []


def test_best_for_task_ranks_by_fitness_among_live_evaluated_adapters(
    store_one: Any, registry: AdapterRegistry
) -> None:
    assert registry.query_best_for_task("bug-fix") is None
    unevaluated = store_one(seed=0)
    low, high, archived = (store_one(seed=i) for i in (1, 2, 3))
    registry.update_fitness(low.id, fitness_score=0.2)
    registry.update_fitness(high.id, fitness_score=0.7, pass_rate=0.5)
    registry.update_fitness(archived.id, fitness_score=0.99)
    registry.archive(archived.id)
    best = registry.query_best_for_task("bug-fix")
    assert best is not None and best.id == high.id
    assert best.fitness_score == 0.7 and best.pass_rate == 0.5
    assert registry.query_best_for_task("refactor") is None
    # the unevaluated one is never ranked, not even once it is the only live adapter left
    registry.archive(low.id)
    registry.archive(high.id)
    assert [r.id for r in registry.query_by_task_type("bug-fix")] == [unevaluated.id]
    assert registry.query_best_for_task("bug-fix") is None


def test_best_for_task_ties_go_to_the_first_stored(
    store_one: Any, registry: AdapterRegistry
) -> None:
    first, second = store_one(seed=1), store_one(seed=2)
    for r in (second, first):
        registry.update_fitness(r.id, fitness_score=0.5)
    best = registry.query_best_for_task("bug-fix")
    assert best is not None and best.id == first.id


def test_best_for_task_filters_by_base_model(store_one: Any, registry: AdapterRegistry) -> None:
    a = store_one(seed=1)
    b = store_one(seed=2, base_model_id="org/bigger")
    registry.update_fitness(a.id, fitness_score=0.9)
    registry.update_fitness(b.id, fitness_score=0.1)
    best = registry.query_best_for_task("bug-fix", base_model_id="org/bigger")
    assert best is not None and best.id == b.id
    assert registry.query_best_for_task("bug-fix", base_model_id="org/none") is None


def test_best_for_task_uses_its_partial_index(
    store_one: Any, registry: AdapterRegistry, backend: str
) -> None:
    store_one()
    if backend == "postgresql":
        best = queries.BEST.params(task_type="bug-fix")
        sql = best.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        with registry._db.engine.connect() as conn:  # a planner free to choose, but for scans
            conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(text(f"EXPLAIN {sql}")))
        assert "ix_adapter_records_best" in plan
        assert "Sort" not in plan, "the index already gives the ranking order"
        return
    emitted: list[str] = []
    reader = registry._db._raw
    assert reader is not None, "SQLite reads take the raw driver path"
    registry.query_best_for_task("bug-fix")  # the pool now holds one connection
    conn = reader._idle.get()
    conn.set_trace_callback(emitted.append)  # the SQL as run, values inlined
    reader._idle.put(conn)
    registry.query_best_for_task("bug-fix")
    conn.set_trace_callback(None)
    (statement,) = emitted
    db = registry.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}"))
    assert "ix_adapter_records_best" in plan
    assert "TEMP B-TREE" not in plan, "the index already gives the ranking order"


def test_list_all_and_find_by_training_task_hash(store_one: Any, registry: AdapterRegistry) -> None:
    a = store_one(seed=1, training_task_hash="task-a")
    b = store_one(seed=2, training_task_hash="task-b", task_type="refactor")
    c = store_one(seed=3, training_task_hash="task-a")
    registry.archive(c.id)
    assert [r.id for r in registry.list_all()] == [a.id, b.id, c.id]
    assert [r.id for r in registry.list_all(include_archived=False)] == [a.id, b.id]
    assert [r.id for r in registry.find_by_training_task_hash("task-a")] == [a.id, c.id]
    assert registry.find_by_training_task_hash("task-z") == []


def test_lineage_walks_every_ancestor_once_nearest_first(
    store_one: Any, registry: AdapterRegistry
) -> None:
    root = store_one(seed=0)
    left = store_one(seed=1, parent_ids=[root.id], source="evolution")
    right = store_one(seed=2, parent_ids=[root.id], source="evolution")
    child = store_one(seed=3, parent_ids=[left.id, right.id], source="evolution")
    assert [r.id for r in registry.lineage(child.id)] == [left.id, right.id, root.id]
    assert registry.lineage(root.id) == []
    with pytest.raises(AdapterNotFoundError):
        registry.lineage(MISSING)


def test_archive_is_idempotent_and_keeps_the_files(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one()
    assert registry.archive(record.id).is_archived is True
    assert registry.archive(record.id).is_archived is True
    assert registry.retrieve_by_id(record.id).is_archived is True
    assert registry.verify(record.id).ok
    with pytest.raises(AdapterNotFoundError):
        registry.archive(MISSING)


def test_update_fitness_changes_only_what_it_is_given(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one()
    registry.update_fitness(record.id, fitness_score=-3.5)
    updated = registry.update_fitness(record.id, pass_rate=1.0)
    assert (updated.fitness_score, updated.pass_rate) == (-3.5, 1.0)
    unchanged = {
        k: v for k, v in record.to_dict().items() if k not in ("fitness_score", "pass_rate")
    }
    assert {k: v for k, v in updated.to_dict().items() if k in unchanged} == unchanged


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pass_rate": 1.5}, "outside 0..1"),
        ({"pass_rate": -0.1}, "outside 0..1"),
        ({"pass_rate": float("nan")}, "not a finite"),
        ({"fitness_score": float("-inf")}, "not a finite"),
        ({"fitness_score": "high"}, "not a finite"),
        ({}, "needs fitness_score or pass_rate"),
    ],
)
def test_update_fitness_refuses_bad_numbers(
    store_one: Any, registry: AdapterRegistry, kwargs: dict[str, Any], message: str
) -> None:
    record = store_one()
    with pytest.raises(InvalidAdapterError, match=f"adapter {record.id}: .*{message}"):
        registry.update_fitness(record.id, **kwargs)
    assert registry.retrieve_by_id(record.id) == record


def test_update_fitness_of_an_unknown_adapter(registry: AdapterRegistry) -> None:
    with pytest.raises(AdapterNotFoundError, match=MISSING):
        registry.update_fitness(MISSING, fitness_score=1.0)


def test_a_fresh_process_that_only_reads_gets_usable_records(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one()
    script = (
        "import sys; from adapter_registry import AdapterRegistry; "
        "r = AdapterRegistry(root=sys.argv[1], db_url=sys.argv[2]); "
        "print([(x.id, x.rank, x.is_archived) for x in r.list_all()]); "
        "print(r.list_all()[0].model_dump_json())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(registry.root), registry.db_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    listed, dumped = done.stdout.strip().splitlines()
    assert listed == repr([(record.id, record.rank, False)])
    assert AdapterRecord.model_validate_json(dumped) == record


def test_records_read_back_are_ordinary_orm_instances(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = registry.retrieve_by_id(store_one().id)
    assert sa_inspect(record).mapper.class_ is AdapterRecord
    record.fitness_score = 0.25  # attribute events work; nothing is written by this
    assert record.fitness_score == 0.25
    with Session(registry._db.engine) as session:
        merged = session.merge(registry.retrieve_by_id(record.id))
        assert merged.id == record.id and merged.fitness_score is None


def test_short_lived_reader_threads_do_not_leak_connections(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one()

    def read() -> None:
        assert registry.retrieve_by_id(record.id) == record

    before = len(os.listdir("/proc/self/fd"))
    for _ in range(100):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    assert len(os.listdir("/proc/self/fd")) - before < 10


def test_a_relative_database_path_is_fixed_when_the_registry_opens(
    store_one: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = AdapterRegistry(root="adapters", db_url="sqlite:///rel.db")
    record = registry.store(
        lora_bytes(), config=lora_config(), task_type="bug-fix", source="manual", session_id="s"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(registry.retrieve_by_id(record.id)))
    thread.start()
    thread.join()
    assert found == [record] and os.listdir(elsewhere) == []
    registry.close()

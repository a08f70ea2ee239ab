"""search()'s common filters are answered by indexes on both backends, as the fixed queries are
(test_queries): the SQL that search() hands the raw driver is explained, with its values, over
20,000 rows in which every filter below keeps at most a few percent, so a planner that found no
fitting index would scan the table. On PostgreSQL the tables are ANALYZEd and the planner is
left free, and the generic plan (what a statement prepared by psycopg after five runs may use)
is checked as well as the plan for the values at hand.
"""

from __future__ import annotations

import contextlib
import random
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from sqlalchemy import insert
from sqlalchemy.sql.elements import ClauseElement

from adapter_registry import AdapterRegistry
from adapter_registry.fast_reads import PostgresReader
from adapter_registry.record import TABLE
from adapter_registry.tables import EDGES, TAGS

from postgres import PostgresServer

ROWS, TASKS, AGENTS, SESSION = 20_000, 40, 23, 100
#: A parent's children: those stored PER_PARENT places after it.
PER_PARENT = 4
TEAMS = 997


#: psycopg's placeholder, as SQLAlchemy writes it: %(name)s.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


class Ran(NamedTuple):
    """One statement as search() ran it on the raw driver."""

    sql: str
    names: tuple[str, ...]
    params: dict[str, Any]


def _rows() -> tuple[list[dict[str, Any]], list[dict[str, str]], list[dict[str, str]]]:
    rng = random.Random(13)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(ROWS)]
    records, edges, tags = [], [], []
    for i, adapter_id in enumerate(ids):
        parent = ids[i // PER_PARENT - 1] if i >= PER_PARENT else None
        records.append({
            "id": adapter_id, "version": 1, "task_type": f"task-{i % TASKS}",
            "base_model_id": "org/base", "rank": 8,
            "created_at": f"2026-01-01T00:00:{i:09d}+00:00", "file_path": f"/x/{i}",
            "file_hash": "0" * 64, "file_size_bytes": 1, "config_hash": "0" * 64,
            "source": "evolution", "session_id": f"session-{i // SESSION}",
            "agent_id": f"agent-{(i // TASKS) % AGENTS}", "is_archived": i % 10 == 0,
            "parent_ids": f'["{parent}"]' if parent else "[]", "generation": 0,
            "pass_rate": rng.random(), "fitness_score": rng.random() if i % 4 else None,
        })  # fmt: skip
        if parent:
            edges.append({"parent_id": parent, "child_id": adapter_id})
        tags.append({"adapter_id": adapter_id, "key": "team", "value": f"team-{i % TEAMS}"})
        tags.append({"adapter_id": adapter_id, "key": "stage", "value": "dev"})
    return records, edges, tags


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def catalog(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AdapterRegistry]:
    """A registry of ROWS adapters (rows only, no files) with their edges and tags."""
    home = tmp_path_factory.mktemp("plans")
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'registry.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"plans_{home.name.replace('-', '_')}")
    registry = AdapterRegistry(root=home / "adapters", db_url=url)
    records, edges, tags = _rows()
    with registry._db.write() as conn:
        conn.execute(insert(TABLE), records)
        conn.execute(insert(EDGES), edges)
        conn.execute(insert(TAGS), tags)
    if request.param == "postgresql":
        with registry._db.write() as conn:
            conn.exec_driver_sql("ANALYZE")
    # SQLite keeps no statistics unless asked (a registry never runs ANALYZE): its planner
    # is checked as it runs in use.
    yield registry
    registry.close()


def _ran(registry: AdapterRegistry, call: Callable[[], Any]) -> Ran:
    """The last statement that `call` ran on the registry's raw read path."""
    reader = registry._db._raw
    assert reader is not None, "search takes the raw driver path on both backends"
    seen: list[Ran] = []
    fetch = reader.fetch

    def spy(sql: str, names: Any, params: dict[str, Any]) -> Any:
        seen.append(Ran(sql, tuple(names), dict(params)))
        return fetch(sql, names, params)

    reader.fetch = spy  # type: ignore[method-assign]
    try:
        call()
    finally:
        del reader.fetch
    return seen[-1]


def _plans(registry: AdapterRegistry, ran: Ran) -> list[str]:
    """The plan for the values at hand; on PostgreSQL also the generic plan."""
    if registry._db.dialect == "sqlite":
        db = registry.db_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(db)) as lite:
            values = [ran.params[n] for n in ran.names]
            rows = lite.execute(f"EXPLAIN QUERY PLAN {ran.sql}", values)
            return [" | ".join(str(row[-1]) for row in rows)]
    import psycopg
    from psycopg import sql

    assert isinstance(registry._db._raw, PostgresReader)
    with psycopg.connect(registry._db._raw._conninfo, autocommit=True) as conn:
        custom = [r[0] for r in conn.execute(f"EXPLAIN {ran.sql}", ran.params)]
        order: list[str] = []

        def numbered(match: re.Match[str]) -> str:
            if match[1] not in order:
                order.append(match[1])
            return f"${order.index(match[1]) + 1}"

        conn.execute("PREPARE searched AS " + _PLACEHOLDER.sub(numbered, ran.sql))
        conn.execute("SET plan_cache_mode = force_generic_plan")
        literals = sql.SQL(", ").join(sql.Literal(ran.params[n]) for n in order)
        explain = sql.SQL("EXPLAIN EXECUTE searched({})").format(literals).as_string(conn)
        generic = [r[0] for r in conn.execute(explain)]
    return [" | ".join(custom), " | ".join(generic)]


def _assert_indexed(
    registry: AdapterRegistry, call: Callable[[], Any], index: str, *, ordered: bool
) -> None:
    """Every plan of the statement `call` runs reads adapter_records through `index` (or its
    rows through an index of `index`'s table) and never scans it; `ordered`: the index
    already gives the order asked for, no sort."""
    for plan in _plans(registry, _ran(registry, call)):
        assert index in plan, plan
        if registry._db.dialect == "sqlite":
            assert "SCAN adapter_records" not in plan, plan
            assert not ordered or "TEMP B-TREE" not in plan, plan
        else:
            assert "Seq Scan" not in plan, plan
            assert not ordered or "Sort" not in plan, plan


def _pk(registry: AdapterRegistry, table: str) -> str:
    return f"sqlite_autoindex_{table}_1" if registry._db.dialect == "sqlite" else f"{table}_pkey"


def test_an_agents_best_for_a_task(catalog: AdapterRegistry) -> None:
    def call() -> Any:
        found = catalog.search(
            task_type="task-3", agent_id="agent-4", min_fitness=0.5,
            order_by="-fitness_score", limit=5,
        )  # fmt: skip
        assert len(found) == 5 and all(r.fitness_score >= 0.5 for r in found)  # type: ignore[operator]

    _assert_indexed(catalog, call, "ix_adapter_records_agent", ordered=True)


def test_the_best_for_a_task(catalog: AdapterRegistry) -> None:
    def call() -> Any:
        found = catalog.search(task_type="task-3", order_by="-fitness_score", limit=5)
        assert len(found) == 5

    _assert_indexed(catalog, call, "ix_adapter_records_task_rank", ordered=True)


def test_a_sessions_adapters(catalog: AdapterRegistry) -> None:
    def call() -> Any:
        assert len(catalog.search(session_id="session-77")) == SESSION - SESSION // 10

    _assert_indexed(catalog, call, "ix_adapter_records_session", ordered=False)


def test_the_children_of_an_adapter(catalog: AdapterRegistry) -> None:
    (parent,) = catalog.search(session_id="session-3", order_by="created_at", limit=1)
    edges = _pk(catalog, "adapter_edges")

    def children() -> Any:
        assert len(catalog.children(parent.id)) == PER_PARENT

    def filtered() -> Any:
        assert len(catalog.search(parent_id=parent.id, include_archived=True)) == PER_PARENT

    _assert_indexed(catalog, children, edges, ordered=False)
    _assert_indexed(catalog, filtered, edges, ordered=False)


def test_a_tag(catalog: AdapterRegistry) -> None:
    def call() -> Any:
        assert len(catalog.search(tags={"team": "team-5"}, include_archived=True)) in (
            ROWS // TEAMS,
            ROWS // TEAMS + 1,
        )

    _assert_indexed(catalog, call, "ix_adapter_tags_pair", ordered=False)


def test_a_plan_without_its_index_fails(catalog: AdapterRegistry) -> None:
    """The check can fail: the same search, its index dropped (in a transaction undone)."""
    ran = _ran(catalog, lambda: catalog.search(session_id="session-77"))
    with catalog._db.engine.connect() as conn:
        undone = conn.begin()
        conn.exec_driver_sql("DROP INDEX ix_adapter_records_session")
        if catalog._db.dialect == "sqlite":
            values: Any = tuple(ran.params[n] for n in ran.names)
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {ran.sql}", values)
            plan = " ".join(str(r[-1]) for r in rows)
        else:
            plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {ran.sql}", ran.params))
        undone.rollback()
    assert "ix_adapter_records_session" not in plan
    assert "SCAN adapter_records" in plan or "Seq Scan on adapter_records" in plan, plan
    assert "ix_adapter_records_session" in _plans(catalog, ran)[0]


def test_a_search_of_a_known_shape_compiles_nothing(
    catalog: AdapterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path: a shape's statement is built and compiled once, then only run."""

    def search(task: str, agent: str) -> list[str]:
        found = catalog.search(
            task_type=task, agent_id=agent, min_fitness=0.5, order_by="-fitness_score", limit=5
        )
        return [r.id for r in found]

    first = search("task-1", "agent-2")

    def compile(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled again")

    monkeypatch.setattr(ClauseElement, "compile", compile)
    assert search("task-1", "agent-2") == first
    assert search("task-2", "agent-3") != first

"""Finding, promoting and auditing adapters (issue 13): search, children, aliases and their
history, tags, the evaluation history, unarchive; their rules and their typed errors with
nothing written; on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from adapter_registry import (
    AdapterNotFoundError,
    AdapterRegistry,
    InvalidAdapterError,
    schema,
)
from adapter_registry.record import COLUMNS

from conftest import raw_sql


def _ids(records: list[Any]) -> list[str]:
    return [r.id for r in records]


@pytest.fixture
def population(store_one: Any, registry: AdapterRegistry) -> dict[str, Any]:
    """Six adapters across two agents, sessions and task types, some evaluated, one child."""
    a = store_one(seed=1, agent_id="agent-7", session_id="run-42", fitness_score=0.9,
                  pass_rate=0.8)  # fmt: skip
    b = store_one(seed=2, agent_id="agent-7", session_id="run-42", fitness_score=0.7)
    c = store_one(seed=3, agent_id="agent-8", session_id="run-42", fitness_score=0.95)
    d = store_one(seed=4, agent_id="agent-7", session_id="run-43")  # not evaluated
    e = store_one(seed=5, task_type="refactor", agent_id="agent-7", fitness_score=0.85,
                  parent_ids=[a.id])  # fmt: skip
    f = store_one(seed=6, agent_id="agent-7", session_id="run-42", fitness_score=0.9)
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f}


def test_search_answers_the_daily_questions(
    registry: AdapterRegistry, population: dict[str, Any]
) -> None:
    p = population
    found = registry.search(agent_id="agent-7", session_id="run-42", min_fitness=0.8)
    assert _ids(found) == [p["f"].id, p["a"].id]  # newest first by default
    top = registry.search(task_type="bug-fix", order_by="-fitness_score", limit=5)
    # Equal fitness (a and f at 0.9): the earlier created_at first; the unevaluated d last.
    assert _ids(top) == [p["c"].id, p["a"].id, p["f"].id, p["b"].id, p["d"].id]
    assert _ids(registry.search(parent_id=p["a"].id)) == [p["e"].id]
    assert _ids(registry.search(evaluated=False)) == [p["d"].id]
    assert _ids(registry.search(min_pass_rate=0.5)) == [p["a"].id]
    assert _ids(registry.search(max_fitness=0.75)) == [p["b"].id]
    assert _ids(registry.search(generation=1)) == [p["e"].id]
    assert _ids(registry.search(task_type="refactor", base_model_id="tiny/qwen2-2layer")) == [
        p["e"].id
    ]
    assert len(registry.search(limit=2, offset=5, order_by="created_at")) == 1
    assert registry.search(limit=0) == []


def test_every_order_is_total_with_nulls_last_either_way(
    registry: AdapterRegistry, population: dict[str, Any]
) -> None:
    for column in COLUMNS:
        for order in (column, f"-{column}"):
            found = registry.search(order_by=order)
            assert len(found) == 6, order
            values = [getattr(r, column) for r in found]
            present = [v for v in values if v is not None]
            assert values == present + [None] * (len(values) - len(present)), order
            keyed = [(getattr(r, column), r.created_at, r.id) for r in found]
            expected = sorted(
                (k for k in keyed if k[0] is not None),
                key=lambda k: k[1:],
            )
            expected.sort(key=lambda k: k[0], reverse=order.startswith("-"))  # stable
            assert [k for k in keyed if k[0] is not None] == expected, order


def test_time_filters_take_aware_times_only(
    registry: AdapterRegistry, population: dict[str, Any]
) -> None:
    p = population
    middle = datetime.fromisoformat(p["c"].created_at)
    assert _ids(registry.search(created_after=middle, order_by="created_at")) == [
        p["d"].id, p["e"].id, p["f"].id,
    ]  # fmt: skip
    in_paris = middle.astimezone(timezone(timedelta(hours=1)))
    assert _ids(registry.search(created_before=in_paris, order_by="created_at")) == [
        p["a"].id, p["b"].id,
    ]  # fmt: skip
    with pytest.raises(InvalidAdapterError, match="no time zone"):
        registry.search(created_after=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"order_by": "weights"}, "names no column"),
        ({"order_by": "-"}, "names no column"),
        ({"limit": -1}, "limit must be an integer >= 0"),
        ({"offset": -3}, "offset must be"),
        ({"limit": 2.5}, "limit must be"),
        ({"min_fitness": "high"}, "must be a number"),
        ({"min_fitness": float("nan")}, "must be finite"),
        ({"agent_id": 7}, "must be a string"),
        ({"evaluated": "yes"}, "True, False or None"),
        ({"tags": {"k": 1}}, "dict of strings"),
        ({"created_before": "2026-01-01"}, "must be a datetime"),
        ({"generation": -1}, "generation -1"),
    ],
)
def test_a_bad_search_is_refused(
    registry: AdapterRegistry, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidAdapterError, match=match):
        registry.search(**kwargs)


def test_children_and_lineage_go_both_ways(store_one: Any, registry: AdapterRegistry) -> None:
    a, b = store_one(seed=1), store_one(seed=2)
    c = store_one(seed=3, parent_ids=[a.id, b.id])
    d = store_one(seed=4, parent_ids=[c.id])
    assert _ids(registry.children(a.id)) == [c.id] == _ids(registry.children(b.id))
    assert _ids(registry.children(c.id)) == [d.id] and registry.children(d.id) == []
    assert _ids(registry.lineage(d.id)) == [c.id, a.id, b.id]
    with pytest.raises(AdapterNotFoundError):
        registry.children(str(uuid.uuid4()))


def test_migration_0003_fills_the_edges_from_existing_rows(
    request: pytest.FixtureRequest,
    backend: str,
    registry: AdapterRegistry,
    home: Path,
    tmp_path: Path,
    store_one: Any,
) -> None:
    parent, child = store_one(seed=1), store_one(seed=2)
    rows = [
        dict(zip(COLUMNS, row, strict=True))
        for row in raw_sql(
            registry, f"SELECT {', '.join(COLUMNS)} FROM adapter_records ORDER BY created_at"
        )
    ]
    rows[1]["parent_ids"] = json.dumps([rows[0]["id"]])
    # The same rows in a database that stopped at revision 0002 (which had no edges), then
    # opened by this release.
    older = tmp_path / "migrations-0002"
    shutil.copytree(schema.MIGRATIONS, older)
    for later in older.glob("versions/*.py"):
        if later.name >= "0003":
            later.unlink()
    if backend == "sqlite":
        old_url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        old_url = request.getfixturevalue("postgres").create_database(f"old_{uuid.uuid4().hex[:8]}")
    engine = create_engine(old_url, poolclass=NullPool)
    with engine.begin() as conn:
        assert schema.upgrade(conn, older) == "0002"
        columns = ", ".join(COLUMNS)
        values = ", ".join(f":{c}" for c in COLUMNS)
        for row in rows:
            conn.execute(text(f"INSERT INTO adapter_records ({columns}) VALUES ({values})"), row)
    engine.dispose()
    # Its root as that release left it: the adapters, no registry marker (README: a registry
    # made before registry ids is bound on its first open).
    old_root = tmp_path / "old-root"
    shutil.copytree(registry.root, old_root, ignore=shutil.ignore_patterns(".registry.json"))
    reopened = AdapterRegistry(root=old_root, db_url=old_url)
    assert _ids(reopened.children(parent.id)) == [child.id]
    assert _ids(reopened.search(parent_id=parent.id)) == [child.id]
    reopened.close()


def test_an_alias_moves_keeps_its_history_and_rolls_back(
    store_one: Any, registry: AdapterRegistry
) -> None:
    old, new = store_one(seed=1), store_one(seed=2)
    registry.set_alias("production", old.id, by="alice")
    assert registry.resolve_alias("production").id == old.id
    registry.set_alias("production", new.id, by="bob")
    registry.set_alias("challenger", old.id)
    assert registry.aliases() == {"challenger": old.id, "production": new.id}
    history = registry.alias_history("production")
    assert [(m.adapter_id, m.moved_by) for m in history] == [(old.id, "alice"), (new.id, "bob")]
    assert history[0].moved_at < history[1].moved_at
    registry.set_alias("production", history[0].adapter_id, by="rollback")  # the rollback
    assert registry.resolve_alias("production").id == old.id
    registry.delete_alias("challenger")
    assert [m.adapter_id for m in registry.alias_history("challenger")] == [old.id, None]
    with pytest.raises(AdapterNotFoundError, match="alias 'challenger' is not set"):
        registry.resolve_alias("challenger")
    with pytest.raises(AdapterNotFoundError):
        registry.delete_alias("challenger")


def test_an_alias_never_points_at_an_archived_adapter(
    store_one: Any, registry: AdapterRegistry
) -> None:
    live, retired = store_one(seed=1), store_one(seed=2)
    registry.archive(retired.id)
    with pytest.raises(InvalidAdapterError, match="archived"):
        registry.set_alias("production", retired.id)
    assert registry.aliases() == {} and registry.alias_history("production") == []
    registry.set_alias("production", live.id)
    with pytest.raises(InvalidAdapterError, match="alias 'production' points at it"):
        registry.archive(live.id)
    assert not registry.retrieve_by_id(live.id).is_archived
    registry.set_alias("production", registry.unarchive(retired.id).id)
    assert registry.archive(live.id).is_archived  # free once the alias has moved
    assert registry.unarchive(live.id).is_archived is False
    assert registry.unarchive(live.id).is_archived is False  # idempotent


@pytest.mark.parametrize(
    "alias",
    ["Production", "-x", "", "a b", "x" * 129, "deadbeef", "3f2a9c1e-5b7d", str(uuid.uuid4()),
     "a/b", "best:bug-fix", "é"],
)  # fmt: skip
def test_alias_names_are_checked_and_never_id_shaped(
    store_one: Any, registry: AdapterRegistry, alias: str
) -> None:
    record = store_one()
    with pytest.raises(InvalidAdapterError, match="alias"):
        registry.set_alias(alias, record.id)
    assert registry.aliases() == {}


def test_aliases_and_tags_of_an_unknown_adapter_write_nothing(registry: AdapterRegistry) -> None:
    nobody = str(uuid.uuid4())
    with pytest.raises(AdapterNotFoundError, match=nobody):
        registry.set_alias("production", nobody)
    with pytest.raises(AdapterNotFoundError, match=nobody):
        registry.set_tags(nobody, {"team": "x"})
    with pytest.raises(AdapterNotFoundError):
        registry.record_evaluation(nobody, "pass@1", 0.5)
    assert raw_sql(registry, "SELECT count(*) FROM alias_moves") == [(0,)]
    assert raw_sql(registry, "SELECT count(*) FROM adapter_tags") == [(0,)]
    assert raw_sql(registry, "SELECT count(*) FROM evaluations") == [(0,)]


def test_tags_are_set_replaced_deleted_and_searched(
    store_one: Any, registry: AdapterRegistry
) -> None:
    a, b = store_one(seed=1), store_one(seed=2)
    assert registry.set_tags(a.id, {"team": "search", "stage": "beta"}) == {
        "stage": "beta", "team": "search",
    }  # fmt: skip
    registry.set_tags(b.id, {"team": "search"})
    assert registry.set_tags(a.id, {"stage": "ga"})["stage"] == "ga"
    assert _ids(registry.search(tags={"team": "search"}, order_by="created_at")) == [a.id, b.id]
    assert _ids(registry.search(tags={"team": "search", "stage": "ga"})) == [a.id]
    assert registry.delete_tags(a.id, ["stage", "never-set"]) == {"team": "search"}
    assert registry.tags(b.id) == {"team": "search"}


@pytest.mark.parametrize(
    "tags, match",
    [
        ({"Team": "x"}, "tag key"),
        ({"team": "a\x1bb"}, "U\\+001B"),
        ({"team": ""}, "non-empty"),
        ({"deadbeef00": "x"}, "looks like an adapter id"),
        ({"team": 5}, "team"),
    ],
)
def test_bad_tags_set_none(
    store_one: Any, registry: AdapterRegistry, tags: dict[str, Any], match: str
) -> None:
    record = store_one()
    with pytest.raises(InvalidAdapterError, match=match):
        registry.set_tags(record.id, {"good": "kept out too", **tags})
    assert registry.tags(record.id) == {}


def test_the_evaluation_history_is_complete_and_never_moves_the_ranking(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one(fitness_score=0.5)
    first = registry.record_evaluation(
        record.id, "pass@1", 0.42, evaluator="ci", eval_set_hash="set-1", details={"n": 164}
    )
    assert first.details_dict() == {"n": 164} and first.id is not None
    assert registry.retrieve_by_id(record.id).fitness_score == 0.5  # ranking untouched
    registry.update_fitness(record.id, 0.8, pass_rate=0.6, evaluator="judge", eval_set_hash="s2")
    history = registry.evaluations(record.id)
    assert [(e.metric, e.value, e.evaluator) for e in history] == [
        ("pass@1", 0.42, "ci"), ("fitness_score", 0.8, "judge"), ("pass_rate", 0.6, "judge"),
    ]  # fmt: skip
    assert [e.metric for e in registry.evaluations(record.id, metric="pass_rate")] == ["pass_rate"]
    assert registry.query_best_for_task("bug-fix").fitness_score == 0.8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"value": float("inf")}, "not a finite number"),
        ({"value": None}, "not a finite number"),
        ({"details": {"blob": "x" * 70_000}}, "the limit is 65536"),
        ({"details": [1, 2]}, "must be a dict"),
        ({"details": {"x": float("nan")}}, "not JSON"),
        ({"metric": "m\n2"}, "metric"),
        ({"evaluator": "\x1b[2J"}, "evaluator"),
    ],
)
def test_a_bad_evaluation_writes_nothing(
    store_one: Any, registry: AdapterRegistry, kwargs: dict[str, Any], match: str
) -> None:
    record = store_one()
    arguments = {"metric": "pass@1", "value": 0.5, **kwargs}
    with pytest.raises(InvalidAdapterError, match=match):
        registry.record_evaluation(record.id, **arguments)
    assert registry.evaluations(record.id) == []


@pytest.mark.parametrize(
    "table, where",
    [
        ("evaluations", "1 = 1"),
        ("alias_moves", "1 = 1"),
        ("adapter_edges", "1 = 1"),
    ],
)
def test_the_histories_are_append_only_for_raw_sql_too(
    store_one: Any, registry: AdapterRegistry, table: str, where: str
) -> None:
    parent = store_one(seed=1)
    child = store_one(seed=2, parent_ids=[parent.id])
    registry.record_evaluation(child.id, "pass@1", 0.5)
    registry.set_alias("production", child.id)
    column = {"evaluations": "metric", "alias_moves": "alias", "adapter_edges": "child_id"}[table]
    with pytest.raises(sa_exc.DBAPIError, match="append-only"):
        raw_sql(registry, f"UPDATE {table} SET {column} = 'x' WHERE {where}")
    with pytest.raises(sa_exc.DBAPIError, match="append-only"):
        raw_sql(registry, f"DELETE FROM {table} WHERE {where}")
    assert raw_sql(registry, f"SELECT count(*) FROM {table}") == [(1,)]

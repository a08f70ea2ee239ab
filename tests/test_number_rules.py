"""The database holds the number rules (issue 12, item 5; migration 0002): finite scores,
pass_rate in [0, 1], version >= 1, generation >= 0, for raw SQL too. Rows that broke a rule
before the rules existed never stop the migration; it reports them, verify() reports them,
and ranking and JSON output ignore what is not finite. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from adapter_registry import AdapterRegistry, schema
from adapter_registry.binding import MARKER
from adapter_registry.cli import cli
from adapter_registry.record import COLUMNS

from conftest import raw_sql


def infinity(registry: AdapterRegistry) -> str:
    """+Infinity as SQL: a literal too large for a double on SQLite, named on PostgreSQL."""
    return "'Infinity'::float8" if registry.db_url.startswith("postgresql") else "9e999"


def _refused(registry: AdapterRegistry, sql: str, **params: Any) -> None:
    with pytest.raises(sa_exc.DBAPIError, match=r"number rule|violates check constraint"):
        raw_sql(registry, sql, **params)


def test_raw_sql_cannot_break_a_number_rule(store_one: Any, registry: AdapterRegistry) -> None:
    record = store_one(fitness_score=0.5, pass_rate=0.5)
    where = {"id": record.id}
    _refused(registry, "UPDATE adapter_records SET pass_rate = 7 WHERE id = :id", **where)
    _refused(registry, "UPDATE adapter_records SET pass_rate = -0.5 WHERE id = :id", **where)
    inf = infinity(registry)
    _refused(registry, f"UPDATE adapter_records SET fitness_score = {inf} WHERE id = :id", **where)
    _refused(registry, f"UPDATE adapter_records SET fitness_score = -{inf} WHERE id = :id", **where)
    if registry.db_url.startswith("postgresql"):  # SQLite stores a NaN as NULL
        _refused(registry, "UPDATE adapter_records SET fitness_score = 'NaN' WHERE id = :id",
                 **where)  # fmt: skip
    columns = ", ".join(COLUMNS)
    for column, value in (("version", "0"), ("generation", "-1")):
        copied = columns.replace("id,", ":new,", 1).replace(column, value, 1)
        _refused(
            registry,
            f"INSERT INTO adapter_records ({columns}) SELECT {copied} "
            "FROM adapter_records WHERE id = :id",
            new=str(uuid.uuid4()), **where,
        )  # fmt: skip
    raw_sql(registry, "UPDATE adapter_records SET pass_rate = 1 WHERE id = :id", **where)
    assert registry.retrieve_by_id(record.id).pass_rate == 1.0


def _as_before_the_rules(registry: AdapterRegistry) -> None:
    """The database as revision 0001 left it: no number rules, and none of what came after."""
    for table in ("adapter_edges", "adapter_aliases", "alias_moves", "adapter_tags", "evaluations"):
        raw_sql(registry, f"DROP TABLE {table}")
    for index in ("agent", "session", "task_rank"):
        raw_sql(registry, f"DROP INDEX ix_adapter_records_{index}")
    if registry.db_url.startswith("postgresql"):
        for name in ("version", "generation", "pass_rate", "fitness_finite"):
            raw_sql(registry, f"ALTER TABLE adapter_records DROP CONSTRAINT adapter_records_{name}")
    else:
        for event in ("insert", "update"):
            raw_sql(registry, f"DROP TRIGGER adapter_records_number_rules_{event}")
    for table in sorted(_tables_after_0001(registry)):  # registry_identity (0005) and later
        raw_sql(registry, f"DROP TABLE {table}")
    raw_sql(registry, "UPDATE alembic_version SET version_num = '0001'")
    (registry.root / MARKER).unlink()  # a root of that release has no registry marker


def _tables_after_0001(registry: AdapterRegistry) -> set[str]:
    engine = create_engine(registry.db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            found = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    return found - {"adapter_records", "alembic_version"}


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_rows_broken_before_the_rules_are_kept_reported_and_never_ranked(
    store_one: Any,
    registry: AdapterRegistry,
    home: Any,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    honest = store_one(seed=1, fitness_score=0.5, pass_rate=0.5)
    infinite = store_one(seed=2, fitness_score=0.1)
    overrated = store_one(seed=3, fitness_score=0.2, pass_rate=0.2)
    _as_before_the_rules(registry)
    inf = infinity(registry)
    raw_sql(registry, f"UPDATE adapter_records SET fitness_score = {inf} WHERE id = :id",
            id=infinite.id)  # fmt: skip
    raw_sql(registry, "UPDATE adapter_records SET pass_rate = 7 WHERE id = :id", id=overrated.id)

    with caplog.at_level(logging.WARNING, logger="adapter_registry"):
        reopened = AdapterRegistry(root=home / "adapters", db_url=db_url)  # migrates to 0002
    assert raw_sql(reopened, "SELECT version_num FROM alembic_version") == [(schema.HEAD,)]
    assert "2 adapter_records rows break the number rules" in caplog.text
    assert infinite.id in caplog.text and overrated.id in caplog.text

    reports = {r.adapter_id: r for r in reopened.verify_all()}
    assert reports[honest.id].ok
    assert reports[infinite.id].status == "mismatch"
    assert reports[infinite.id].problems == (
        "its row breaks a number rule: fitness_score inf is not a finite number",
    )
    assert reports[overrated.id].problems == (
        "its row breaks a number rule: pass_rate 7.0 is outside 0..1",
    )
    best = reopened.query_best_for_task("bug-fix")
    assert best is not None and best.id == honest.id

    run = CliRunner().invoke(cli, ["--root", str(home / "adapters"), "--db-url", db_url,
                                   "ls", "--json"])  # fmt: skip
    assert run.exit_code == 0, run.output
    by_id = {r["id"]: r for r in _strict_json(run.output)}
    assert by_id[infinite.id]["fitness_score"] is None
    # The broken rows can be mended (and then archived) through the API.
    reopened.update_fitness(overrated.id, pass_rate=0.7)
    assert reopened.archive(overrated.id).is_archived
    reopened.close()

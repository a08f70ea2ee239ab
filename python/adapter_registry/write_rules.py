"""What may change in the registry's tables: declared once, on the models, and enforced by the
database for every writer, raw SQL included.

A table says how it is written with ``__table_args__ = writes(KIND)``:

- ``WRITE_ONCE``: a row is inserted once and never replaced or deleted; an UPDATE may change
  only the columns declared ``MUTABLE`` (``sa_column_kwargs=MUTABLE``). A column is immutable
  unless it says otherwise, so a column added later is write-once by default.
- ``APPEND_ONLY``: rows are inserted and never changed or deleted (histories, evaluations).
- ``MUTABLE_TABLE``: no rule (aliases, tags).

The rules are triggers, made from this declaration and from the columns the table has in the
database at the time, and installed by ``schema.upgrade`` after every migration: a column that
any migration adds is covered without that migration saying so. The migrations themselves keep
their fixed DDL (0001's triggers are the first release's; these replace them, same names).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Table, inspect, text

__all__ = [
    "APPEND_ONLY",
    "MUTABLE",
    "MUTABLE_TABLE",
    "WRITE_ONCE",
    "install",
    "mutable_columns",
    "writes",
]

WRITE_ONCE = "write-once"
APPEND_ONLY = "append-only"
MUTABLE_TABLE = "mutable"

#: Column keyword arguments that declare a column of a write-once table mutable.
MUTABLE: dict[str, Any] = {"info": {"mutable": True}}


def writes(kind: str) -> dict[str, Any]:
    """``__table_args__`` declaring how a table is written."""
    if kind not in (WRITE_ONCE, APPEND_ONLY, MUTABLE_TABLE):
        raise ValueError(f"unknown write rule {kind!r}")
    return {"info": {"writes": kind}}


def kind_of(table: Table) -> str:
    """A table's declared rule; a table that declares none is write-once."""
    return str(table.info.get("writes", WRITE_ONCE))


def mutable_columns(table: Table) -> list[str]:
    """The columns an UPDATE may change, in table order (none unless the table is write-once)."""
    if kind_of(table) != WRITE_ONCE:
        return []
    return [c.name for c in table.columns if c.info.get("mutable")]


def install(conn: Connection, tables: Iterable[Table]) -> None:
    """(Re)create the triggers of each table, over the columns it has in the database now
    (tables not there yet, where the migrations stopped short of head, are left for later)."""
    inspector = inspect(conn)
    for table in tables:
        kind = kind_of(table)
        if kind == MUTABLE_TABLE or not inspector.has_table(table.name):
            continue  # no rule, or a table a later migration makes
        columns = [c["name"] for c in inspector.get_columns(table.name)]
        if conn.dialect.name == "postgresql":
            statements = _postgres(table.name, kind, mutable_columns(table))
        else:
            keys = [c.name for c in table.primary_key.columns]
            statements = _sqlite(table.name, kind, columns, mutable_columns(table), keys)
        for statement in statements:
            conn.execute(text(statement))


def _messages(name: str, kind: str, mutable: list[str]) -> tuple[str, str, str]:
    """(on a refused update, on a delete, on a replace) for a table."""
    if mutable:
        listed = mutable[0] if len(mutable) == 1 else f"{', '.join(mutable[:-1])} and {mutable[-1]}"
        update = f"{name} is {kind}: only {listed} may change"
    else:
        update = f"{name} is {kind}: rows never change"
    return (
        update,
        f"{name} is {kind}: rows are never deleted",
        (f"{name} is {kind}: that id is already registered"),
    )


def _sqlite(
    name: str, kind: str, columns: list[str], mutable: list[str], keys: list[str]
) -> list[str]:
    update, delete, replace = _messages(name, kind, mutable)
    guarded = [c for c in columns if c not in mutable]
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in guarded)
    same_key = " AND ".join(f"{k} = NEW.{k}" for k in keys)
    return [
        f"DROP TRIGGER IF EXISTS {name}_write_once",
        f"""CREATE TRIGGER {name}_write_once BEFORE UPDATE ON {name} FOR EACH ROW
        WHEN {changed or "1"} BEGIN SELECT RAISE(ABORT, '{update}'); END""",
        # INSERT OR REPLACE deletes the old row without firing DELETE triggers: refuse it here.
        f"DROP TRIGGER IF EXISTS {name}_no_replace",
        f"""CREATE TRIGGER {name}_no_replace BEFORE INSERT ON {name} FOR EACH ROW
        WHEN EXISTS (SELECT 1 FROM {name} WHERE {same_key})
        BEGIN SELECT RAISE(ABORT, '{replace}'); END""",
        f"DROP TRIGGER IF EXISTS {name}_no_delete",
        f"""CREATE TRIGGER {name}_no_delete BEFORE DELETE ON {name} FOR EACH ROW
        BEGIN SELECT RAISE(ABORT, '{delete}'); END""",
    ]


def _postgres(name: str, kind: str, mutable: list[str]) -> list[str]:
    update, delete, _ = _messages(name, kind, mutable)
    # The row as JSON without its mutable columns: every other column, present or future, counts.
    keep = f"ARRAY[{', '.join(repr(c) for c in mutable)}]::text[]"
    error = "USING ERRCODE = 'integrity_constraint_violation'"
    return [
        f"""CREATE OR REPLACE FUNCTION {name}_write_once() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
                RAISE EXCEPTION '{delete}' {error};
            END IF;
            IF to_jsonb(NEW) - {keep} IS DISTINCT FROM to_jsonb(OLD) - {keep} THEN
                RAISE EXCEPTION '{update}' {error};
            END IF;
            RETURN NEW;
        END $$""",
        f"DROP TRIGGER IF EXISTS {name}_write_once ON {name}",
        f"""CREATE TRIGGER {name}_write_once BEFORE UPDATE OR DELETE ON {name}
        FOR EACH ROW EXECUTE FUNCTION {name}_write_once()""",
        f"DROP TRIGGER IF EXISTS {name}_no_truncate ON {name}",
        f"""CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name}
        FOR EACH STATEMENT EXECUTE FUNCTION {name}_write_once()""",
    ]

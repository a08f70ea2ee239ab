"""The number rules in the database: finite scores, pass_rate in [0, 1], version >= 1 and
generation >= 0, for every writer, raw SQL included.

PostgreSQL gets CHECK constraints, added NOT VALID: rows written by hand before this revision
are not checked (the migration never refuses to run because of them), every later write is.
SQLite gets triggers (a CHECK would mean rebuilding a write-once table). Either way the rows
that already break a rule are reported, by a warning here and by every verify().

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import logging

from alembic import op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MESSAGE = (
    "adapter_records breaks a number rule: scores are finite, pass_rate is in [0, 1], "
    "version >= 1, generation >= 0"
)
#: The largest finite double: anything beyond it (or NaN, on PostgreSQL) is not finite.
_MAX = "1.7976931348623157e308"


def _rule(row: str, most: str) -> str:
    """The rules over one row's columns (``row`` is "NEW." in a trigger, "" in a query)."""
    return f"""(
        {row}version >= 1
        AND ({row}generation IS NULL OR {row}generation >= 0)
        AND ({row}pass_rate IS NULL OR ({row}pass_rate >= 0 AND {row}pass_rate <= 1))
        AND ({row}fitness_score IS NULL
             OR ({row}fitness_score >= -{most} AND {row}fitness_score <= {most}))
    )"""


SQLITE_TRIGGERS = tuple(
    f"""CREATE TRIGGER adapter_records_number_rules_{event.lower()}
    BEFORE {event} ON adapter_records FOR EACH ROW WHEN NOT {_rule("NEW.", _MAX)}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"""
    for event in ("INSERT", "UPDATE")
)

POSTGRES_CONSTRAINTS = (
    "ALTER TABLE adapter_records ADD CONSTRAINT adapter_records_version CHECK (version >= 1) "
    "NOT VALID",
    "ALTER TABLE adapter_records ADD CONSTRAINT adapter_records_generation "
    "CHECK (generation >= 0) NOT VALID",
    # NaN sorts above every number on PostgreSQL, so '<= 1' and '< Infinity' exclude it too.
    "ALTER TABLE adapter_records ADD CONSTRAINT adapter_records_pass_rate "
    "CHECK (pass_rate >= 0 AND pass_rate <= 1) NOT VALID",
    "ALTER TABLE adapter_records ADD CONSTRAINT adapter_records_fitness_finite "
    "CHECK (fitness_score > '-Infinity' AND fitness_score < 'Infinity') NOT VALID",
)


def upgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    most = f"'{_MAX}'::float8" if postgres else _MAX  # PostgreSQL puts NaN above Infinity
    found = op.get_bind().execute(
        text(f"SELECT id FROM adapter_records WHERE NOT {_rule('', most)}")
    )
    broken = sorted(row[0] for row in found)
    if broken:
        logging.getLogger("adapter_registry").warning(
            "%d adapter_records rows break the number rules and were kept (verify reports "
            "them): %s",
            len(broken),
            ", ".join(broken[:20]),
        )
    for statement in POSTGRES_CONSTRAINTS if postgres else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the registry's schema only moves forward")

"""The first schema: adapter_records, its indexes, and the write-once triggers.

On SQLite this is exactly the schema the first release made without Alembic (so its databases
are stamped with this revision and carry on). On PostgreSQL the spec's types map to their
64-bit equivalents (SQLite's INTEGER and REAL are 64-bit: BIGINT and DOUBLE PRECISION), and the
triggers are PL/pgSQL. The DDL is written out, not derived from the model, so that this
revision stays what it was whatever later releases change.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MUTABLE = ("pass_rate", "fitness_score", "is_archived")
IMMUTABLE = (
    "id", "version", "task_type", "base_model_id", "rank", "created_at", "file_path",
    "file_hash", "file_size_bytes", "source", "session_id", "parent_ids", "generation",
    "training_task_hash", "agent_id", "config_hash",
)  # fmt: skip
ONLY_EVALUATION = (
    "adapter_records is write-once: only pass_rate, fitness_score and is_archived may change"
)
NO_DELETE = "adapter_records is write-once: rows are never deleted"
NO_REPLACE = "adapter_records is write-once: that id is already registered"


def table(integer: str, real: str) -> str:
    return f"""CREATE TABLE adapter_records (
        id TEXT NOT NULL,
        version {integer} NOT NULL,
        task_type TEXT NOT NULL,
        base_model_id TEXT NOT NULL,
        rank {integer} NOT NULL,
        created_at TEXT NOT NULL,
        file_path TEXT NOT NULL,
        file_hash TEXT NOT NULL,
        file_size_bytes {integer} NOT NULL,
        pass_rate {real},
        fitness_score {real},
        source TEXT NOT NULL,
        session_id TEXT NOT NULL,
        is_archived INTEGER DEFAULT 0,
        parent_ids TEXT,
        generation {integer} DEFAULT 0,
        training_task_hash TEXT,
        agent_id TEXT,
        config_hash TEXT NOT NULL,
        PRIMARY KEY (id)
    )"""


INDEXES = (
    "CREATE INDEX ix_adapter_records_task_type ON adapter_records (task_type)",
    "CREATE INDEX ix_adapter_records_training_task_hash ON adapter_records (training_task_hash)",
    # query_best_for_task: one range scan of this partial index, already in ranking order
    "CREATE INDEX ix_adapter_records_best ON adapter_records "
    "(task_type, fitness_score DESC, created_at, id) "
    "WHERE is_archived = 0 AND fitness_score IS NOT NULL",
)

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER adapter_records_write_once
    BEFORE UPDATE ON adapter_records FOR EACH ROW
    WHEN {" OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in IMMUTABLE)}
    BEGIN SELECT RAISE(ABORT, '{ONLY_EVALUATION}'); END""",
    # INSERT OR REPLACE deletes the old row without firing DELETE triggers: refuse it here.
    f"""CREATE TRIGGER adapter_records_no_replace
    BEFORE INSERT ON adapter_records FOR EACH ROW
    WHEN EXISTS (SELECT 1 FROM adapter_records WHERE id = NEW.id)
    BEGIN SELECT RAISE(ABORT, '{NO_REPLACE}'); END""",
    f"""CREATE TRIGGER adapter_records_no_delete
    BEFORE DELETE ON adapter_records FOR EACH ROW
    BEGIN SELECT RAISE(ABORT, '{NO_DELETE}'); END""",
)

_OLD = ", ".join(f"OLD.{c}" for c in IMMUTABLE)
_NEW = ", ".join(f"NEW.{c}" for c in IMMUTABLE)
POSTGRES_TRIGGERS = (
    f"""CREATE FUNCTION adapter_records_write_once() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
            RAISE EXCEPTION '{NO_DELETE}' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        IF ROW({_NEW}) IS DISTINCT FROM ROW({_OLD}) THEN
            RAISE EXCEPTION '{ONLY_EVALUATION}' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER adapter_records_write_once BEFORE UPDATE OR DELETE ON adapter_records
    FOR EACH ROW EXECUTE FUNCTION adapter_records_write_once()""",
    """CREATE TRIGGER adapter_records_no_truncate BEFORE TRUNCATE ON adapter_records
    FOR EACH STATEMENT EXECUTE FUNCTION adapter_records_write_once()""",
)


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        statements = (table("BIGINT", "DOUBLE PRECISION"), *INDEXES, *POSTGRES_TRIGGERS)
    else:
        statements = (table("INTEGER", "REAL"), *INDEXES, *SQLITE_TRIGGERS)
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the registry's schema only moves forward")

"""An index for "the top N for a task": search(task_type=T, order_by="-fitness_score", limit=N).

That search ranks every adapter of the task, the unevaluated ones last (NULLs last), so neither
ix_adapter_records_best (evaluated ones only) nor ix_adapter_records_agent (agent first) can
give its order: without this index each call sorts all of the task's adapters. SQLite's
descending order already puts NULLs last (and its indexes take no NULLS clause); PostgreSQL's
puts them first unless told.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    op.execute(
        "CREATE INDEX ix_adapter_records_task_rank ON adapter_records "
        f"(task_type, fitness_score DESC{'' if sqlite else ' NULLS LAST'}, created_at, id)"
    )
    if sqlite:
        # query_best_for_task can now take either index at the same estimated cost, and
        # SQLite (which keeps no statistics here) breaks the tie for the newest: make the
        # partial index, whose rows are exactly the ranked ones, the newest again.
        op.execute("DROP INDEX ix_adapter_records_best")
        op.execute(f"CREATE INDEX ix_adapter_records_best ON adapter_records {BEST}")


#: ix_adapter_records_best as revision 0001 made it.
BEST = (
    "(task_type, fitness_score DESC, created_at, id) "
    "WHERE is_archived = 0 AND fitness_score IS NOT NULL"
)


def downgrade() -> None:
    raise NotImplementedError("the registry's schema only moves forward")

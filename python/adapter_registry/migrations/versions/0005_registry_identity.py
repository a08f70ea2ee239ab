"""Registry identity: the id that binds a database to its root (``binding.py``).

One row at most (``singleton`` is 1), written once when the registry is bound, never changed
(its write rule is write-once). The same id is kept in the root's ``.registry.json``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE registry_identity (
            singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
            registry_id TEXT NOT NULL,
            bound_at TEXT NOT NULL
        )"""
    )


def downgrade() -> None:
    raise NotImplementedError("the registry's schema only moves forward")

"""Schema versions: the database is brought to the newest Alembic revision when a registry opens.

Opening an up-to-date database costs one small query and never imports Alembic. Otherwise the
migrations in ``migrations/versions`` run inside one write transaction, under the database's
own lock (SQLite's write lock, taken by ``BEGIN IMMEDIATE``; a PostgreSQL advisory lock), so
that many processes or hosts opening a new registry at once migrate it exactly once. A SQLite
database made by the first release, before Alembic, is stamped with the first revision, whose
schema it already has, and carried on from there. After the migrations, the tables' write
rules (``write_rules.py``) are installed anew over the columns the tables now have.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy import exc as sa_exc

from . import write_rules
from .binding import IDENTITY
from .record import TABLE
from .tables import ALIAS_MOVES, ALIASES, EDGES, EVALUATIONS, TAGS, VERIFY_REPORTS

__all__ = ["HEAD", "MIGRATIONS", "TABLES", "current_revision", "ensure", "upgrade"]

#: The newest revision under migrations/versions (a test checks that they agree).
HEAD = "0006"
#: The registry's tables (never the rest of SQLModel's metadata, which a caller's own models share).
TABLES = (TABLE, EDGES, ALIASES, ALIAS_MOVES, TAGS, EVALUATIONS, IDENTITY, VERIFY_REPORTS)
#: Where the migration scripts are.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: The PostgreSQL advisory lock key that serializes migrations ("adapter_registry").
_PG_LOCK = 0x0ADA_7E12


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None if it has none (new, or made before Alembic)."""
    with engine.connect() as conn:
        try:
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except sa_exc.DBAPIError:
            return None
    return None if found is None else str(found)


def upgrade(conn: Connection, script_location: Path = MIGRATIONS) -> str | None:
    """Bring the database behind `conn`, in a write transaction, to the newest revision."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = conn
    tables = inspect(conn).get_table_names()
    if "adapter_records" in tables and "alembic_version" not in tables:
        command.stamp(config, "0001")  # the first release's schema is revision 0001
    command.upgrade(config, "head")
    write_rules.install(conn, TABLES)
    return MigrationContext.configure(conn).get_current_revision()


def ensure(read_engine: Engine, write_engine: Engine) -> None:
    """Open-time check: one query when up to date, the migrations otherwise."""
    if current_revision(read_engine) == HEAD:
        return
    with write_engine.begin() as conn:
        upgrade(conn)  # a no-op if another process migrated while we waited for the lock

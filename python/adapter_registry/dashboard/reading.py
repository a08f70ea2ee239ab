"""The dashboard's access to a registry: read-only, from the first connection on.

SQLite is opened through a ``mode=ro`` URI (both the SQLAlchemy engine and the raw read path),
so no statement on these connections can write, whatever the state of the WAL files; PostgreSQL
connections set ``default_transaction_read_only``, so every transaction they run is read-only.
Opening never creates anything: a missing database, a database with no registry schema in it or
a missing root is ``RegistryNotFoundError``; a schema other than this release's is refused
(no migration runs here: a writer of this release migrates on its next open).

``ReadOnlyRegistry`` mixes in the registry's own read methods (``search``, ``children``,
``tags``, ``evaluations``, ``aliases``, ``latest_verify_report``), so the dashboard's queries
are the registry's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import URL, create_engine, event, make_url, text
from sqlalchemy import exc as sa_exc

from .. import schema
from ..database import Database
from ..errors import AdapterStorageError, RegistryNotFoundError
from ..evaluating import Evaluating
from ..fast_reads import BUSY_TIMEOUT_MS, PostgresReader, RawReader, SqliteReader
from ..finding import Finding
from ..home import locate, shown_url
from ..identity import check_identity
from ..promoting import Promoting
from ..records import Records
from ..saved_reports import SavedReports

__all__ = ["ReadOnlyDatabase", "ReadOnlyRegistry", "read_only_url"]

#: PostgreSQL: every transaction of the session is read-only.
_PG_READ_ONLY = "-c default_transaction_read_only=on"


def read_only_url(url: URL) -> URL:
    """SQLite's ``mode=ro`` URI form of a database URL (PostgreSQL's URL is kept as it is)."""
    if url.get_backend_name() != "sqlite":
        return url
    path = Path(url.database or "").expanduser().resolve()
    return url.set(database=f"{path.as_uri()}?mode=ro", query={**url.query, "uri": "true"})


#: SQLite's page cache per read-only connection (KiB, as PRAGMA cache_size takes it negated):
#: a leaderboard page deep in 100k rows reads every row it skips, and thrashed the default 2 MiB.
CACHE_KIB = 65536


class _SqliteReadOnly(SqliteReader):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._uri = f"{path.resolve().as_uri()}?mode=ro"

    def _connect(self) -> Any:
        conn = super()._connect()
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        return conn


def _cache_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    cursor.close()


class _PostgresReadOnly(PostgresReader):
    def _connect(self) -> Any:
        return self._psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=self._timeout,
            options=_PG_READ_ONLY,
        )


class ReadOnlyDatabase(Database):
    """A ``Database`` whose connections cannot write; it neither creates nor migrates."""

    def __init__(self, url: str | URL, pool_size: int = 5, connect_timeout: float = 10.0) -> None:
        try:
            parsed = make_url(url)
        except sa_exc.ArgumentError as err:
            raise AdapterStorageError(f"database URL {url!r} cannot be used: {err}") from err
        self.dialect = parsed.get_backend_name()
        shown = self.shown = shown_url(parsed)
        self._connect_timeout = connect_timeout
        raw: RawReader | None
        if self.dialect == "sqlite":
            path = Path(parsed.database or "").expanduser()
            if not parsed.database or parsed.database == ":memory:" or not path.is_file():
                raise RegistryNotFoundError(f"no registry at {shown}: no database file there")
            options: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
            engine_url = read_only_url(parsed)
            raw = _SqliteReadOnly(path)
        else:
            options = {
                "pool_pre_ping": True,
                "connect_args": {
                    "connect_timeout": max(1, round(connect_timeout)),
                    "options": _PG_READ_ONLY,
                },
            }
            engine_url = parsed
            raw = None
            if parsed.get_driver_name() == "psycopg":
                conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
                raw = _PostgresReadOnly(conninfo, connect_timeout)
        try:
            self.engine = create_engine(engine_url, pool_size=pool_size, **options)
        except (sa_exc.ArgumentError, ImportError) as err:
            raise AdapterStorageError(f"database URL {shown!r} cannot be used: {err}") from err
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _cache_on_connect)
        self.write_engine = self.engine.execution_options()  # as read-only as the engine
        self._raw = raw
        self._compiled = {}
        try:
            self._check_schema(shown)
        except BaseException:
            self.dispose()
            raise

    def _check_schema(self, shown: str) -> None:
        """This release's schema, or a clear refusal; nothing is run but a SELECT."""
        with self._translated(), self.engine.connect() as conn:
            try:
                found = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except sa_exc.DBAPIError:
                found = None
                conn.rollback()
                has_records = self._has_table(conn, "adapter_records")
                if not has_records:
                    raise RegistryNotFoundError(
                        f"no registry at {shown}: the database holds no registry schema"
                    ) from None
        if found == schema.HEAD:
            return
        revision = "the first release's (no revision)" if found is None else f"revision {found}"
        known = sorted(p.name[:4] for p in (schema.MIGRATIONS / "versions").glob("[0-9]*.py"))
        if found is None or str(found) in known:
            raise AdapterStorageError(
                f"registry at {shown} has an older schema ({revision}) than this release's "
                f"(revision {schema.HEAD}); the dashboard never migrates: run any "
                "adapter-registry command on it once (adapter-registry stats) to bring it up "
                "to date, then open the dashboard"
            )
        raise AdapterStorageError(
            f"registry at {shown} has a newer schema ({revision}) than this release knows "
            f"(revision {schema.HEAD}): upgrade adapter-registry to open it"
        )

    @staticmethod
    def _has_table(conn: Any, name: str) -> bool:
        from sqlalchemy import inspect

        return bool(inspect(conn).has_table(name))


class ReadOnlyRegistry(Finding, Promoting, Evaluating, SavedReports):
    """A registry opened for reading only: the registry's read methods, on read-only
    connections (its write methods fail there: the database refuses them).

    Args:
        root: The adapter root; it must exist (it is never created).
        db_url: The database; it must hold a registry of this release's schema.
        home: Where the root and the database are when not given (as ``AdapterRegistry``).

    Raises:
        RegistryNotFoundError: No registry there (no database, no schema, no root; a root
            bound to no registry beside a database that is bound).
        RegistryMismatchError: The root and the database are not one registry.
        AdapterStorageError: The database cannot be read, or its schema is not this release's.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        db_url: str | URL | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        pool_size: int = 5,
    ) -> None:
        where, url = locate(root, db_url, home)
        self._db = ReadOnlyDatabase(url, pool_size=pool_size)
        try:
            if not where.is_dir():
                raise RegistryNotFoundError(f"no registry at {where}: the adapter root is missing")
            with self._db.read() as conn:  # one registry: the root's marker, the database's id
                self.registry_id = check_identity(conn, where, self._db.shown)
        except BaseException:
            self._db.dispose()
            raise
        self.root = where
        self.db_url = self._db.shown
        self._records = Records(self._db, where)

    @property
    def records(self) -> Records:
        return self._records

    @property
    def database(self) -> Database:
        return self._db

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> ReadOnlyRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

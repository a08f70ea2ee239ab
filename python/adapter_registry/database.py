"""The metadata store: one SQLAlchemy engine per registry, dialect-neutral except here.

SQLite is tuned for many writer processes on one host: WAL, a busy timeout, and write
transactions that begin ``IMMEDIATE`` (a deferred transaction that reads and then writes can
fail on a stale snapshot, which the busy timeout does not cover). PostgreSQL needs no such
care: every write is a single statement. On both, the schema comes from the migrations, and
the triggers that hold the write rules even for raw SQL from ``write_rules.py`` (``schema.py``).
"""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import Select

from . import fast_reads, schema
from .binding import has_table
from .errors import AdapterStorageError
from .home import shown_url
from .record import TABLE

__all__ = ["Database"]

BUSY_TIMEOUT_MS = fast_reads.BUSY_TIMEOUT_MS
_WRITE = "adapter_registry_write"


def _switch_to_wal(cursor: Any) -> None:
    """WAL, once per database. The switch needs the database to itself for a moment, and while
    another process creates or migrates a new database SQLite answers "locked" at once instead
    of waiting out the busy timeout: so wait here, as the busy timeout would."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, say when a transaction begins (see on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            _switch_to_wal(cursor)
        # FULL: a store that returned survives a power loss with its row, not only its files.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


#: SQLite's result codes that have an errno of the same meaning.
_SQLITE_ERRNO = {13: errno.ENOSPC, 8: errno.EROFS, 10: errno.EIO}  # FULL, READONLY, IOERR


def _storage_error(url: URL, cause: BaseException | None) -> AdapterStorageError:
    code = getattr(cause, "sqlite_errorcode", None)
    number = _SQLITE_ERRNO.get(code & 0xFF) if isinstance(code, int) else None
    message = f"database {url!r}: {' '.join(str(cause).split())}"  # one line
    return AdapterStorageError(number, message) if number else AdapterStorageError(message)


class Database:
    """An engine for reads and a view of it whose transactions take the write lock up front."""

    def __init__(
        self,
        url: str | URL,
        pool_size: int = 5,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        try:
            parsed = make_url(url)
        except sa_exc.ArgumentError as err:
            raise AdapterStorageError(f"database URL {url!r} cannot be used: {err}") from err
        self.dialect = parsed.get_backend_name()
        options: dict[str, Any] = {"pool_timeout": pool_timeout}
        if self.dialect == "sqlite":
            if parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed):
                # Each pooled connection would see a database of its own, gone when it closes,
                # while the adapters' files stay: a registry must outlive its process.
                raise AdapterStorageError(
                    f"database URL {url!r} cannot be used: an in-memory SQLite database does "
                    "not outlive the process; give a file (sqlite:///path/registry.db)"
                )
            options["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
        else:
            # A server may restart under us: test each pooled connection before handing it out.
            options["pool_pre_ping"] = True
            options["connect_args"] = {"connect_timeout": max(1, round(connect_timeout))}
        options["pool_size"] = pool_size
        try:
            self.engine = create_engine(parsed, **options)
        except (sa_exc.ArgumentError, ImportError) as err:
            hint = " (pip install 'adapter-registry[postgres]')" if "psycopg" in str(err) else ""
            raise AdapterStorageError(f"database URL {url!r} cannot be used: {err}{hint}") from err
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        self.write_engine = self.engine.execution_options(**{_WRITE: True})
        #: The database as messages name it (a SQLite file's path; a URL without password).
        self.shown = shown_url(parsed)
        self._raw: fast_reads.RawReader | None = None
        self._connect_timeout = connect_timeout
        self._compiled: dict[int, tuple[Select[Any], str, tuple[str, ...], dict[str, Any]]] = {}

    def exists(self) -> bool:
        """Whether a registry's schema is there; read-only (a SQLite file that is not there is
        not created)."""
        url = self.engine.url
        if self.dialect == "sqlite" and not Path(url.database or "").expanduser().is_file():
            return False
        with self._translated(), self.engine.connect() as conn:
            return has_table(conn, TABLE.name)

    def ensure_schema(self) -> None:
        """Create the database (a SQLite file and its folder) where absent, and bring its
        schema to this release's; then open the raw read path."""
        if self.dialect == "sqlite":
            folder = Path(self.engine.url.database or "").expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise AdapterStorageError(
                    err.errno, f"database {self.shown} cannot be created: {err.strerror}"
                ) from err
        with self._translated():
            schema.ensure(self.engine, self.write_engine)
        if self._raw is None:
            self._raw = fast_reads.reader_for(self.engine.url, self._connect_timeout)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._translated(), self.engine.connect() as conn:
            yield conn

    def fetch(self, stmt: Select[Any], **params: Any) -> Sequence[Sequence[Any]]:
        """Rows of a read statement: its compiled text run on the raw driver (fast_reads.py),
        or through SQLAlchemy where there is no raw reader or the statement needs it."""
        if self._raw is not None:
            compiled = self._compiled.get(id(stmt))
            if compiled is None or compiled[0] is not stmt:
                c = stmt.compile(dialect=self.engine.dialect)
                compiled = (stmt, c.string, tuple(c.positiontup or ()), dict(c.params))
                self._compiled[id(stmt)] = compiled
            _, sql, names, defaults = compiled
            if "POSTCOMPILE" not in sql:  # expanding IN lists need SQLAlchemy
                try:
                    return self._raw.fetch(sql, names, {**defaults, **params})
                except self._raw.errors as err:
                    raise _storage_error(self.engine.url, err) from err
        with self.read() as conn:
            return [tuple(row) for row in conn.execute(stmt, params)]

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A short write transaction, committed on exit."""
        with self._translated(), self.write_engine.begin() as conn:
            yield conn

    @contextmanager
    def _translated(self) -> Iterator[None]:
        # Driver failures other than constraint violations become our storage error.
        try:
            yield
        except sa_exc.IntegrityError:
            raise
        except sa_exc.DBAPIError as err:
            raise _storage_error(self.engine.url, err.orig) from err

    def dispose(self) -> None:
        if self._raw is not None:
            self._raw.close()
        self.engine.dispose()

    def __getstate__(self) -> Any:  # engines do not cross processes
        raise TypeError("Database objects cannot be pickled; open a new AdapterRegistry")

"""The hot read path: a read statement's SQL, compiled once by SQLAlchemy, run on the database
driver itself over a small pool of connections, without the ORM's per-call work (on SQLite this
is 20-30x faster than a SQLModel session). Each statement runs in autocommit, its own snapshot.

A pool holds as many connections as reads ever ran at once. A forked child never uses its
parent's connections: it abandons them (closing would end the parent's sessions) and opens its
own. A PostgreSQL connection that the server dropped (a restart, a failover) is replaced and
the read retried once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import URL

from .errors import AdapterStorageError

__all__ = ["PostgresReader", "RawReader", "SqliteReader", "reader_for"]

BUSY_TIMEOUT_MS = 60_000


class RawReader:
    """A pool of driver connections; subclasses say how to connect and run."""

    #: The driver's exceptions, which the caller turns into AdapterStorageError.
    errors: tuple[type[Exception], ...] = ()

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pid = os.getpid()
        self._closed = False

    def _connect(self) -> Any:
        raise NotImplementedError

    def _run(self, conn: Any, sql: str, names: Sequence[str], params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def _lost(self, conn: Any) -> bool:
        """Whether a failed connection was dropped by the server (worth one retry)."""
        return False

    def _checkout(self) -> Any:
        if self._pid != os.getpid():
            self._idle, self._pid = queue.SimpleQueue(), os.getpid()
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            if self._closed:
                raise AdapterStorageError("the registry is closed") from None
            return self._connect()

    def fetch(self, sql: str, names: Sequence[str], params: dict[str, Any]) -> list[Any]:
        for attempt in (1, 2):
            conn = self._checkout()
            try:
                rows = self._run(conn, sql, names, params)
            except self.errors:
                lost = self._lost(conn)
                _close_quietly(conn)
                if lost and attempt == 1:
                    continue
                raise
            if self._closed:
                conn.close()
            else:
                self._idle.put(conn)
            return rows
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                _close_quietly(self._idle.get_nowait())
            except queue.Empty:
                return


class SqliteReader(RawReader):
    """sqlite3 connections to an existing file (a read never creates the database)."""

    errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._uri = f"{path.resolve().as_uri()}?mode=rw"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn

    def _run(self, conn: Any, sql: str, names: Sequence[str], params: dict[str, Any]) -> list[Any]:
        return list(conn.execute(sql, [params[n] for n in names]).fetchall())


class PostgresReader(RawReader):
    """psycopg connections in autocommit; psycopg prepares a statement run five times."""

    def __init__(self, conninfo: str, connect_timeout: float) -> None:
        import psycopg

        super().__init__()
        self.errors = (psycopg.Error,)
        self._psycopg = psycopg
        self._conninfo = conninfo
        self._timeout = max(1, round(connect_timeout))

    def _connect(self) -> Any:
        return self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=self._timeout)

    def _run(self, conn: Any, sql: str, names: Sequence[str], params: dict[str, Any]) -> list[Any]:
        return list(conn.execute(sql, params).fetchall())

    def _lost(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)


def reader_for(url: URL, connect_timeout: float) -> RawReader | None:
    """The raw reader for a database URL, or None where reads go through SQLAlchemy."""
    if url.get_backend_name() == "sqlite":
        path = url.database
        return SqliteReader(Path(path).expanduser()) if path and path != ":memory:" else None
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg":
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresReader(conninfo, connect_timeout)
    return None


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a broken connection may fail to close: gone anyway
        conn.close()

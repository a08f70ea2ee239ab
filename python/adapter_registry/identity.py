"""Opening a registry: its root and its database found, checked to exist (``create=False``) or
created, and checked to be one registry: both hold the same registry id (``binding.py``).

The whole matrix (the README's "One registry, wherever it lives" writes it out):

=======================  ========================  ========================  =====================
root \\ database          new (no id, no adapters)  bound to this root        bound elsewhere
=======================  ========================  ========================  =====================
new, empty (no marker)   bound together            (cannot be: the root       creating: bound if the
                         (creating opens only)     would hold its id)        database has no
                                                                             adapters; else refused
new, holding adapters    refused, unless adopting  (cannot be)               refused, unless the
                         (then bound, adapters                               database has none and
                         left to recover(adopt))                             the open adopts
bound to this database   (cannot be)               opened                    (cannot be)
bound elsewhere          refused; adopting: the    (cannot be)               refused
                         database takes its id
=======================  ========================  ========================  =====================

A non-creating open (``create=False``) never writes a marker or binds a new root: a root
with no marker beside a database bound elsewhere is "no registry at <root>" when the root is
empty, a mismatch otherwise. A registry made before registry ids (a database with adapters
and no id, a root without a marker) is bound on its first open, creating or not, when the two
agree: some adapter is in both.

Every check is made before anything is created (a mismatch creates no root, no database, no
table); the binding itself is made again under the database's lock (SQLite's write lock, a
PostgreSQL advisory lock), so that processes and hosts opening one new registry at once agree
on one id: the database's row first, then the root's marker, created exclusively.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import URL, Connection, text

from .binding import (
    Marker,
    adapter_entries,
    create_marker,
    has_adapters,
    insert_identity,
    new_registry_id,
    read_identity,
    read_marker,
    registered_ids,
)
from .database import Database
from .errors import RegistryMismatchError, RegistryNotFoundError
from .home import locate, make_root

__all__ = ["check_identity", "open_registry"]

#: The PostgreSQL advisory lock key that serializes binding ("adapter_registry identity").
_PG_LOCK = 0x0ADA_1D01


@dataclass(frozen=True)
class _Plan:
    """What opening does: the registry id (None: a new one), whether the database's row and
    the root's marker are to be written, and the root's adapters left for adoption."""

    registry_id: str | None
    insert: bool = False
    bind_root: bool = False
    unadopted: tuple[str, ...] = ()


#: How a refusal says adopting is done (an explicit act, never an open's side effect).
_ADOPT = (
    "adopting a root's adapters is explicit: adapter-registry recover --adopt, or "
    "AdapterRegistry(..., adopt=True).recover(adopt=True)"
)


def _decide(
    root: Path,
    database: str,
    db_id: str | None,
    db_has_adapters: Callable[[], bool],
    db_ids: Callable[[], set[str]],
    *,
    create: bool,
    adopt: bool,
) -> _Plan:
    """The matrix: what to do with this root and this database, or RegistryMismatchError
    (RegistryNotFoundError for a non-creating open that finds no registry at the root).
    (An open of a bound registry reads the marker and the id, nothing more.)"""
    marker = read_marker(root)
    if marker is not None:
        if db_id == marker.registry_id:
            return _Plan(db_id)
        if db_id is None:
            if db_has_adapters():
                raise RegistryMismatchError(
                    f"root {root} belongs to registry {marker.registry_id}, and database "
                    f"{database} holds adapters but no registry id: they are not one registry"
                )
            if adopt:  # a root whose database was lost: the new one takes the root's id
                return _Plan(marker.registry_id, insert=True)
            raise RegistryMismatchError(
                f"root {root} belongs to registry {marker.registry_id}, and database "
                f"{database} holds no registry: they are not one registry ({_ADOPT})"
            )
        raise RegistryMismatchError(
            f"root {root} belongs to registry {marker.registry_id}, database {database} to "
            f"registry {db_id}: they are not one registry"
        )
    entries = adapter_entries(root)
    if db_id is not None:
        if not create and not entries:  # a non-creating open never binds a new root
            raise RegistryNotFoundError(
                f"no registry at {root}: the root is bound to no registry (database "
                f"{database} belongs to registry {db_id})"
            )
        if not create or db_has_adapters():
            raise RegistryMismatchError(
                f"database {database} belongs to registry {db_id}, and root {root} is bound "
                f"to no registry ({len(entries)} entries): they are not one registry"
            )
        if entries and not adopt:
            raise RegistryMismatchError(
                f"database {database} belongs to registry {db_id} and holds no adapters, and "
                f"root {root} holds {len(entries)} entries but is bound to no registry: they "
                f"are not one registry ({_ADOPT})"
            )
        return _Plan(db_id, bind_root=True, unadopted=tuple(entries))
    if not db_has_adapters():
        if entries and not adopt:
            raise RegistryMismatchError(
                f"root {root} holds {len(entries)} entries and is bound to no registry, and "
                f"database {database} holds no adapters and no registry id: a new database "
                f"never takes a root's adapters over ({_ADOPT})"
            )
        if not create:
            raise RegistryNotFoundError(
                f"no registry at {root}: neither the root nor database {database} is bound "
                "to a registry"
            )
        return _Plan(None, insert=True, bind_root=True, unadopted=tuple(entries))
    if not set(entries) & db_ids():  # made before registry ids: do the two agree?
        raise RegistryMismatchError(
            f"root {root} and database {database} have no adapter in common (neither holds "
            "a registry id yet): they are not one registry"
        )
    return _Plan(None, insert=True, bind_root=True)  # on any open, creating or not


def _decide_on(conn: Connection, root: Path, database: str, create: bool, adopt: bool) -> _Plan:
    return _decide(
        root,
        database,
        read_identity(conn),
        lambda: has_adapters(conn),
        lambda: registered_ids(conn),
        create=create,
        adopt=adopt,
    )


def check_identity(conn: Connection, root: Path, database: str) -> str | None:
    """For a reader that never writes (the dashboard): the registry id of this root and this
    database (None for a registry made before ids, not bound yet), raising as an open with
    ``create=False`` would (RegistryMismatchError, RegistryNotFoundError); reads only."""
    return _decide_on(conn, root, database, create=False, adopt=False).registry_id


def _lock(db: Database, conn: Connection) -> None:
    """Serialize binding: SQLite's write transaction holds its lock already."""
    if db.dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})


def open_registry(
    root: str | os.PathLike[str] | None,
    db_url: str | URL | None,
    home: str | os.PathLike[str] | None,
    *,
    create: bool,
    pool_size: int,
    pool_timeout: float,
    connect_timeout: float,
    adopt: bool = False,
) -> tuple[Path, Database, str]:
    """The root, the database and the registry id of a registry, ready to use.

    Raises:
        RegistryNotFoundError: ``create`` is false and the database (or its registry schema)
            or the root is not there. Nothing was created.
        RegistryMismatchError: The root and the database are not one registry. Nothing was
            created or written.
        AdapterStorageError: The root or the database cannot be created or used.
    """
    where, url = locate(root, db_url, home)
    db = Database(
        url, pool_size=pool_size, pool_timeout=pool_timeout, connect_timeout=connect_timeout
    )
    try:
        return where, db, _open(db, where, create, adopt)
    except BaseException:
        db.dispose()
        raise


def _check(db: Database, root: Path, create: bool, adopt: bool) -> _Plan:
    """The decision made without the lock, reading only (a refusal writes nothing)."""
    exists = db.exists()
    if not create:
        if not exists:
            raise RegistryNotFoundError(f"no registry at {db.shown}: no registry database there")
        if not root.is_dir():
            raise RegistryNotFoundError(f"no registry at {root}: the adapter root is missing")
    if exists:
        with db.read() as conn:
            return _decide_on(conn, root, db.shown, create, adopt)
    return _decide(root, db.shown, None, lambda: False, set, create=create, adopt=adopt)


def _open(db: Database, root: Path, create: bool, adopt: bool) -> str:
    try:
        plan = _check(db, root, create, adopt)
    except RegistryMismatchError:
        if not db.exists():
            raise
        # Another opener may be binding this registry now (its database's row is committed
        # before its root's marker is written): decide again under the lock before refusing.
        with db.write() as conn:  # writes nothing: only its lock is wanted
            _lock(db, conn)
            plan = _decide_on(conn, root, db.shown, create, adopt)
    if not (plan.insert or plan.bind_root):
        db.ensure_schema()
        assert plan.registry_id is not None
        return plan.registry_id
    make_root(root)
    db.ensure_schema()
    with db.write() as conn:  # again, under the lock: another opener may have bound it
        _lock(db, conn)
        plan = _decide_on(conn, root, db.shown, create, adopt)
        registry_id = plan.registry_id or new_registry_id()
        if plan.insert:
            bound_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            insert_identity(conn, registry_id, bound_at)
    if plan.bind_root:  # after the commit: a crash between leaves a database whose root is
        # not bound yet, which the next creating open binds (a database with no adapters
        # takes an empty root)
        found = create_marker(root, Marker(registry_id, plan.unadopted))
        if found.registry_id != registry_id:
            raise RegistryMismatchError(
                f"root {root} was bound to registry {found.registry_id} while database "
                f"{db.shown} was bound to registry {registry_id}: they are not one registry"
            )
    return registry_id

"""Where a registry's identity is kept: a registry id, written once into both halves when they
are bound, the ``registry_identity`` table (migration 0005) and the root's ``.registry.json``.

The root's marker also lists the adapters that were in the root when a database with no
adapters was bound to it (``unadopted``): ``recover()`` leaves those to ``recover(adopt=True)``,
so a new database never takes a root's adapters over silently. The marker is created exclusively
(a link from a file of our own, which fails if it is there), so processes binding a root at once
all end up reading the one that won.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Table, Text, insert, inspect, select, text
from sqlmodel import Field, SQLModel

from .errors import AdapterStorageError
from .write_rules import WRITE_ONCE, writes

__all__ = [
    "IDENTITY",
    "MARKER",
    "Marker",
    "RegistryIdentity",
    "adapter_entries",
    "create_marker",
    "has_adapters",
    "has_table",
    "insert_identity",
    "new_registry_id",
    "read_identity",
    "read_marker",
    "registered_ids",
    "replace_marker",
]

#: The root's marker: ``{"registry_id": ..., "unadopted": [...]}``.
MARKER = ".registry.json"
_MAX_MARKER = 16 << 20  # the unadopted list of a very large root fits


class RegistryIdentity(SQLModel, table=True):
    """The database's half of a registry's identity: one row, written once."""

    __tablename__ = "registry_identity"
    __table_args__ = writes(WRITE_ONCE)

    singleton: int = Field(default=1, primary_key=True)
    registry_id: str = Field(sa_type=Text)
    bound_at: str = Field(sa_type=Text)


IDENTITY: Table = RegistryIdentity.__table__  # type: ignore[attr-defined]


def new_registry_id() -> str:
    return str(uuid.uuid4())


# ------------------------------------------------------------------------------ the database


def has_table(conn: Connection, name: str) -> bool:
    """Whether the database has the table, in one small query (an Inspector costs more than
    the rest of an open)."""
    if conn.dialect.name == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"
        return conn.execute(text(sql), {"name": name}).first() is not None
    if conn.dialect.name == "postgresql":
        return bool(
            conn.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar()
        )
    return bool(inspect(conn).has_table(name))


def read_identity(conn: Connection) -> str | None:
    """The database's registry id; None where it has none (new, or made before ids)."""
    if not has_table(conn, IDENTITY.name):
        return None
    found = conn.execute(select(IDENTITY.c.registry_id)).scalar()
    return None if found is None else str(found)


def has_adapters(conn: Connection) -> bool:
    """Whether the database registers any adapter."""
    if not has_table(conn, "adapter_records"):
        return False
    return conn.execute(text("SELECT 1 FROM adapter_records LIMIT 1")).first() is not None


def registered_ids(conn: Connection) -> set[str]:
    return {str(i) for (i,) in conn.execute(text("SELECT id FROM adapter_records"))}


def insert_identity(conn: Connection, registry_id: str, bound_at: str) -> None:
    conn.execute(insert(IDENTITY).values(singleton=1, registry_id=registry_id, bound_at=bound_at))


# ---------------------------------------------------------------------------------- the root


@dataclass(frozen=True)
class Marker:
    """The root's half: its registry's id, and the adapters no recover() registers unasked."""

    registry_id: str
    unadopted: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        body = {"registry_id": self.registry_id, "unadopted": sorted(self.unadopted)}
        return json.dumps(body, indent=1).encode() + b"\n"


def adapter_entries(root: Path) -> list[str]:
    """The names in a root that may be adapters (every name not starting with a dot)."""
    try:
        return sorted(e.name for e in os.scandir(root) if not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_marker(root: Path) -> Marker | None:
    """The root's marker; None where it has none. AdapterStorageError if it cannot be read
    or is not one of ours (it is never followed through a symlink)."""
    path = root / MARKER
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None  # no marker, or no root (which creating it reports)
    except OSError as err:
        raise AdapterStorageError(err.errno, f"root {root}: {MARKER}: {err.strerror}") from err
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _bad(root, "not a regular file")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(_MAX_MARKER + 1)
    finally:
        os.close(fd)
    try:
        raw = json.loads(data)
        registry_id = str(uuid.UUID(raw["registry_id"]))
        unadopted = tuple(str(name) for name in raw.get("unadopted", []))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
        raise _bad(root, f"not a registry marker ({type(err).__name__}: {err})") from None
    if len(data) > _MAX_MARKER or registry_id != raw["registry_id"]:
        raise _bad(root, "not a registry marker")
    return Marker(registry_id, unadopted)


def _bad(root: Path, problem: str) -> AdapterStorageError:
    return AdapterStorageError(
        f"root {root}: {MARKER} is {problem}; remove it to bind the root anew"
    )


def _write_temporary(root: Path, marker: Marker) -> Path:
    temporary = root / f"{MARKER}.{uuid.uuid4().hex}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, marker.to_bytes())
        os.fsync(fd)
    finally:
        os.close(fd)
    return temporary


def _sync_folder(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_marker(root: Path, marker: Marker) -> Marker:
    """Bind the root, unless another process did first; the marker now in place (durable)."""
    try:
        temporary = _write_temporary(root, marker)
        try:
            os.link(temporary, root / MARKER)
        except FileExistsError:
            pass  # another opener bound it first: theirs is the one
        finally:
            temporary.unlink()
        _sync_folder(root)
    except OSError as err:
        raise AdapterStorageError(
            err.errno or errno.EIO, f"root {root} cannot be bound: {err.strerror}"
        ) from err
    found = read_marker(root)
    assert found is not None
    return found


def replace_marker(root: Path, marker: Marker) -> None:
    """Write the root's marker anew (the unadopted list after an adoption), atomically."""
    try:
        temporary = _write_temporary(root, marker)
        os.replace(temporary, root / MARKER)
        _sync_folder(root)
    except OSError as err:
        raise AdapterStorageError(
            err.errno or errno.EIO, f"root {root}: {MARKER} cannot be written: {err.strerror}"
        ) from err

"""Records outside the ORM: rows turned into ``AdapterRecord`` on the hot read path, the
record file written beside each adapter, and the table's reads and writes that the store
pipeline, recovery and the API share.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, update
from sqlalchemy import inspect as sa_inspect

from . import queries
from ._core import WEIGHTS_FILE
from .database import Database
from .errors import AdapterAlreadyExistsError, AdapterNotFoundError, InvalidAdapterError
from .record import COLUMNS, TABLE, AdapterRecord
from .tables import EDGES

__all__ = [
    "Records",
    "adapter_directory",
    "names_this_adapter",
    "now",
    "read_small_file",
    "record_file_bytes",
    "record_from_file",
    "record_from_row",
]

_ALL_FIELDS = frozenset(COLUMNS)
# An instance as the ORM makes one for a loaded row: SQLModel's and SQLAlchemy's state, no values.
_new_instance = sa_inspect(AdapterRecord).class_manager.new_instance


def now() -> str:
    """The time as the registry writes it: UTC, ISO 8601, to the microsecond."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def adapter_directory(root: Path, adapter_id: str) -> Path:
    """Where the registry keeps an adapter's files: from its root and id alone. A row's
    ``file_path`` is never followed (a row written by hand could name any file)."""
    return root / adapter_id


def record_from_row(values: Sequence[Any], root: Path | None = None) -> AdapterRecord:
    """A record from a row in table order, on the hot read path.

    The database already typed every value, so nothing is validated again: the instance is made
    as the ORM makes one for a loaded row and its fields are set in one step (model_construct
    would route each through SQLAlchemy's attribute events, at twice the cost of the query).
    """
    fields = dict(zip(COLUMNS, values, strict=True))
    if fields["is_archived"] is not None:
        fields["is_archived"] = bool(fields["is_archived"])
    recorded = fields["file_path"]
    if root is not None and names_this_adapter(recorded, fields["id"]):
        # Where the file is now, from the root and the id (README); a row naming any other
        # file (written by hand) keeps it, for verify to report.
        fields["file_path"] = f"{root}/{fields['id']}/{WEIGHTS_FILE}"
    record: AdapterRecord = _new_instance()
    record.__dict__.update(fields)
    object.__setattr__(record, "__pydantic_fields_set__", set(_ALL_FIELDS))
    private = {"_root": root, "_recorded_file_path": recorded}  # for .directory, .to_dict()
    object.__setattr__(record, "__pydantic_private__", private)
    return record


def names_this_adapter(file_path: str, adapter_id: str) -> bool:
    """Whether a recorded ``file_path`` names this adapter's weights in some root (where it
    was written, before the registry moved): ``/.../{id}/adapter.safetensors``."""
    return (
        isinstance(file_path, str)
        and file_path.startswith("/")
        and file_path.endswith(f"/{adapter_id}/{WEIGHTS_FILE}")
    )


#: A record or config larger than this is not one of ours.
MAX_SMALL_FILE = 1 << 20


def read_small_file(path: Path) -> bytes:
    """A regular file of ours, never through a symlink, never blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidAdapterError(f"{path.name} is not a regular file")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(MAX_SMALL_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SMALL_FILE:
        raise InvalidAdapterError(f"{path.name} is over 1 MiB")
    return data


def record_file_bytes(record: AdapterRecord) -> bytes:
    """The ``.record.json`` published inside an adapter's directory: every column."""
    return json.dumps(record.to_dict(), sort_keys=True).encode()


def record_from_file(data: bytes) -> AdapterRecord:
    """A record read back from a ``.record.json`` of any release.

    A column that release did not have takes the model's default (a column added later is
    nullable or has one); a key this release does not know is ignored. InvalidAdapterError
    if the file is not JSON or a column it needs is absent or ill-typed.
    """
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise InvalidAdapterError(f"not JSON: {err}") from err
    if not isinstance(raw, dict):
        raise InvalidAdapterError("not a JSON object")
    try:
        return AdapterRecord.model_validate({k: v for k, v in raw.items() if k in _ALL_FIELDS})
    except ValidationError as err:
        fields = ", ".join(str(e["loc"][0]) for e in err.errors() if e["loc"])
        raise InvalidAdapterError(f"bad or missing fields: {fields}") from None


class Records:
    """The ``adapter_records`` table of one database, as records."""

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        #: The registry's root, which every record this returns knows (``record.directory``).
        self.root = root

    def from_row(self, values: Sequence[Any]) -> AdapterRecord:
        return record_from_row(values, self.root)

    def select(self, stmt: Any, **params: Any) -> list[AdapterRecord]:
        return [record_from_row(values, self.root) for values in self.db.fetch(stmt, **params)]

    def first(self, stmt: Any, **params: Any) -> AdapterRecord | None:
        found = self.db.fetch(stmt, **params)
        return record_from_row(found[0], self.root) if found else None

    def get(self, adapter_id: str) -> AdapterRecord | None:
        return self.first(queries.BY_ID, id=adapter_id)

    def require(self, adapter_id: str) -> AdapterRecord:
        """The record of ``adapter_id``; AdapterNotFoundError if it is not registered."""
        record = self.get(adapter_id)
        if record is None:
            raise AdapterNotFoundError(f"adapter {adapter_id} is not registered")
        return record

    def exists(self, adapter_id: str) -> bool:
        return bool(self.db.fetch(queries.EXISTS, id=adapter_id))

    def ids(self) -> set[str]:
        """Every registered id."""
        return {adapter_id for (adapter_id,) in self.db.fetch(queries.IDS)}

    def insert(self, record: AdapterRecord, on_insert: Any = None) -> tuple[AdapterRecord, bool]:
        """Insert the row of a published adapter; says whether this call inserted it.

        A row already there for the same publish (same hash and time: a concurrent recover())
        is that adapter's, not a conflict. ``on_insert()`` runs inside the transaction, after
        the insert and before the commit (a crash point).
        """
        try:
            with self.db.write() as conn:
                conn.execute(insert(TABLE).values(record.to_dict()))
                if record.parents:  # the lineage edges, in the same transaction as the row
                    edges = [{"parent_id": p, "child_id": record.id} for p in record.parents]
                    conn.execute(insert(EDGES), edges)
                if on_insert is not None:
                    on_insert()
        except sa_exc.IntegrityError:
            existing = self.get(record.id)
            if existing is not None and (existing.file_hash, existing.created_at) == (
                record.file_hash,
                record.created_at,
            ):
                return existing, False
            raise AdapterAlreadyExistsError(
                f"adapter {record.id} already exists; adapters are written once"
            ) from None
        record._root = self.root
        return record, True

    def update(self, adapter_id: str, values: dict[str, Any]) -> AdapterRecord:
        """Change mutable columns of one row; returns the record as it now is."""
        with self.db.write() as conn:
            row = conn.execute(
                update(TABLE).where(TABLE.c.id == adapter_id).values(values).returning(TABLE)
            ).first()
        if row is None:
            raise AdapterNotFoundError(f"adapter {adapter_id} is not registered")
        return self.from_row(tuple(row))

    def lineage(self, adapter_id: str) -> list[AdapterRecord]:
        """The ancestors of an adapter through parent_ids, nearest first, each once."""
        frontier = self.require(adapter_id).parents
        seen: set[str] = {adapter_id}
        ancestors: list[AdapterRecord] = []
        while frontier:
            frontier = [p for p in dict.fromkeys(frontier) if p not in seen]
            if not frontier:
                break
            seen.update(frontier)
            by_id = {r.id: r for r in self.select(queries.BY_IDS, ids=frontier)}
            generation = [by_id[p] for p in frontier if p in by_id]
            ancestors.extend(generation)
            frontier = [p for r in generation for p in r.parents]
        return ancestors

"""Serving by name: ``registry.resolve(name)`` hands a server the directory of a verified
adapter and a content id for it. The method is mixed into ``AdapterRegistry``.

A name is a full adapter id (its bytes never change: the store is write-once), an alias
(``production``: it moves when someone moves it) or ``best:<task_type>`` (the best evaluated
live adapter of that task, of the base model asked for where one is given; it moves with the
scores). Never an id prefix: a prefix that is unique today may be ambiguous tomorrow, while a
server keeps the name cached.

Before a directory is handed out its files are hashed against the record (``verify``), so a
half-written, vanished or altered adapter is an ``IntegrityError`` here, not a crash in the
server. ``lora_int_id`` is derived from the content alone (the weights' and the config's
SHA-256), so every process and host gives the same adapter the same number; two different
contents that collide on it are looked for among every adapter of the registry, and refused
(``LoraIdCollisionError``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from . import validation
from .errors import (
    AdapterNotFoundError,
    InvalidAdapterError,
    LoraIdCollisionError,
    about_adapter,
)
from .record import TABLE, AdapterRecord
from .records import Records
from .reports import VerifyReport

__all__ = ["BEST_PREFIX", "ServedAdapter", "Serving", "lora_int_id"]

#: The prefix of a name that means "the best adapter of this task type".
BEST_PREFIX = "best:"
#: What the content id is derived from, and its version: a new derivation gets a new tag.
_ID_TAG = b"adapter-registry lora_int_id v1\x00"
#: The largest positive signed 64-bit integer: ids fit an int64 column and C's int64_t.
_MAX_ID = (1 << 63) - 1

# The collision check: how many adapters there are (rows are never deleted and their hashes
# never change: the write rules; so a count names the set of contents), and their contents.
_ROWS = select(func.count()).select_from(TABLE)
_CONTENTS = select(TABLE.c.id, TABLE.c.file_hash, TABLE.c.config_hash).order_by(
    TABLE.c.created_at, TABLE.c.id
)


@lru_cache(maxsize=1 << 17)
def lora_int_id(file_hash: str, config_hash: str) -> int:
    """The content id of an adapter: a positive 63-bit integer from the first 8 bytes of
    SHA-256 over a version tag, the weights' hash and the config's hash. The same content
    has the same id in every process and on every host (no salted ``hash()``).

    Args: file_hash, config_hash: The hex SHA-256 of the weights and of the config.
    Returns: An integer in [1, 2**63 - 1].
    """
    digest = hashlib.sha256(
        _ID_TAG + file_hash.encode("ascii") + b"\x00" + config_hash.encode("ascii")
    ).digest()
    return (int.from_bytes(digest[:8], "big") & _MAX_ID) or 1


@dataclass(frozen=True)
class ServedAdapter:
    """A verified adapter, ready for a server: its directory holds ``adapter_model.safetensors``
    and ``adapter_config.json`` as PEFT (and vLLM's and SGLang's loaders) expect them."""

    #: The adapter's id.
    id: str
    #: The name it was resolved by (an id, an alias or ``best:<task_type>``).
    name: str
    #: Its directory in the registry (the files are read-only: 0444).
    directory: Path
    #: SHA-256 of the weights, and of ``adapter_config.json``, as verified just now.
    file_hash: str
    config_hash: str
    base_model_id: str
    rank: int
    #: The content id (``lora_int_id()``): vLLM's ``LoRARequest.lora_int_id``.
    lora_int_id: int

    def to_dict(self) -> dict[str, Any]:
        """Every field by name, the directory as a string (the CLI's ``--json``)."""
        return {
            "id": self.id,
            "name": self.name,
            "directory": str(self.directory),
            "file_hash": self.file_hash,
            "config_hash": self.config_hash,
            "base_model_id": self.base_model_id,
            "rank": self.rank,
            "lora_int_id": self.lora_int_id,
        }


class _Registry(Protocol):
    """What ``resolve`` uses of ``AdapterRegistry``."""

    _records: Records
    _lora_id_clashes: tuple[int, frozenset[int]] | None

    def retrieve_by_id(self, adapter_id: str) -> AdapterRecord: ...
    def resolve_alias(self, alias: str) -> AdapterRecord: ...
    def verify(self, adapter_id: str) -> VerifyReport: ...
    def query_best_for_task(
        self, task_type: str, base_model_id: str | None = None
    ) -> AdapterRecord | None: ...


class Serving:
    """``resolve``, for ``AdapterRegistry``."""

    #: The content ids two different contents share, and the adapter count they were found at.
    _lora_id_clashes: tuple[int, frozenset[int]] | None = None

    def resolve(self: _Registry, name: str, *, base_model_id: str | None = None) -> ServedAdapter:
        """The verified adapter a name stands for, as a server needs it.

        Args:
            name: A full adapter id, an alias, or ``best:<task_type>`` (never an id prefix).
            base_model_id: The base model the server runs: an adapter of another one is
                refused; for ``best:`` names, the best of this base model is chosen.

        Returns: The adapter's id, directory, hashes, base model, rank and ``lora_int_id``.

        Raises:
            AdapterNotFoundError: No adapter by that id, no such alias, or no evaluated live
                adapter of that task type (and base model).
            InvalidAdapterError: ``name`` is not a name (a bad task type after ``best:``), or
                the adapter's base model is not ``base_model_id``.
            IntegrityError: Its files do not match its record (altered, missing, unreadable).
            LoraIdCollisionError: Another content of this registry has the same lora_int_id.
        """
        if not isinstance(name, str):
            raise InvalidAdapterError(f"adapter name {name!r} is not a string")
        if base_model_id is not None:
            validation.check_text("base_model_id", base_model_id, validation.MAX_BASE_MODEL)
        record = _named(self, name, base_model_id)
        if base_model_id is not None and record.base_model_id != base_model_id:
            of = "" if name == record.id else f" ({name})"
            raise InvalidAdapterError(
                f"adapter {record.id}{of}: it was trained on {record.base_model_id!r}, "
                f"not on {base_model_id!r}"
            )
        self.verify(record.id).raise_for_status()  # "adapter <id>: <file> ..." already
        content_id = lora_int_id(record.file_hash, record.config_hash)
        with about_adapter(record.id):
            _check_collision(self, record, content_id)
        return ServedAdapter(
            id=record.id,
            name=name,
            directory=record.directory,
            file_hash=record.file_hash,
            config_hash=record.config_hash,
            base_model_id=record.base_model_id,
            rank=record.rank,
            lora_int_id=content_id,
        )


def _named(registry: _Registry, name: str, base_model_id: str | None) -> AdapterRecord:
    """The record a name stands for now."""
    if name.startswith(BEST_PREFIX):
        task_type = validation.check_task_type(name[len(BEST_PREFIX) :])
        best = registry.query_best_for_task(task_type, base_model_id=base_model_id)
        if best is None:
            of = f" of base model {base_model_id!r}" if base_model_id is not None else ""
            raise AdapterNotFoundError(f"{name}: no evaluated live adapter of task {task_type}{of}")
        return best
    try:
        validation.check_adapter_id(name)
    except InvalidAdapterError:
        pass
    else:
        return registry.retrieve_by_id(name)
    try:
        return registry.resolve_alias(name)
    except (AdapterNotFoundError, InvalidAdapterError):
        raise AdapterNotFoundError(
            f"no adapter id, alias or {BEST_PREFIX}<task_type> named {name!r}"
        ) from None


def _clashing_ids(registry: _Registry) -> frozenset[int]:
    """The content ids that two different contents of the registry share (checked against every
    adapter, archived ones too: any of them may be served by its id); worked out again only
    when adapters were added since (a count costs little; the scan a few us an adapter)."""
    db = registry._records.db
    rows = int(db.fetch(_ROWS)[0][0])
    known = registry._lora_id_clashes
    if known is not None and known[0] == rows:
        return known[1]
    first: dict[int, tuple[str, str]] = {}
    clashing = set()
    for _, file_hash, config_hash in db.fetch(_CONTENTS):
        content = (file_hash, config_hash)
        content_id = lora_int_id(file_hash, config_hash)
        if first.setdefault(content_id, content) != content:
            clashing.add(content_id)
    found = frozenset(clashing)
    # An adapter added during the scan leaves the count short of it: the next call scans again.
    registry._lora_id_clashes = (rows, found)
    return found


def _check_collision(registry: _Registry, record: AdapterRecord, content_id: int) -> None:
    """Refuse a content id that another content of the registry shares. The same content
    stored twice shares its id, rightly: the bytes a server would load are the same."""
    if content_id not in _clashing_ids(registry):
        return
    own = (record.file_hash, record.config_hash)
    for other, file_hash, config_hash in registry._records.db.fetch(_CONTENTS):
        if (file_hash, config_hash) != own and lora_int_id(file_hash, config_hash) == content_id:
            raise LoraIdCollisionError(
                f"lora_int_id {content_id} is also that of adapter {other}, whose files differ; "
                "serve it by path with an id of your own (vLLM's server assigns its own)"
            )

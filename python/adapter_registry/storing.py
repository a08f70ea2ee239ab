"""The store pipeline: the one write path for an adapter's files and row.

A store runs in four steps, and a crash between any two leaves either nothing visible, a
registered adapter, or a published directory that ``recover()`` registers:

1. check the metadata and read the parents (no lock held);
2. stage: the core reads and validates the weights' header, the tensors it lists are checked
   against the config (a mismatch is refused here, before anything is written), then the core
   copies the weights into ``{root}/.staging/`` while hashing them, writes the config, seals
   and fsyncs both;
3. publish: the record is written beside them and the directory renamed to ``{root}/{id}``,
   exclusively (the filesystem decides a same-id race: exactly one rename wins);
4. insert the row in a short write transaction.

The crash points of the fault-injection tests (``_core.CRASH_STEPS``) mark the steps.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import _core, queries, validation
from .errors import (
    AdapterAlreadyExistsError,
    AdapterStorageError,
    InvalidAdapterError,
    about_adapter,
)
from .inputs import ConfigInput, WeightsInput, resolve
from .lora_config import LoraConfig, check_tensors, parse_config
from .record import AdapterRecord
from .records import Records, now, read_small_file, record_file_bytes

__all__ = [
    "FORCE_CLAIM_ENV",
    "check_base_model",
    "check_created_at",
    "check_fields",
    "lineage_numbers",
    "store",
]

#: Set to "1" to publish with the exclusive-claim scheme instead of renameat2 (for testing the
#: path that filesystems without RENAME_NOREPLACE take).
FORCE_CLAIM_ENV = "ADAPTER_REGISTRY_FORCE_CLAIM"


#: How far ahead of this host's clock a recorded time may be (another host's clock).
CLOCK_SKEW = timedelta(days=1)


def check_created_at(value: Any) -> str:
    """A time as store() writes it: UTC, ISO 8601 to the microsecond, not in the future."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        when = None
    if (
        when is None
        or when.utcoffset() != timedelta(0)
        or when.isoformat(timespec="microseconds") != value
    ):
        raise InvalidAdapterError(f"created_at {value!r} is not a UTC time as store() writes it")
    if when > datetime.now(timezone.utc) + CLOCK_SKEW:
        raise InvalidAdapterError(f"created_at {value} is in the future")
    return str(value)


def store(
    records: Records,
    root: Path,
    weights: WeightsInput,
    config: ConfigInput,
    *,
    task_type: Any,
    source: Any,
    session_id: Any,
    base_model_id: Any = None,
    adapter_id: Any = None,
    parent_ids: Iterable[Any] = (),
    version: Any = None,
    generation: Any = None,
    training_task_hash: Any = None,
    agent_id: Any = None,
    pass_rate: Any = None,
    fitness_score: Any = None,
) -> AdapterRecord:
    """Check, stage, publish and register one adapter (``AdapterRegistry.store`` documents it)."""
    # An error names the adapter by the id the caller gave, else by the input itself: an id
    # generated here exists nowhere until the publish (whose own messages then name it).
    label = None if adapter_id is not None else f"adapter from {_described(weights)}"
    if adapter_id is None:
        adapter_id = str(uuid.uuid4())
    with about_adapter(str(adapter_id), label):
        validation.check_adapter_id(adapter_id)
        fields = check_fields(
            task_type=task_type, source=source, session_id=session_id,
            training_task_hash=training_task_hash, agent_id=agent_id, pass_rate=pass_rate,
            fitness_score=fitness_score,
        )  # fmt: skip
        parents = validation.check_parent_ids(parent_ids, adapter_id)
        weights_source, config_bytes = resolve(weights, config)
        lora = parse_config(config_bytes)
        fields["base_model_id"] = check_base_model(base_model_id, lora)
        _refuse_existing(records, root, adapter_id)
        fields["version"], fields["generation"] = lineage_numbers(
            records, parents, version, generation
        )
        fields["parent_ids"] = json.dumps(parents)
        record, interrupt = _stage_and_publish(
            root, adapter_id, weights_source, config_bytes, lora, fields
        )
        try:
            try:
                _core.crash_point("published")
                registered = _register(records, root, record)
            except KeyboardInterrupt as err:
                interrupt = interrupt or err
                registered = _register(records, root, record)  # it is published: finish it
        except AdapterAlreadyExistsError:
            # The id was registered while ours staged, and that adapter's directory is gone
            # (else our publish would have failed): ours must not stand under its id.
            _refuse_existing(records, root, adapter_id, published=record_file_bytes(record))
            raise
        if interrupt is not None:
            if hasattr(interrupt, "add_note"):  # Python 3.11+
                interrupt.add_note(f"adapter {registered.id} was stored before the interrupt")
            raise interrupt
        return registered


def _described(weights: Any) -> str:
    if isinstance(weights, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(weights, (str, os.PathLike)):
        return str(Path(weights).expanduser())
    return type(weights).__name__


def check_fields(
    *,
    task_type: Any,
    source: Any,
    session_id: Any,
    training_task_hash: Any,
    agent_id: Any,
    pass_rate: Any,
    fitness_score: Any,
) -> dict[str, Any]:
    """The caller's metadata, checked: the rules store() applies, and recover() applies again
    to a record it finds on disk (with ``check_base_model`` and ``lineage_numbers``)."""
    return {
        "task_type": validation.check_task_type(task_type),
        "source": validation.check_source(source),
        "session_id": validation.check_text("session_id", session_id),
        "training_task_hash": validation.check_optional_text(
            "training_task_hash", training_task_hash
        ),
        "agent_id": validation.check_optional_text("agent_id", agent_id),
        "pass_rate": validation.check_pass_rate(pass_rate),
        "fitness_score": validation.check_fitness(fitness_score),
    }


def check_base_model(base_model_id: Any, lora: LoraConfig) -> str:
    """The base model: as given, else the config's ``base_model_name_or_path``."""
    base = base_model_id if base_model_id is not None else lora.base_model_name_or_path
    if base is None:
        raise InvalidAdapterError(
            "no base_model_id: pass it, or set base_model_name_or_path in the config"
        )
    return validation.check_text("base_model_id", base, validation.MAX_BASE_MODEL)


def _refuse_existing(
    records: Records, root: Path, adapter_id: str, published: bytes | None = None
) -> None:
    """Refuse an id that is registered or has a directory, before anything is written.

    The publish is guarded by the filesystem only (an exclusive rename), and the row is
    inserted after it, so an id whose row stands but whose directory is gone would be published
    anew with other bytes, and ``verify`` would then say "mismatch" where the truth is
    "missing". This check, before staging, refuses that. Called again with ``published`` (our
    ``.record.json``) when the insert after our publish found the id registered by a store
    that ran in between: our directory is withdrawn (renamed away from the id at once, then
    removed), so no directory of ours is left under a registered id.
    """
    if published is None:
        if records.exists(adapter_id) or os.path.lexists(root / adapter_id):
            raise AdapterAlreadyExistsError(
                f"adapter {adapter_id} already exists; adapters are written once"
            )
        return
    if not _published(root, adapter_id, published):
        return  # not ours (or already gone): never touch another store's directory
    withdrawn = root / _core.STAGING_DIR / f"{adapter_id}.withdrawn.{os.getpid()}"
    try:
        os.rename(root / adapter_id, withdrawn)
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)  # the id's name is gone for good before the error is raised
        finally:
            os.close(fd)
    except OSError as err:
        raise AdapterStorageError(
            err.errno or 0,
            f"adapter {adapter_id} was registered by another store while this one staged, and "
            f"this one's directory could not be withdrawn ({err})",
        ) from err
    # Out of every reader's sight now; what a crash leaves here the staging sweep removes.
    shutil.rmtree(withdrawn, ignore_errors=True)


def lineage_numbers(
    records: Records, parents: list[str], version: Any, generation: Any
) -> tuple[int, int]:
    """Defaults: version 1 + the highest parent's (else 1), generation likewise (else 0)."""
    top_version, top_generation = 0, -1
    if parents:
        rows = records.select(queries.BY_IDS, ids=parents)
        absent = sorted(set(parents) - {r.id for r in rows})
        if absent:
            raise InvalidAdapterError(f"parent {', '.join(absent)} is not registered")
        top_version = max(r.version for r in rows)
        top_generation = max(r.generation or 0 for r in rows)
    if version is None:
        version = validation.check_count("version", top_version + 1, 1)
    elif validation.check_count("version", version, 1) <= top_version:
        raise InvalidAdapterError(
            f"version {version} must exceed its parents' highest version {top_version}"
        )
    if generation is None:
        generation = top_generation + 1
    validation.check_count("generation", generation, 0)
    return version, generation


def _stage_and_publish(
    root: Path,
    adapter_id: str,
    weights_source: str | bytes,
    config_bytes: bytes,
    lora: LoraConfig,
    fields: dict[str, Any],
) -> tuple[AdapterRecord, KeyboardInterrupt | None]:
    """Stage and publish; returns the record, and the interrupt (Ctrl-C) that arrived while
    the publish ran, if any: the publish stands then, and the caller finishes the store.
    An interrupt before the publish leaves nothing: the staging directory is discarded."""
    # The header first, on the descriptor the copy then reads on: weights the config does not
    # describe are refused before a staging directory exists or a byte of tensor data is read.
    weights = _core.open_weights(weights_source)
    try:
        check_tensors(lora, weights.tensors)
        staged = weights.stage(str(root), adapter_id, config_bytes)
    finally:
        weights.close()  # a no-op once staged
    _core.crash_point("staged")
    try:
        record = AdapterRecord(
            id=adapter_id,
            rank=lora.r,
            created_at=now(),
            file_path=str(root / adapter_id / _core.WEIGHTS_FILE),
            file_hash=staged.file_hash,
            file_size_bytes=staged.file_size,
            is_archived=False,
            config_hash=staged.config_hash,
            **fields,
        )
        record_bytes = record_file_bytes(record)
        try:
            staged.publish(
                adapter_id, record_bytes, exclusive_claim=os.environ.get(FORCE_CLAIM_ENV) == "1"
            )
        except KeyboardInterrupt as interrupt:
            # A signal that arrives while the core publishes is raised as the call returns:
            # if the directory under the adapter's name is ours by then, the publish stands.
            if not _published(root, adapter_id, record_bytes):
                raise
            return record, interrupt
    finally:
        staged.discard()  # a no-op once published
    return record, None


def _published(root: Path, adapter_id: str, record_bytes: bytes) -> bool:
    try:
        return read_small_file(root / adapter_id / _core.RECORD_FILE) == record_bytes
    except OSError:
        return False


def _register(records: Records, root: Path, record: AdapterRecord) -> AdapterRecord:
    try:
        return records.insert(record, on_insert=lambda: _core.crash_point("inserted"))[0]
    except AdapterStorageError as err:
        raise AdapterStorageError(
            err.errno or 0,
            f"adapter {record.id} was published at {root / record.id} but its row "
            f"was not written ({err}); recover() registers it",
        ) from err

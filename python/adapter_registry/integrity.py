"""Integrity: stored bytes against their records (verify), and files and rows brought back in
step after crashes (recover).

The verdict of an adapter (hashes, size, the seal's modes, the PEFT link) is decided in one
place, the Rust core (``_core.verify_adapters``), where the hashing is; this module chooses
what to verify and turns the verdicts into reports.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _core, queries, storing, validation
from .binding import Marker, read_marker, replace_marker
from .errors import (
    AdapterNotFoundError,
    AdapterRegistryError,
    IntegrityError,
    InvalidAdapterError,
)
from .lora_config import LoraConfig, check_tensors, parse_config
from .record import AdapterRecord
from .records import (
    Records,
    adapter_directory,
    names_this_adapter,
    read_small_file,
    record_from_file,
)
from .reports import RecoveryReport, VerifyReport

__all__ = ["ProgressCallback", "recover", "seal_problems", "verify_records", "verify_stored"]

ProgressCallback = Callable[[int, int, int], object]


def verify_stored(
    records: Records,
    root: Path,
    ids: Sequence[str] | None = None,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[VerifyReport]:
    """See ``AdapterRegistry.verify_all``: the adapters of ``ids`` (default: every one, oldest
    first), read from the table as the few columns verification needs (``queries.VERIFY_*``),
    never as records."""
    if ids is None:
        rows = records.db.fetch(queries.VERIFY_ALL)
    else:
        rows = []
        for adapter_id in ids:
            found = records.db.fetch(queries.VERIFY_ONE, id=adapter_id)
            if not found:
                raise AdapterNotFoundError(f"adapter {adapter_id} is not registered")
            rows.append(found[0])
    return _verify_rows(root, rows, threads, progress)


def verify_records(
    root: Path,
    records: Sequence[AdapterRecord],
    threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[VerifyReport]:
    """Each record's files, found from the root and its id, against it, on a pool of threads,
    in the order given."""
    rows = [
        (r.id, r.file_hash, r.file_size_bytes, r.config_hash, r.file_path, r.pass_rate,
         r.fitness_score, r.version, r.generation)
        for r in records
    ]  # fmt: skip
    return _verify_rows(root, rows, threads, progress)


def _verify_rows(
    root: Path,
    rows: Sequence[Sequence[Any]],
    threads: int | None,
    progress: ProgressCallback | None,
) -> list[VerifyReport]:
    """Rows of ``queries.VERIFY_*``'s columns to reports: the files' verdicts are the core's
    (every file opened once, hashed, its mode and inode from that descriptor), the row rules
    are checked here, and a report is made per row, in order."""
    # Each adapter's files are at adapter_directory(root, id), which the core joins itself.
    kept = str(root)
    verdicts = _core.verify_adapters(
        root,
        [(r[0], r[1], r[2], r[3], _path_to_check(kept, r[0], r[4])) for r in rows],
        validation.check_threads(threads),
        progress,
    )
    reports = []
    for row, (status, problems) in zip(rows, verdicts, strict=True):
        if _UNLINKED in problems and _a_copy_of_the_weights(
            adapter_directory(root, row[0]), row[1], row[2]
        ):
            problems = [p for p in problems if p != _UNLINKED]
            status = status if problems else "ok"
        broken = _row_problems(*row[5:])
        if broken and status == "ok":  # the files' verdict is the core's; a bad row is a mismatch
            status = "mismatch"
        reports.append(VerifyReport(row[0], status, (*problems, *broken)))
    return reports


#: The core's word for a PEFT name that is not a hard link of the weights.
_UNLINKED = f"{_core.PEFT_WEIGHTS_FILE} is not the same file as {_core.WEIGHTS_FILE}"


def seal_problems(directory: Path, file_hash: str, size: int) -> list[str]:
    """The core's seal problems of an adapter's directory, less a PEFT name that is a sealed,
    byte-identical copy of the weights (what a copy without hard links makes of the link)."""
    problems = [message for _, message in _core.seal_problems(str(directory))]
    if _UNLINKED in problems and _a_copy_of_the_weights(directory, file_hash, size):
        problems.remove(_UNLINKED)
    return problems


def _a_copy_of_the_weights(directory: Path, file_hash: str, size: int) -> bool:
    """Whether the PEFT name is a sealed, byte-identical copy of the weights: what a copy
    that does not keep hard links (rsync -a without -H) makes of the link. Hashed once more."""
    path = directory / _core.PEFT_WEIGHTS_FILE
    try:
        found = path.lstat()
        if not stat.S_ISREG(found.st_mode) or stat.S_IMODE(found.st_mode) != _core.SEALED_MODE:
            return False
        return _core.hash_file(str(path)) == (file_hash, size)
    except (OSError, AdapterRegistryError):
        return False


def _path_to_check(root: str, adapter_id: str, recorded: str) -> str:
    """What the core checks the row's file_path against: the file is always found from the
    root and the id, and a recorded path that names this adapter's weights in some root (where
    it was written, before the registry was moved or copied) agrees with it; any other path
    (another adapter's, a relative one, /etc/passwd) is passed on, and the core reports it.
    The weights' path is ``adapter_directory(root, id) / WEIGHTS_FILE``, written as a string
    (no Path built per adapter on this hot path)."""
    if names_this_adapter(recorded, adapter_id):
        return f"{root}/{adapter_id}/{_core.WEIGHTS_FILE}"
    return recorded


def _row_problems(pass_rate: Any, fitness_score: Any, version: Any, generation: Any) -> list[str]:
    """The database's number rules (migration 0002), for rows written by hand before them."""
    problems = []
    for check, args in (
        (validation.check_pass_rate, (pass_rate,)),
        (validation.check_fitness, (fitness_score,)),
        (validation.check_count, ("version", version, 1)),
        (validation.check_count, ("generation", generation or 0, 0)),
    ):
        try:
            check(*args)
        except InvalidAdapterError as err:
            problems.append(f"its row breaks a number rule: {err}")
    return problems


def recover(records: Records, root: Path, adopt: bool = False) -> RecoveryReport:
    """See ``AdapterRegistry.recover``.

    The trust model: whoever can write to the root can store adapters. What recover()
    registers is consistent with its files and its parents (every rule store() applies, applied
    again by the same code), not proof of who made it. The adapters that were in the root when
    a database with none was bound to it (the marker's ``unadopted``) are registered only with
    ``adopt``: a new database never takes a root's adapters over unasked.
    """
    report = RecoveryReport()
    removed, skipped = _core.sweep_staging_report(str(root))
    report.removed_staging, report.skipped_staging = sorted(removed), sorted(skipped)
    registered = records.ids()
    marker = read_marker(root)
    unadopted = set(marker.unadopted) if marker is not None else set()
    found: dict[str, _Found] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name in registered:
            continue
        if entry.name in unadopted and not adopt:
            report.unregistered.append((entry.name, _NOT_ADOPTED))
            continue
        try:
            candidate = _read_candidate(root, entry, report)
        except _REFUSALS as err:
            report.unregistered.append((entry.name, _one_line(err)))
            continue
        if candidate is not None:
            found[entry.name] = candidate
    # Parents before their children: each pass registers those whose parents all are.
    while found:
        ready = [c for c in found.values() if not set(c.record.parents) & found.keys()]
        for candidate in ready or list(found.values()):
            del found[candidate.record.id]
            try:
                _register(records, root, candidate, report)
            except _REFUSALS as err:
                report.unregistered.append((candidate.record.id, _one_line(err)))
    report.unregistered.sort()
    if adopt and marker is not None and marker.unadopted:
        left = {name for name, _ in report.unregistered}
        replace_marker(root, Marker(marker.registry_id, tuple(sorted(unadopted & left))))
    report.missing = sorted(
        i for i in registered if not (adapter_directory(root, i) / _core.WEIGHTS_FILE).is_file()
    )
    return report


_NOT_ADOPTED = (
    "in the root before its database was bound to it, never registered here: "
    "recover(adopt=True) (adapter-registry recover --adopt) registers it"
)
#: What a bad entry may raise; each is reported against that entry, and the others go on.
_REFUSALS = (AdapterRegistryError, OSError, ValueError, TypeError, RecursionError)
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass
class _Found:
    record: AdapterRecord
    lora: LoraConfig


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _read_candidate(root: Path, entry: os.DirEntry[str], report: RecoveryReport) -> _Found | None:
    """An unregistered directory's record, checked as store() checks its input; None for an
    empty claim (removed). Raises what is wrong with it."""
    if not entry.is_dir(follow_symlinks=False):
        raise InvalidAdapterError("not a directory")
    try:
        validation.check_adapter_id(entry.name)
    except InvalidAdapterError:
        raise InvalidAdapterError("not an adapter id") from None
    path = Path(entry.path)
    try:
        path.rmdir()  # only succeeds on an empty directory: a claim never filled
        report.removed_claims.append(entry.name)
        return None
    except OSError:
        pass
    try:
        record = record_from_file(read_small_file(path / _core.RECORD_FILE))
        _check_recorded_fields(record)
    except _REFUSALS as err:
        raise InvalidAdapterError(f"no valid {_core.RECORD_FILE}: {_one_line(err)}") from None
    if record.id != entry.name:
        raise InvalidAdapterError(f"{_core.RECORD_FILE} describes another adapter ({record.id})")
    if not names_this_adapter(record.file_path, record.id):
        # The directory is placed by the root and the id: a file_path that names this
        # adapter's weights in any root (where it was written, before a move) is its own.
        raise InvalidAdapterError(
            f"{_core.RECORD_FILE} names another adapter's file ({record.file_path})"
        )
    lora = parse_config(read_small_file(path / _core.CONFIG_FILE))
    storing.check_base_model(record.base_model_id, lora)
    if record.rank != lora.r:
        raise InvalidAdapterError(f"rank {record.rank} is not the config's r {lora.r}")
    tensors, _ = _core.read_safetensors_header(str(path / _core.WEIGHTS_FILE))
    check_tensors(lora, tensors)
    return _Found(record, lora)


def _check_recorded_fields(record: AdapterRecord) -> None:
    """Every rule store() applies to its input, by the same code, and the form of the fields
    store() derives (the files judge their values): a record on disk is input like any other."""
    storing.check_fields(
        task_type=record.task_type, source=record.source, session_id=record.session_id,
        training_task_hash=record.training_task_hash, agent_id=record.agent_id,
        pass_rate=record.pass_rate, fitness_score=record.fitness_score,
    )  # fmt: skip
    validation.check_adapter_id(record.id)
    validation.check_parent_ids(record.parents, record.id)
    for name in ("file_hash", "config_hash"):
        if not _HEX_DIGEST.fullmatch(str(getattr(record, name))):
            raise InvalidAdapterError(f"{name} is not a lower-case hex SHA-256")
    validation.check_count("file_size_bytes", record.file_size_bytes, 0)
    if not isinstance(record.is_archived, bool):
        raise InvalidAdapterError("is_archived is not a boolean")
    storing.check_created_at(record.created_at)


def _register(records: Records, root: Path, found: _Found, report: RecoveryReport) -> None:
    """Register a checked candidate once its parents are registered and its files verify."""
    record = found.record
    record.version, record.generation = storing.lineage_numbers(
        records, record.parents, record.version, record.generation
    )
    verdict = verify_records(root, [record])[0]
    if not verdict.ok:
        raise IntegrityError("; ".join(verdict.problems))
    _, inserted = records.insert(record)
    if inserted:  # else its own store() finished while we looked
        report.rolled_forward.append(record.id)

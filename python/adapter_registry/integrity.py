"""Integrity: stored bytes against their records (verify), and files and rows brought back in
step after crashes (recover).

The verdict of an adapter (hashes, size, the seal's modes, the PEFT link) is decided in one
place, the Rust core (``_core.verify_adapters``), where the hashing is; this module chooses
what to verify and turns the verdicts into reports.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from . import _core, validation
from .errors import AdapterRegistryError, InvalidAdapterError
from .record import AdapterRecord
from .records import Records, adapter_directory, record_from_file
from .reports import RecoveryReport, VerifyReport

__all__ = ["ProgressCallback", "recover", "verify_records"]

ProgressCallback = Callable[[int, int, int], object]


def verify_records(
    root: Path,
    records: Sequence[AdapterRecord],
    threads: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[VerifyReport]:
    """Each record's files, found from the root and its id, against it, on a pool of threads,
    in the order given."""
    expected = [
        (adapter_directory(root, r.id), r.file_hash, r.file_size_bytes, r.config_hash, r.file_path)
        for r in records
    ]
    verdicts = _core.verify_adapters(expected, validation.check_threads(threads), progress)
    return [
        VerifyReport(r.id, status, tuple(problems))
        for r, (status, problems) in zip(records, verdicts, strict=True)
    ]


def recover(records: Records, root: Path) -> RecoveryReport:
    """See ``AdapterRegistry.recover``."""
    report = RecoveryReport()
    report.removed_staging = sorted(_core.sweep_staging(str(root)))
    registered = records.ids()
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name in registered:
            continue
        why = _roll_forward(records, entry, report)
        if why is not None:
            report.unregistered.append((entry.name, why))
    report.missing = sorted(
        i for i in registered if not (adapter_directory(root, i) / _core.WEIGHTS_FILE).is_file()
    )
    return report


def _roll_forward(records: Records, entry: os.DirEntry[str], report: RecoveryReport) -> str | None:
    """Register one unregistered directory; returns why not, where it cannot be."""
    if not entry.is_dir(follow_symlinks=False):
        return "not a directory"
    try:
        validation.check_adapter_id(entry.name)
    except InvalidAdapterError:
        return "not an adapter id"
    path = Path(entry.path)
    try:
        path.rmdir()  # only succeeds on an empty directory: a claim never filled
        report.removed_claims.append(entry.name)
        return None
    except OSError:
        pass
    try:
        record = record_from_file((path / _core.RECORD_FILE).read_bytes())
        _check_recorded_fields(record)
    except (OSError, ValueError, TypeError) as err:
        return f"no valid {_core.RECORD_FILE}: {err}"
    if record.id != entry.name or record.file_path != str(path / _core.WEIGHTS_FILE):
        return f"{_core.RECORD_FILE} describes another adapter ({record.id})"
    verdict = verify_records(path.parent, [record])[0]
    if not verdict.ok:
        return "; ".join(verdict.problems)
    try:
        _, inserted = records.insert(record)
    except AdapterRegistryError as err:
        return str(err)
    if inserted:  # else its own store() finished while we looked
        report.rolled_forward.append(record.id)
    return None


def _check_recorded_fields(record: AdapterRecord) -> None:
    """The same checks store() made, for a record read back from disk."""
    validation.check_adapter_id(record.id)
    validation.check_task_type(record.task_type)
    validation.check_source(record.source)
    validation.check_pass_rate(record.pass_rate)
    validation.check_fitness(record.fitness_score)
    validation.check_parent_ids(json.loads(record.parent_ids or "[]"), record.id)

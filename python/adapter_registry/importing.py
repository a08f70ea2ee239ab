"""Import: the adapters of a bundle published and registered here, under their own ids.

For a bundle that opened (``bundles.open_bundle`` refused hostile members): 1. each entry is
checked as ``recover()`` checks a record (every rule of ``store()``), against its files and
the manifest's hashes; 2. one here with the same hashes is skipped, with others (or a
directory without a row) refused, and so is one whose parent is neither here nor coming;
3. generation by generation, the adapters are published by the core's exclusive publish, as
``store()`` does, on a pool of threads (the weights hashed as they are copied, and fsynced);
4. then the rows are registered, parents first, 500 per transaction: an adapter is registered
only once its files are durable. A crash before a commit leaves published directories that
the same import, run again, registers (or ``recover()``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from sqlalchemy import insert

from . import _core, queries, storing, validation
from .bundles import FILES, MUTABLE, Bundle, BundledAdapter, open_bundle, parents_first
from .errors import (
    AdapterAlreadyExistsError,
    AdapterRegistryError,
    IntegrityError,
    InvalidAdapterError,
)
from .integrity import _check_recorded_fields, verify_records
from .lora_config import check_tensors, parse_config
from .record import TABLE, AdapterRecord
from .records import (
    Records,
    adapter_directory,
    read_small_file,
    record_file_bytes,
    record_from_file,
)
from .reports import ImportReport
from .tables import EDGES, EVALUATIONS, TAGS

__all__ = ["import_bundle"]

#: Stores in flight at once: each spends most of its time waiting on fsync, which the
#: filesystem's journal then commits together.
DEFAULT_THREADS = 64
#: Bytes of tar members held in memory at once (each publish of a tar bundle stages from one).
IN_FLIGHT_BYTES = 1 << 30
#: Adapters registered per transaction (a long one would hold SQLite's write lock).
REGISTER_BATCH = 500
_Progress = Callable[[int, int, int, int], object]
_Pair = tuple[BundledAdapter, AdapterRecord]


class _Aliases(Protocol):
    """The registry's alias methods (``promoting.py``), which check what they set."""

    def aliases(self) -> dict[str, str]: ...
    def set_alias(self, alias: str, adapter_id: str, *, by: str | None = None) -> None: ...


class _Run:
    def __init__(self, records: Records, root: Path, bundle: Bundle, progress: _Progress | None):
        self.records, self.root, self.bundle = records, root, bundle
        self.report, self.progress = ImportReport(), progress
        self.total_bytes, self.total_files = 0, 0
        #: Adapters an earlier, interrupted run of this import published but did not register.
        self.adopted: list[_Pair] = []

    def refuse(self, adapter_id: str, err: AdapterRegistryError) -> None:
        prefix = f"adapter {adapter_id}"
        if prefix not in str(err):
            message = f"{prefix}: {err}"
            err = type(err)(err.errno, message) if isinstance(err, OSError) else type(err)(message)
        self.report.refused.setdefault(adapter_id, err)

    def count(self, files: int, size: int) -> None:
        self.report.files += files
        self.report.bytes += size
        if self.progress is not None:
            self.progress(self.report.files, self.total_files, self.report.bytes, self.total_bytes)


def import_bundle(
    records: Records,
    root: Path,
    src: str | os.PathLike[str],
    *,
    aliases: _Aliases | None = None,
    threads: int | None = None,
    progress: _Progress | None = None,
) -> ImportReport:
    """See ``AdapterRegistry.import_bundle``; ``aliases`` (the registry) sets those it lacks."""
    started = time.perf_counter()
    workers = validation.check_threads(threads) or DEFAULT_THREADS
    with open_bundle(src) as bundle:
        run = _Run(records, root, bundle, progress)
        adapters = {a.id: a for a in bundle.adapters}
        for adapter in bundle.adapters:
            try:
                _check_entry(bundle, adapter)
            except AdapterRegistryError as err:
                run.refuse(adapter.id, err)
            except (ValueError, TypeError, RecursionError) as err:  # a value of the wrong type
                run.refuse(adapter.id, InvalidAdapterError(f"its manifest entry: {err}"))
            except OSError as err:  # a member gone or changed since the bundle was opened
                run.refuse(adapter.id, IntegrityError(f"the bundle cannot be read ({err})"))
        present = _present(records, [a.id for a in bundle.adapters])
        todo = [a for a in bundle.adapters if a.id not in run.report.refused]
        todo = [a for a in todo if not _already_here(run, a, present.get(a.id))]
        run.total_files = len(FILES) * len(todo)
        run.total_bytes = sum(a.total_bytes for a in todo)
        if bundle.tar:  # a tar member is staged from memory: bound what is in flight
            largest = max((a.record.file_size_bytes for a in todo), default=1)
            workers = max(1, min(workers, IN_FLIGHT_BYTES // max(largest, 1)))
        published: list[_Pair] = []
        for level in _levels(run, todo, adapters):
            published += _publish_level(run, level, workers)
        published = _to_register(run, published)
        for start in range(0, len(published), REGISTER_BATCH):
            _register(run, published[start : start + REGISTER_BATCH])
        if aliases is not None:
            _import_aliases(run, aliases, bundle.aliases)
    run.report.seconds = time.perf_counter() - started
    return run.report


def _check_entry(bundle: Bundle, adapter: BundledAdapter) -> None:
    """What a bundle says of one adapter, checked before any of its bytes are hashed."""
    record = adapter.record
    _check_recorded_fields(record)
    expected = {
        _core.WEIGHTS_FILE: (record.file_size_bytes, record.file_hash),
        _core.CONFIG_FILE: (None, record.config_hash),
    }
    for name in FILES:
        size, digest = adapter.files[name]
        want_size, want_digest = expected.get(name, (None, None))
        if (want_size is not None and size != want_size) or (
            want_digest is not None and digest != want_digest
        ):
            raise IntegrityError(f"the manifest's {name} is not the one its record names")
        if not bundle.has(record.id, name):
            raise IntegrityError(f"{name} is missing from the bundle")
        if bundle.size(record.id, name) != size:
            raise IntegrityError(
                f"{name} is {bundle.size(record.id, name)} bytes in the bundle, "
                f"not the {size} of the manifest (truncated?)"
            )
    small = {name: bundle.read(record.id, name) for name in (_core.CONFIG_FILE, _core.RECORD_FILE)}
    for name, data in small.items():  # the weights are hashed as they are staged
        if hashlib.sha256(data).hexdigest() != adapter.files[name][1]:
            raise IntegrityError(f"{name} in the bundle does not match its manifest")
    written = record_from_file(small[_core.RECORD_FILE]).to_dict()
    for column, value in record.to_dict().items():
        if column not in MUTABLE and written[column] != value:
            raise IntegrityError(f"the manifest and its {_core.RECORD_FILE} disagree on {column}")
    lora = parse_config(small[_core.CONFIG_FILE])
    storing.check_base_model(record.base_model_id, lora)
    if record.rank != lora.r:
        raise InvalidAdapterError(f"rank {record.rank} is not the config's r {lora.r}")
    for key, value in adapter.tags.items():
        validation.check_name("tag key", key)
        validation.check_text(f"tag {key}", value)
    for row in adapter.evaluations:
        validation.check_text("metric", row["metric"], 128)
        validation.check_finite("value", row["value"])
        validation.check_optional_text("evaluator", row["evaluator"])
        validation.check_optional_text("eval_set_hash", row["eval_set_hash"])
        if row["details"] is not None:
            details = json.loads(str(row["details"]))
            row["details"] = validation.check_details(details)
        storing.check_created_at(row["recorded_at"])


def _present(records: Records, ids: list[str]) -> dict[str, AdapterRecord]:
    found: dict[str, AdapterRecord] = {}
    for start in range(0, len(ids), 500):
        found.update(
            (r.id, r) for r in records.select(queries.BY_IDS, ids=ids[start : start + 500])
        )
    return found


def _already_here(run: _Run, adapter: BundledAdapter, here: AdapterRecord | None) -> bool:
    """True for an adapter to skip (here with the same hashes); refuses one here with others."""
    theirs = adapter.record
    if here is None:
        directory = adapter_directory(run.root, theirs.id)
        if not os.path.lexists(directory):
            return False
        record = _as_published(run.root, theirs)
        if _published_by_us(run.root, record):  # by this import, run before and cut short
            run.adopted.append((adapter, record))
            return True
        run.refuse(
            theirs.id,
            AdapterAlreadyExistsError(
                f"its directory {directory} exists here without a row (run recover); nothing "
                "was written for it"
            ),
        )
        return True
    if (here.file_hash, here.config_hash, here.file_size_bytes) != (
        theirs.file_hash,
        theirs.config_hash,
        theirs.file_size_bytes,
    ):
        run.refuse(
            theirs.id,
            AdapterAlreadyExistsError(
                "it is registered here with other files (other hashes); nothing was written for it"
            ),
        )
        return True
    run.report.skipped.append(theirs.id)
    differences = [
        f"{column}: {getattr(here, column)!r} here, {getattr(theirs, column)!r} in the bundle"
        for column in MUTABLE
        if getattr(here, column) != getattr(theirs, column)
    ]
    if differences:
        run.report.differences[theirs.id] = differences
    return True


def _levels(
    run: _Run, todo: list[BundledAdapter], adapters: dict[str, BundledAdapter]
) -> list[list[BundledAdapter]]:
    """The adapters to import by generation within the bundle (parents in earlier lists);
    those whose parent is neither here nor coming are refused."""
    depth: dict[str, int] = {}
    settled = {a.id for a, _ in run.adopted} | set(run.report.skipped)
    coming = {a.id for a in todo}
    needed = {p for a in todo for p in a.record.parents if p not in coming}
    here = _present(run.records, sorted(needed)).keys()
    order = parents_first([a.id for a in todo], {a.id: a.record.parents for a in todo})
    for adapter in [adapters[i] for i in order]:  # whatever order the manifest gives
        level = 0
        for parent in adapter.record.parents:
            if parent in depth:
                level = max(level, depth[parent] + 1)
            elif parent in here or parent in settled:
                continue
            else:
                why = "was refused" if parent in adapters else "is in neither the bundle nor here"
                run.refuse(
                    adapter.id,
                    InvalidAdapterError(f"its parent {parent} {why}; nothing was written for it"),
                )
                break
        else:
            depth[adapter.id] = level
    levels: list[list[BundledAdapter]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for adapter in todo:
        if adapter.id in depth:
            levels[depth[adapter.id]].append(adapter)
    return levels


def _to_register(run: _Run, published: list[_Pair]) -> list[_Pair]:
    """Those published now and by an interrupted run (``run.adopted``), parents first (they
    are registered in batches); one whose parent is neither here nor among them is refused."""
    every = {a.id: (a, r) for a, r in [*run.adopted, *published]}
    order = parents_first(every, {i: r.parents for i, (_, r) in every.items()})
    outside = sorted({p for _, r in every.values() for p in r.parents} - every.keys())
    known = set(run.report.skipped) | _present(run.records, outside).keys()
    for i in order:
        if gone := [p for p in every[i][1].parents if p not in known]:
            run.refuse(i, InvalidAdapterError(f"its parent {gone[0]} is not here; unregistered"))
        else:
            known.add(i)
    return [every[i] for i in order if i in known]


def _publish_level(run: _Run, level: list[BundledAdapter], workers: int) -> list[_Pair]:
    """Publish one generation on a pool of threads; a child of a refused parent is refused."""
    for adapter in level:
        for parent in adapter.record.parents:
            if parent in run.report.refused:
                run.refuse(
                    adapter.id,
                    InvalidAdapterError(f"its parent {parent} was refused; nothing was written"),
                )
    level = [a for a in level if a.id not in run.report.refused]
    published: list[_Pair] = []
    pool = ThreadPoolExecutor(workers)
    try:
        futures = [pool.submit(_publish, run, adapter) for adapter in level]
        for adapter, future in zip(level, futures, strict=True):
            outcome = future.result()
            if isinstance(outcome, AdapterRegistryError):
                run.refuse(adapter.id, outcome)
            else:
                published.append((adapter, outcome))
                run.count(len(FILES), adapter.total_bytes)
    except BaseException as err:  # Ctrl-C: no new publish starts; nothing is registered
        pool.shutdown(wait=True, cancel_futures=True)
        if hasattr(err, "add_note"):
            err.add_note("the import stopped before registering; run it again to finish it")
        raise
    pool.shutdown(wait=True)
    return published


def _publish(run: _Run, adapter: BundledAdapter) -> AdapterRecord | AdapterRegistryError:
    """Stage and publish one adapter exactly as store() does; its record as published."""
    theirs = adapter.record
    try:
        config = run.bundle.read(theirs.id, _core.CONFIG_FILE)
        weights = _core.open_weights(run.bundle.source(theirs.id, _core.WEIGHTS_FILE))
        try:
            check_tensors(parse_config(config), weights.tensors)
            staged = weights.stage(str(run.root), theirs.id, config)
        finally:
            weights.close()
        _core.crash_point("staged")
        try:
            if (staged.file_hash, staged.file_size, staged.config_hash) != (
                theirs.file_hash,
                theirs.file_size_bytes,
                theirs.config_hash,
            ):
                raise IntegrityError(
                    f"{_core.WEIGHTS_FILE} or {_core.CONFIG_FILE} in the bundle does not match "
                    f"its manifest and record (sha256 {staged.file_hash}); nothing was written"
                )
            record = _as_published(run.root, theirs)
            staged.publish(
                theirs.id,
                record_file_bytes(record),
                exclusive_claim=os.environ.get(storing.FORCE_CLAIM_ENV) == "1",
            )
        finally:
            staged.discard()
    except AdapterRegistryError as err:
        return err
    except OSError as err:
        return IntegrityError(f"the bundle could not be read ({err})")
    return record


def _as_published(root: Path, theirs: AdapterRecord) -> AdapterRecord:
    """The record as this registry publishes it: every column as in the bundle but
    ``file_path``, where this registry writes the file."""
    where = adapter_directory(root, theirs.id) / _core.WEIGHTS_FILE
    record = AdapterRecord(**{**theirs.to_dict(), "file_path": str(where)})
    record._root = root
    return record


def _published_by_us(root: Path, record: AdapterRecord) -> bool:
    """Whether the directory of ``record``'s id holds exactly what this import publishes for
    it (its record file, byte for byte, and files that verify): an earlier run of the same
    import, stopped between the publish and the commit, whose adapter is registered now."""
    try:
        written = read_small_file(adapter_directory(root, record.id) / _core.RECORD_FILE)
    except (OSError, AdapterRegistryError):
        return False
    return written == record_file_bytes(record) and verify_records(root, [record])[0].ok


def _register(run: _Run, published: list[_Pair]) -> None:
    """Rows, edges, tags and history of published adapters: one transaction, one executemany."""
    _core.crash_point("published")
    edges = [{"parent_id": p, "child_id": r.id} for _, r in published for p in r.parents]
    tags = [
        {"adapter_id": a.id, "key": k, "value": v} for a, _ in published for k, v in a.tags.items()
    ]
    history = [{"adapter_id": a.id, **row} for a, _ in published for row in a.evaluations]
    with run.records.db.write() as conn:
        conn.execute(insert(TABLE), [record.to_dict() for _, record in published])
        for table, values in ((EDGES, edges), (TAGS, tags), (EVALUATIONS, history)):
            if values:
                conn.execute(insert(table), values)
        _core.crash_point("inserted")
    run.report.imported.extend(adapter.id for adapter, _ in published)
    run.report.evaluations += len(history)


def _import_aliases(run: _Run, target: _Aliases, aliases: dict[str, str]) -> None:
    """The bundle's aliases this registry lacks, each pointing at an adapter now here."""
    have, skipped = target.aliases(), run.report.aliases_skipped
    for alias, adapter_id in aliases.items():
        if alias in have:
            skipped.append((alias, f"set here already (to {have[alias]})"))
        elif adapter_id in run.report.refused or not run.records.exists(adapter_id):
            skipped.append((alias, f"adapter {adapter_id} is not here"))
        else:
            try:
                target.set_alias(alias, adapter_id, by="import")
                run.report.aliases_set.append(alias)
            except AdapterRegistryError as err:
                skipped.append((alias, str(err)))

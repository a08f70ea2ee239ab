"""Export and backup: adapters of a registry written out as a bundle (``bundles.py``).

The rows are read in one snapshot (one read transaction; REPEATABLE READ on PostgreSQL), so
a backup taken while agents store is an instant of the registry: every adapter registered
before it began, with the tags, evaluations and aliases of that instant. Files are written
once and never change, so they are copied after the snapshot; each is hashed against its
record (by the core, on every core: the registry's files before the kernel copies them into a
tar, a directory bundle's copies once written), and one that no longer matches stops the export
(``IntegrityError``, naming the adapter), leaving nothing at ``dest``. The bundle is written
beside ``dest`` under a hidden name, made durable (one ``syncfs``), and renamed into place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from . import _core
from .bundles import (
    ADAPTERS_DIR,
    FILES,
    MANIFEST,
    manifest_bytes,
    manifest_entry,
    member_name,
    parents_first,
)
from .database import Database
from .errors import IntegrityError, InvalidBundleError
from .record import TABLE, AdapterRecord
from .records import Records, adapter_directory, read_small_file, record_from_row
from .reports import ExportReport
from .tables import ALIASES, EVALUATIONS, TAGS

__all__ = ["Snapshot", "TransferProgress", "read_snapshot", "syncfs", "write_bundle"]

#: ``progress(files_done, files_total, bytes_done, bytes_total)``, called from the calling thread.
TransferProgress = Callable[[int, int, int, int], object]
#: Ids per IN list (SQLite allows 32,766 bound values; PostgreSQL more).
_CHUNK = 500
_COPY_THREADS = 4


@dataclass
class Snapshot:
    """Rows of one instant: records parents first, and what the manifest carries beside them."""

    records: list[AdapterRecord]
    tags: dict[str, dict[str, str]]
    evaluations: dict[str, list[dict[str, Any]]]
    aliases: dict[str, str]


def read_snapshot(db: Database, root: Path, ids: Sequence[str] | None) -> Snapshot:
    """The records of ``ids`` (None: every adapter), their tags, evaluations and aliases, read
    in one transaction: on SQLite a read transaction sees one snapshot of the WAL from its
    first read; PostgreSQL needs REPEATABLE READ for that (READ COMMITTED, its default, would
    let each statement see a later state)."""
    with db.read() as conn:
        if db.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            rows = _rows(conn, TABLE, TABLE.c.id, ids)
            records = [record_from_row(tuple(row), root) for row in rows]
            chosen = [r.id for r in records]
            tags: dict[str, dict[str, str]] = {}
            for row in _rows(conn, TAGS, TAGS.c.adapter_id, None if ids is None else chosen):
                tags.setdefault(row.adapter_id, {})[row.key] = row.value
            evaluations: dict[str, list[dict[str, Any]]] = {}
            history = _rows(
                conn, EVALUATIONS, EVALUATIONS.c.adapter_id, None if ids is None else chosen
            )
            for row in sorted(history, key=lambda r: r.id):
                evaluations.setdefault(row.adapter_id, []).append(dict(row._mapping))
            wanted = set(chosen)
            aliases = {
                row.alias: row.adapter_id
                for row in conn.execute(select(ALIASES))
                if row.adapter_id in wanted
            }
    by_id = {r.id: r for r in records}
    order = parents_first(
        sorted(by_id, key=lambda i: (by_id[i].created_at, i)),
        {i: r.parents for i, r in by_id.items()},
    )
    return Snapshot([by_id[i] for i in order], tags, evaluations, dict(sorted(aliases.items())))


def _rows(conn: Connection, table: Any, key: Any, ids: Sequence[str] | None) -> list[Any]:
    if ids is None:
        return list(conn.execute(select(table)))
    found: list[Any] = []
    for start in range(0, len(ids), _CHUNK):
        found.extend(conn.execute(select(table).where(key.in_(ids[start : start + _CHUNK]))))
    return found


def chosen_ids(records: Records, chosen: list[AdapterRecord], with_ancestors: bool) -> list[str]:
    """The ids of ``chosen`` and, with ancestors, every ancestor of each (each once); the
    lineage is looked up only for those with a parent not chosen already."""
    found = dict.fromkeys(r.id for r in chosen)
    if with_ancestors:
        for record in chosen:
            if any(p not in found for p in record.parents):
                found.update(dict.fromkeys(a.id for a in records.lineage(record.id)))
    return list(found)


@dataclass
class _Planned:
    record: AdapterRecord
    #: File name -> (size, expected sha256); the record file's is its hash as read.
    files: dict[str, tuple[int, str]]
    record_file: bytes


def _plan(root: Path, record: AdapterRecord) -> _Planned:
    directory = adapter_directory(root, record.id)
    try:
        record_file = read_small_file(directory / _core.RECORD_FILE)
        config_size = os.lstat(directory / _core.CONFIG_FILE).st_size
    except OSError as err:
        raise IntegrityError(f"adapter {record.id}: its files cannot be read ({err})") from None
    files = {
        _core.WEIGHTS_FILE: (record.file_size_bytes, record.file_hash),
        _core.CONFIG_FILE: (config_size, record.config_hash),
        _core.RECORD_FILE: (len(record_file), hashlib.sha256(record_file).hexdigest()),
    }
    return _Planned(record, files, record_file)


def write_bundle(
    root: Path,
    snapshot: Snapshot,
    dest: str | os.PathLike[str],
    progress: TransferProgress | None = None,
) -> ExportReport:
    """Write ``snapshot``'s adapters as a bundle at ``dest`` (a ``.tar`` when the name ends
    so, else a directory), which must not exist."""
    started = time.perf_counter()
    target = Path(dest).expanduser().absolute()
    if os.path.lexists(target):
        raise InvalidBundleError(f"bundle {target}: already exists; give a new path")
    target.parent.mkdir(parents=True, exist_ok=True)
    plans = [_plan(root, r) for r in snapshot.records]
    manifest = manifest_bytes(
        [
            manifest_entry(
                p.record,
                snapshot.tags.get(p.record.id, {}),
                snapshot.evaluations.get(p.record.id, []),
                p.files,
            )
            for p in plans
        ],
        {a: i for a, i in snapshot.aliases.items()},
    )
    report = ExportReport(target, [p.record.id for p in plans])
    counter = _Counter(plans, progress)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        if target.suffix == ".tar":
            _write_tar(root, partial, plans, manifest, counter)
        else:
            _write_directory(root, partial, plans, manifest, counter)
        syncfs(partial.parent)
        if os.path.lexists(target):
            raise InvalidBundleError(f"bundle {target}: was created while this export ran")
        os.rename(partial, target)
        syncfs(target.parent)
    finally:
        if os.path.lexists(partial):
            _remove(partial)
    report.files, report.bytes = counter.files, counter.bytes
    report.seconds = time.perf_counter() - started
    return report


class _Counter:
    def __init__(self, plans: list[_Planned], progress: TransferProgress | None) -> None:
        self.total_files = 3 * len(plans)
        self.total_bytes = sum(size for p in plans for size, _ in p.files.values())
        self.files = self.bytes = 0
        self.progress = progress

    def add(self, files: int, size: int) -> None:
        self.files += files
        self.bytes += size
        if self.progress is not None:
            self.progress(self.files, self.total_files, self.bytes, self.total_bytes)


def _mismatch(adapter_id: str, name: str, found: str | None) -> IntegrityError:
    return IntegrityError(
        f"adapter {adapter_id}: {name} does not match its record ({found or 'unreadable'}); "
        "nothing was exported (run verify on it)"
    )


def _write_tar(
    root: Path, path: Path, plans: list[_Planned], manifest: bytes, counter: _Counter
) -> None:
    """The members in order, manifest first; each stored file verified against its record
    (hashed by the core on every core) before the kernel copies it into the tar."""
    _verify_sources(root, plans, counter)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        _add(fd, MANIFEST, manifest)
        for plan in plans:
            adapter_id = plan.record.id
            for name in FILES:
                size = plan.files[name][0]
                if name == _core.RECORD_FILE:
                    _add(fd, member_name(adapter_id, name), plan.record_file)
                    counter.add(1, size)
                else:
                    _copy(
                        fd,
                        member_name(adapter_id, name),
                        adapter_directory(root, adapter_id) / name,
                        size,
                    )
        os.write(fd, bytes(_END))  # two empty blocks, the archive padded to a whole record
        os.write(fd, bytes(-os.lseek(fd, 0, os.SEEK_CUR) % tarfile.RECORDSIZE))
    finally:
        os.close(fd)


_END = 2 * tarfile.BLOCKSIZE


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o444, int(time.time())
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _pad(size: int) -> bytes:
    return bytes(-size % tarfile.BLOCKSIZE)


def _add(fd: int, name: str, data: bytes) -> None:
    os.write(fd, _header(name, len(data)) + data + _pad(len(data)))


def _copy(fd: int, name: str, source: Path, size: int) -> None:
    """A stored file into the tar by the kernel (copy_file_range), no byte through Python."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(src).st_size != size:
            raise _mismatch(source.parent.name, source.name, f"{os.fstat(src).st_size} bytes")
        os.write(fd, _header(name, size))
        done = 0
        while done < size:
            try:
                n = os.copy_file_range(src, fd, size - done)
            except OSError as err:  # another filesystem, or no copy_file_range: copy in chunks
                if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                n = os.write(fd, os.read(src, min(size - done, 1 << 20)))
            if n == 0:
                raise _mismatch(source.parent.name, source.name, f"ends after {done} bytes")
            done += n
        os.write(fd, _pad(size))
    finally:
        os.close(src)


def _verify_sources(root: Path, plans: list[_Planned], counter: _Counter) -> None:
    """Every weights file and config of ``plans`` under ``root`` (the registry's, or a
    directory bundle's copies) hashed by the core on every core against its record;
    IntegrityError naming the first that differs."""
    items = [
        (str(adapter_directory(root, p.record.id) / name), p.files[name][1])
        for p in plans
        for name in (_core.WEIGHTS_FILE, _core.CONFIG_FILE)
    ]
    done = [0, 0]

    def hashed(files: int, _total: int, size: int) -> None:
        counter.add(files - done[0], size - done[1])
        done[0], done[1] = files, size

    outcomes = _core.verify_files(items, None, hashed)
    for (member, _), (verdict, found, _size, _detail) in zip(items, outcomes, strict=True):
        if verdict != "ok":
            raise _mismatch(Path(member).parent.name, Path(member).name, found)


def _write_directory(
    root: Path, path: Path, plans: list[_Planned], manifest: bytes, counter: _Counter
) -> None:
    path.mkdir()
    (path / ADAPTERS_DIR).mkdir()

    def copy(plan: _Planned) -> _Planned:
        directory = path / ADAPTERS_DIR / plan.record.id
        directory.mkdir()
        source = adapter_directory(root, plan.record.id)
        for name in (_core.WEIGHTS_FILE, _core.CONFIG_FILE):
            if os.path.islink(source / name):
                raise _mismatch(plan.record.id, name, "a symlink")
            shutil.copyfile(source / name, directory / name)
        (directory / _core.RECORD_FILE).write_bytes(plan.record_file)
        return plan

    with ThreadPoolExecutor(_COPY_THREADS) as pool:
        for plan in pool.map(copy, plans):
            counter.add(1, plan.files[_core.RECORD_FILE][0])
    _verify_sources(path / ADAPTERS_DIR, plans, counter)  # the copies, as written
    for entry in path.rglob("*"):
        os.chmod(entry, 0o755 if entry.is_dir() else 0o444)
    (path / MANIFEST).write_bytes(manifest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def syncfs(path: Path) -> None:
    """Make every write to the filesystem holding ``path`` durable, in one call (``syncfs``):
    what thousands of fsyncs, one per file, would do at a fraction of the cost."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs of {path}: {os.strerror(code)}")
    finally:
        os.close(fd)

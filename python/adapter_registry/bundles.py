"""The bundle format: what ``export`` writes and ``import_bundle`` reads, and the checks that
stand between a bundle (anyone's bytes) and a registry.

A bundle is a directory, or a ``.tar`` of the same members (no compression)::

    manifest.json
    adapters/{id}/adapter.safetensors
    adapters/{id}/adapter_config.json
    adapters/{id}/.record.json

The manifest lists the adapters parents first, each with its record (every column, the
mutable ones as they were at export), its tags, its evaluation history, and the size and
SHA-256 of each of its three files; it also lists the aliases of the exported adapters.

Reading is strict: a member that is not one of these names (an absolute path, ``..``, any
other name), that is not a regular file (a symlink, a hard link, a device, a FIFO), or that
comes twice, and a manifest that is not this format or lists an id twice, make the whole
bundle an ``InvalidBundleError`` before anything is written. What is wrong with one adapter
(a file missing, a hash or a record that disagrees) refuses that adapter alone.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _core, validation
from .errors import IntegrityError, InvalidAdapterError, InvalidBundleError
from .record import AdapterRecord
from .records import record_from_file

__all__ = [
    "ADAPTERS_DIR",
    "FILES",
    "FORMAT",
    "MANIFEST",
    "Bundle",
    "BundledAdapter",
    "member_name",
    "open_bundle",
]

FORMAT, VERSION = "adapter-registry-bundle", 1
MANIFEST = "manifest.json"
ADAPTERS_DIR = "adapters"
#: The files of each adapter in a bundle, in the order they are written. (The PEFT name,
#: ``adapter_model.safetensors``, is a hard link the publish makes again: not in a bundle.)
FILES = (_core.WEIGHTS_FILE, _core.CONFIG_FILE, _core.RECORD_FILE)
#: A manifest larger than this is not one we wrote (about 1 KiB per adapter, more with history).
MAX_MANIFEST = 1 << 30
#: Record columns that may differ between a bundle and a registry holding the same adapter.
MUTABLE = ("pass_rate", "fitness_score", "is_archived")
_EVALUATION_KEYS = ("metric", "value", "evaluator", "eval_set_hash", "details", "recorded_at")


def member_name(adapter_id: str, name: str) -> str:
    return f"{ADAPTERS_DIR}/{adapter_id}/{name}"


@dataclass
class BundledAdapter:
    """One adapter as its manifest entry describes it (checked for form, not yet for bytes)."""

    record: AdapterRecord
    tags: dict[str, str]
    evaluations: list[dict[str, Any]]
    #: File name -> (size, sha256), for each of ``FILES``.
    files: dict[str, tuple[int, str]]

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())


class Bundle:
    """An opened bundle: its manifest's adapters and aliases, and its members' bytes.

    ``source(id, name)`` gives what the store path reads (a path of a directory bundle, the
    bytes of a tar member); ``read(id, name)`` the bytes of a member in full."""

    def __init__(self, path: Path, tar: bool) -> None:
        self.path = path
        self.tar = tar
        self._fd: int | None = None
        #: Member name -> (offset, size) inside the tar; or -> size inside the directory.
        self._members: dict[str, tuple[int, int]] = {}
        self.adapters: list[BundledAdapter] = []
        self.aliases: dict[str, str] = {}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bad(self, problem: str) -> InvalidBundleError:
        return InvalidBundleError(f"bundle {self.path}: {problem}")

    def has(self, adapter_id: str, name: str) -> bool:
        return member_name(adapter_id, name) in self._members

    def size(self, adapter_id: str, name: str) -> int:
        return self._members[member_name(adapter_id, name)][1]

    def path_of(self, adapter_id: str, name: str) -> Path:
        return self.path / ADAPTERS_DIR / adapter_id / name

    def source(self, adapter_id: str, name: str) -> str | bytes:
        return self.read(adapter_id, name) if self.tar else str(self.path_of(adapter_id, name))

    def read(self, adapter_id: str, name: str) -> bytes:
        return self._read(member_name(adapter_id, name))

    def _read(self, member: str) -> bytes:
        offset, size = self._members[member]
        fd = self._fd if self._fd is not None else _open_regular(self.path / member)
        try:
            chunks, done = [], 0
            while done < size:  # one pread returns at most about 2 GiB
                chunk = os.pread(fd, min(size - done, 1 << 30), offset + done)
                if not chunk:
                    break
                chunks.append(chunk)
                done += len(chunk)
        finally:
            if fd != self._fd:
                os.close(fd)
        if done != size:
            raise IntegrityError(f"{member} is {done} bytes, not the {size} it was (truncated)")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # Opening -------------------------------------------------------------------------------

    def _scan_directory(self) -> None:
        top = self._entries(self.path, {MANIFEST, ADAPTERS_DIR})
        if ADAPTERS_DIR in top:
            adapters = self.path / ADAPTERS_DIR
            self._check_directory(adapters)
            for adapter_id in self._entries(adapters, None):
                self._check_adapter_dir_name(adapter_id)
                directory = adapters / adapter_id
                self._check_directory(directory)
                for name in self._entries(directory, set(FILES)):
                    self._add_file(member_name(adapter_id, name), directory / name)
        if MANIFEST in top:
            self._add_file(MANIFEST, self.path / MANIFEST)

    def _entries(self, directory: Path, allowed: set[str] | None) -> list[str]:
        names = sorted(os.listdir(directory))
        for name in names:
            if allowed is not None and name not in allowed:
                raise self.bad(f"{directory.relative_to(self.path) / name} is not a bundle member")
        return names

    def _check_directory(self, path: Path) -> None:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise self.bad(f"{path.relative_to(self.path)} is not a directory (a symlink?)")

    def _check_adapter_dir_name(self, adapter_id: str) -> None:
        try:
            validation.check_adapter_id(adapter_id)
        except InvalidAdapterError:
            raise self.bad(f"{ADAPTERS_DIR}/{adapter_id} is not named by an adapter id") from None

    def _add_file(self, member: str, path: Path) -> None:
        mode = os.lstat(path)
        if not stat.S_ISREG(mode.st_mode):
            raise self.bad(f"{member} is not a regular file (a symlink, device or FIFO)")
        if mode.st_nlink != 1:
            raise self.bad(f"{member} is a hard link")
        self._members[member] = (0, mode.st_size)

    def _scan_tar(self) -> None:
        self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        length = os.fstat(self._fd).st_size
        try:
            with tarfile.open(self.path, "r:") as tar:
                members = tar.getmembers()
        except (tarfile.TarError, EOFError) as err:
            raise self.bad(f"not a readable tar ({err})") from None
        for member in members:
            name = member.name
            parts = name.split("/")
            if name.startswith("/") or ".." in parts or "" in parts or "." in parts:
                raise self.bad(f"member {name!r} is not a bundle member (its path escapes)")
            if member.isdir() and (
                name == ADAPTERS_DIR or (len(parts) == 2 and parts[0] == ADAPTERS_DIR)
            ):
                continue  # a directory of the layout: nothing to read
            layout = name == MANIFEST or (
                len(parts) == 3 and parts[0] == ADAPTERS_DIR and parts[2] in FILES
            )
            if not layout:
                raise self.bad(f"member {name!r} is not a bundle member")
            if len(parts) == 3:
                self._check_adapter_dir_name(parts[1])
            if not member.isreg() or member.issparse():
                raise self.bad(f"member {name} is not a regular file (a link, device or FIFO)")
            if name in self._members:
                raise self.bad(f"member {name} comes twice")
            if member.offset_data + member.size > length:
                raise self.bad(f"member {name} is truncated (the tar ends inside it)")
            self._members[name] = (member.offset_data, member.size)

    def _read_manifest(self) -> None:
        if MANIFEST not in self._members:
            raise self.bad(f"no {MANIFEST}")
        if self._members[MANIFEST][1] > MAX_MANIFEST:
            raise self.bad(f"{MANIFEST} is over {MAX_MANIFEST >> 20} MiB")
        try:
            raw = json.loads(self._read(MANIFEST))
        except (ValueError, RecursionError, IntegrityError) as err:
            raise self.bad(f"{MANIFEST} is not JSON ({err})") from None
        if not isinstance(raw, dict) or (raw.get("format"), raw.get("version")) != (
            FORMAT,
            VERSION,
        ):
            raise self.bad(f"{MANIFEST} is not a {FORMAT} version {VERSION}")
        adapters, aliases = raw.get("adapters"), raw.get("aliases", {})
        if not isinstance(adapters, list) or not isinstance(aliases, dict):
            raise self.bad(f"{MANIFEST} has no list of adapters")
        listed: set[str] = set()
        for entry in adapters:
            adapter = self._adapter(entry)
            if adapter.id in listed:
                raise self.bad(f"adapter {adapter.id} is listed twice")
            listed.add(adapter.id)
            self.adapters.append(adapter)
        for member in self._members:
            if member != MANIFEST and member.split("/")[1] not in listed:
                raise self.bad(f"member {member} belongs to no adapter of the manifest")
        self.aliases = {str(k): str(v) for k, v in aliases.items()}

    def _adapter(self, entry: Any) -> BundledAdapter:
        if not isinstance(entry, dict) or not isinstance(entry.get("record"), dict):
            raise self.bad(f"{MANIFEST} lists an adapter without its record")
        label = f"adapter {str(entry['record'].get('id'))[:64]!r}"
        try:
            record = record_from_file(json.dumps(entry["record"]).encode())
            tags, history, files = (
                entry.get("tags", {}),
                entry.get("evaluations", []),
                entry["files"],
            )
            if not isinstance(tags, dict) or not isinstance(history, list):
                raise InvalidAdapterError("tags or evaluations are not a mapping and a list")
            evaluations = [{key: row[key] for key in _EVALUATION_KEYS} for row in history]
            sizes = {name: (int(files[name]["size"]), str(files[name]["sha256"])) for name in FILES}
        except (InvalidAdapterError, KeyError, TypeError, ValueError) as err:
            raise self.bad(f"{MANIFEST}: {label}: {err}") from None
        return BundledAdapter(record, {str(k): str(v) for k, v in tags.items()}, evaluations, sizes)


def open_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Open a bundle for reading: its members listed and checked, its manifest read."""
    where = Path(path).expanduser().absolute()
    if where.is_dir():
        bundle = Bundle(where, tar=False)
    elif where.is_file() and where.suffix == ".tar":
        bundle = Bundle(where, tar=True)
    else:
        raise InvalidBundleError(f"bundle {where}: no such directory or .tar")
    try:
        bundle._scan_tar() if bundle.tar else bundle._scan_directory()
        bundle._read_manifest()
    except OSError as err:
        bundle.close()
        raise InvalidBundleError(f"bundle {where}: cannot be read ({err})") from None
    except BaseException:
        bundle.close()
        raise
    return bundle


def _open_regular(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IntegrityError(f"{path.name} is not a regular file")
    return fd


def manifest_entry(
    record: AdapterRecord,
    tags: dict[str, str],
    evaluations: list[dict[str, Any]],
    files: dict[str, tuple[int, str]],
) -> dict[str, Any]:
    """One adapter's entry of ``manifest.json``."""
    return {
        "record": record.to_dict(),
        "tags": tags,
        "evaluations": [{key: row[key] for key in _EVALUATION_KEYS} for row in evaluations],
        "files": {name: {"size": size, "sha256": digest} for name, (size, digest) in files.items()},
    }


def manifest_bytes(entries: list[dict[str, Any]], aliases: dict[str, str]) -> bytes:
    return json.dumps(
        {"format": FORMAT, "version": VERSION, "adapters": entries, "aliases": aliases},
        indent=1,
        sort_keys=True,
    ).encode()


def parents_first(ids: Iterable[str], parents: dict[str, list[str]]) -> list[str]:
    """``ids`` ordered so that each comes after those of its parents that are among them (the
    order given otherwise; a cycle, which no registry holds, keeps the order given)."""
    wanted = list(dict.fromkeys(ids))
    among = set(wanted)
    waiting = {i: {p for p in parents.get(i, []) if p in among and p != i} for i in wanted}
    children: dict[str, list[str]] = {}
    for adapter_id, pending in waiting.items():
        for parent in pending:
            children.setdefault(parent, []).append(adapter_id)
    ready = deque(i for i in wanted if not waiting[i])
    ordered: list[str] = []
    while ready:
        adapter_id = ready.popleft()
        ordered.append(adapter_id)
        for child in children.get(adapter_id, []):
            waiting[child].discard(adapter_id)
            if not waiting[child]:
                ready.append(child)
    done = set(ordered)
    return ordered + [i for i in wanted if i not in done]

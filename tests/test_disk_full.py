"""A full disk (issue 5): stores into a small filesystem fail with a clear error and leave
nothing partial; the registry stays consistent, and usable once space returns.

The home is a 24 MiB tmpfs (mounting needs root, which CI has), filled up to a chosen number of
free bytes so that the failure lands at every stage in turn: the weights, the config, the record
file, the SQLite insert. RLIMIT_FSIZE gives the same failures (as EFBIG) without a mount."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adapter_registry import AdapterRegistry, AdapterStorageError
from adapter_registry._lora_files import lora_of_size

MIB = 1 << 20
WEIGHTS, CONFIG = lora_of_size(MIB, seed=7)
ARGS = {"config": CONFIG, "task_type": "bug-fix", "source": "manual", "session_id": "full"}
STAGES = ("adapter.safetensors", "adapter_config.json", ".record.json", "disk is full")
PAGE = 4096
WEIGHT_PAGES = -(-len(WEIGHTS) // PAGE)
# Free space left before each store: none, less than the weights, then room for the weights
# and one more page at a time (so the config, the record file and then the database run out),
# and enough.
FREE = [0, PAGE, 300_000, *((WEIGHT_PAGES + k) * PAGE for k in range(6)), 3 * MIB]


@contextmanager
def small_filesystem(path: Path) -> Iterator[None]:
    """A 24 MiB tmpfs mounted at `path` (this needs root, as CI and these machines have)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", path], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", path], check=True)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past `limit` bytes fail with EFBIG instead of killing the process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def fill(home: Path, leave: int) -> None:
    """Write a filler file so that about `leave` bytes stay free."""
    filler = home / "filler"
    filler.unlink(missing_ok=True)
    st = os.statvfs(home)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with open(filler, "wb") as f:
        while size > 0:
            try:
                size -= f.write(b"\0" * min(size, MIB))
            except OSError as err:
                assert err.errno == errno.ENOSPC
                break


def check_consistent(registry: AdapterRegistry, expected: int) -> None:
    """Nothing partial; after recover() (which registers an adapter published before its row
    could be written) every directory has its row and every adapter verifies."""
    assert os.listdir(registry.root / ".staging") == []
    report = registry.recover()
    assert report.clean
    ids = sorted(r.id for r in registry.list_all())
    assert sorted(e for e in os.listdir(registry.root) if not e.startswith(".")) == ids
    assert len(ids) == expected + len(report.rolled_forward)
    assert all(report.ok for report in registry.verify_all())


def store_or_fail(registry: AdapterRegistry, failures: list[str]) -> bool:
    try:
        registry.store(WEIGHTS, **ARGS)
        return True
    except AdapterStorageError as err:
        assert err.errno in (errno.ENOSPC, errno.EFBIG), err
        assert str(err).startswith("adapter ")
        assert "No space left" in str(err) or "disk is full" in str(err) or "too large" in str(err)
        failures.append(str(err))
        return False


def test_a_full_filesystem_fails_cleanly_and_the_registry_recovers(tmp_path: Path) -> None:
    home = tmp_path / "small"
    with small_filesystem(home):
        registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home}/r.db")
        registry.store(WEIGHTS, **ARGS)
        failures: list[str] = []
        for leave in FREE:
            stored = len(registry.list_all())
            fill(home, leave)
            ok = store_or_fail(registry, failures)
            (home / "filler").unlink()  # space returns
            check_consistent(registry, stored + ok)
        # the filling steps made each stage run out in turn
        stages = {stage for f in failures for stage in STAGES if stage in f}
        assert stages == set(STAGES), failures
        stored = len(registry.list_all())
        registry.store(WEIGHTS, **ARGS)  # usable again
        check_consistent(registry, stored + 1)
        registry.close()
    print(f"{len(failures)} stores failed for want of space:", *failures, sep="\n")


def test_a_file_size_limit_fails_cleanly_too(registry: AdapterRegistry) -> None:
    registry.store(WEIGHTS, **ARGS)
    failures: list[str] = []
    for limit in (0, PAGE, MIB // 2, len(WEIGHTS) - 1):
        stored = len(registry.list_all())
        with file_size_limit(limit):
            ok = store_or_fail(registry, failures)
        check_consistent(registry, stored + ok)
    assert len(failures) == 4
    stored = len(registry.list_all())
    registry.store(WEIGHTS, **ARGS)
    check_consistent(registry, stored + 1)

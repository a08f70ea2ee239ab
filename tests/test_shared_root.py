"""Shared roots: several Unix users storing into one root, and the staging lock's rule for hosts
that share a root over NFS.

Root bypasses permissions, and CI runs as root, so what another user can or cannot do is done in a
child process that drops to another uid (``OTHER``, ``THIRD``: no account needed). This kernel
has no NFS: another host is stood in for by an owner record naming another host, whose lock
looks free here exactly as a host-local lock would (``rust/owner.rs`` holds the rule, and
``rust/staging.rs`` its unit tests).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRegistry, _core
from adapter_registry._lora_files import lora_bytes, lora_config

OTHER = 65534
THIRD = 65533


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every uid can enter, holding a root every uid can write (mode 1777, as a
    group's shared directory would be made by an administrator)."""
    assert os.geteuid() == 0, "these tests drop to other uids, which needs root (as in CI)"
    base = Path(tempfile.mkdtemp(prefix="adapter-registry-shared-"))
    base.chmod(0o755)
    (base / "adapters").mkdir()
    (base / "adapters").chmod(0o1777)
    try:
        yield base
    finally:
        shutil.rmtree(base)


#: Children are forked from this process, whose modules are all imported already: the
#: interpreter itself may live where another uid cannot read (CI's is under /root, mode 0700).
FORK = multiprocessing.get_context("fork")


def _child(uid: int, umask: int, work: Callable[..., Any], args: tuple[Any, ...], out: Any) -> None:
    try:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        os.umask(umask)
        out.send(("ok", work(*args)))
    except BaseException as err:  # reported to the parent, which fails the test with it
        out.send(("error", repr(err)))


def start_as(uid: int, work: Callable[..., Any], *args: Any, umask: int = 0o022) -> Any:
    """Start `work(*args)` in a child running as `uid`; returns (process, connection)."""
    receive, send = FORK.Pipe(duplex=False)
    child = FORK.Process(target=_child, args=(uid, umask, work, args, send))
    child.start()
    send.close()
    return child, receive


def run_as(uid: int, work: Callable[..., Any], *args: Any, umask: int = 0o022) -> Any:
    """`work(*args)` run as `uid`, with `umask`; its result, or the test fails with its error."""
    child, receive = start_as(uid, work, *args, umask=umask)
    status, value = receive.recv()
    child.join(60)
    assert status == "ok", value
    return value


def mode(path: Path) -> int:
    return path.lstat().st_mode & 0o7777


def stage_and_die(root: str, label: str) -> None:
    staged = _core.stage(root, label, lora_bytes(seed=3), b"{}")  # held: dropping it clears it
    os.kill(os.getpid(), signal.SIGKILL)
    del staged


def stage_and_wait(root: str, label: str, out: Any, release: Any) -> None:
    staged = _core.stage(root, label, lora_bytes(seed=4), b"{}")
    out.send(str(staged.path))
    release.wait(60)
    staged.discard()


def sweep(root: str) -> dict[str, Any]:
    removed, skipped = _core.sweep_staging_report(root)
    return {"removed": removed, "skipped": skipped, "plain": _core.sweep_staging(root)}


def die_staging(root: Path, label: str, uid: int = 0, umask: int = 0o022) -> Path:
    """The staging directory of a store killed (SIGKILL) after staging, as `uid`."""
    child, receive = start_as(uid, stage_and_die, str(root), label, umask=umask)
    with pytest.raises(EOFError):
        receive.recv()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    [home] = [p for p in (root / _core.STAGING_DIR).iterdir() if p.name.startswith(label)]
    return home


@pytest.fixture
def live_store(shared: Path) -> Iterator[Callable[[int, str], Path]]:
    """A starter of stores that stage as a uid and hold their staging directory until the test
    ends; it returns the staged path."""
    release = FORK.Event()
    children = []

    def start(uid: int, label: str) -> Path:
        receive, send = FORK.Pipe(duplex=False)
        args = (str(shared / "adapters"), label, send, release)
        child, _ = start_as(uid, stage_and_wait, *args)
        children.append(child)
        return Path(receive.recv())

    yield start
    release.set()
    for child in children:
        child.join(60)
        assert child.exitcode == 0


# ------------------------------------------------------------------------ several users


def hash_as_reader(directory: str) -> dict[str, Any]:
    return {
        "weights": _core.hash_file(f"{directory}/{_core.WEIGHTS_FILE}"),
        "config": _core.hash_file(f"{directory}/{_core.CONFIG_FILE}"),
        "seal": _core.seal_problems(directory),
    }


def test_a_store_under_umask_077_leaves_an_adapter_every_user_can_verify(shared: Path) -> None:
    root = shared / "adapters"
    registry = AdapterRegistry(root=root, db_url=f"sqlite:///{shared / 'registry.db'}")
    before = os.umask(0o077)
    try:
        record = registry.store(
            lora_bytes(seed=1), config=lora_config(), task_type="bug-fix", source="manual",
            session_id="umask",
        )  # fmt: skip
    finally:
        os.umask(before)
    directory = Path(record.file_path).parent
    assert mode(directory) == _core.DIR_MODE == 0o755
    assert {mode(p) for p in directory.iterdir()} == {_core.SEALED_MODE}
    assert mode(root / _core.STAGING_DIR) == _core.STAGING_DIR_MODE == 0o1777
    found = run_as(OTHER, hash_as_reader, str(directory))
    assert found["weights"] == (record.file_hash, record.file_size_bytes)
    assert found["config"][0] == record.config_hash
    assert found["seal"] == []
    registry.close()


def stage_and_publish(root: str, name: str) -> str:
    staged = _core.stage(root, name, lora_bytes(seed=5), b"{}")
    return str(staged.publish(name, b"{}"))


def test_every_user_stages_into_one_root_and_nobody_removes_anothers(
    shared: Path, live_store: Callable[[int, str], Path]
) -> None:
    root = shared / "adapters"
    # The first store into the root is another user's, under umask 077: `.staging` still
    # comes out 1777, so a third user can stage and publish beside it.
    dead = die_staging(root, "dead", uid=OTHER, umask=0o077)
    assert mode(root / _core.STAGING_DIR) == 0o1777 and dead.stat().st_uid == OTHER
    assert mode(dead) == 0o755
    published = run_as(THIRD, stage_and_publish, str(root), "third", umask=0o077)
    assert mode(Path(published)) == 0o755
    live = live_store(OTHER, "live").parent

    found = run_as(THIRD, sweep, str(root))
    assert found["removed"] == [] and found["plain"] == []
    [(name, why)] = found["skipped"]  # the live store is not reported: it is alive
    assert name == dead.name and f"uid {OTHER}" in why and "not ours" in why
    assert dead.exists() and live.exists()

    # Its owner, or root, clears it; the live one stays.
    assert run_as(OTHER, sweep, str(root)) == {"removed": [dead.name], "skipped": [], "plain": []}
    assert not dead.exists() and live.exists()
    again = die_staging(root, "again", uid=OTHER)
    # The root holds the third user's adapter, made with no registry: adopting is explicit.
    registry = AdapterRegistry(root=root, db_url=f"sqlite:///{shared / 'registry.db'}", adopt=True)
    assert registry.recover().removed_staging == [again.name] and live.exists()
    registry.close()


def recover_as_reader(root: str, db: str) -> tuple[list[str], list[str], bool]:
    registry = AdapterRegistry(root=root, db_url=f"sqlite:///{db}")
    report = registry.recover()
    registry.close()
    return report.removed_staging, [name for name, _ in report.skipped_staging], report.clean


def test_recover_by_another_user_is_not_stopped_by_a_dead_store_it_may_not_remove(
    shared: Path,
) -> None:
    root = shared / "adapters"
    db = shared / "registry.db"
    AdapterRegistry(root=root, db_url=f"sqlite:///{db}").close()
    db.chmod(0o666)  # SQLite gives its -wal and -shm files the database file's mode
    shared.chmod(0o1777)
    dead = die_staging(root, "dead", uid=OTHER)
    assert run_as(THIRD, recover_as_reader, str(root), str(db)) == ([], [dead.name], True)
    assert dead.exists()


# ---------------------------------------------------------------- many hosts (NFS rule)


def name_another_host(home: Path) -> None:
    record = home / _core.STAGING_OWNER_FILE
    lines = record.read_text().splitlines()
    lines = ["host=another-host" if line.startswith("host=") else line for line in lines]
    record.chmod(0o644)
    record.write_text("\n".join(lines) + "\n")


def backdate(home: Path, seconds: float) -> None:
    """Set the mtime of a staging directory and of everything in it `seconds` into the past."""
    when = time.time() - seconds
    for path in [home, *home.rglob("*")]:
        os.utime(path, (when, when), follow_symlinks=False)


def test_another_hosts_staging_is_swept_only_past_the_age_rule(shared: Path) -> None:
    root = shared / "adapters"
    fresh = die_staging(root, "fresh")
    old = die_staging(root, "old")
    for home in (fresh, old):
        name_another_host(home)
    backdate(fresh, _core.STAGING_STALE_AFTER_S - 3600)
    backdate(old, _core.STAGING_STALE_AFTER_S + 60)
    assert _core.sweep_staging_report(str(root)) == ([old.name], [])
    assert fresh.exists() and not old.exists()


def test_this_hosts_dead_store_is_swept_at_once_and_a_live_one_never(
    shared: Path, live_store: Callable[[int, str], Path]
) -> None:
    root = shared / "adapters"
    dead = die_staging(root, "dead")
    live = live_store(0, "live").parent
    # Whatever its record says and however old it looks, a held lock keeps it.
    name_another_host(live)
    backdate(live, 10 * _core.STAGING_STALE_AFTER_S)
    assert _core.sweep_staging(str(root)) == [dead.name]
    assert live.exists() and (live / _core.STAGING_LOCK_FILE).exists()

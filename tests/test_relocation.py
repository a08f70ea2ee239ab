"""A registry home moved or copied (mv, cp -a, rsync -a, tar) works in its new place and checks
its own files, never the old place's: with the original deleted, verify, load_state_dict,
store, recover and show all succeed and name only the new paths (README: "One registry,
wherever it lives").

SQLite only: a home holds its SQLite database, and moving one is what these tests do. (On
PostgreSQL the database stays where it is and only the root moves: test_root_moved_beside_its_
postgresql_database.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from adapter_registry import AdapterRecord, AdapterRegistry, _core
from adapter_registry._lora_files import lora_bytes, lora_config
from adapter_registry.cli import cli


def store(registry: AdapterRegistry, seed: int, **fields: Any) -> AdapterRecord:
    return registry.store(
        lora_bytes(seed=seed), config=lora_config(), task_type="bug-fix", source="manual",
        session_id="s", **fields,
    )  # fmt: skip


def move(old: Path, new: Path) -> None:
    subprocess.run(["mv", str(old), str(new)], check=True)


def copy(old: Path, new: Path) -> None:
    subprocess.run(["cp", "-a", str(old), str(new)], check=True)


def rsync(old: Path, new: Path) -> None:
    subprocess.run(["rsync", "-a", f"{old}/", f"{new}/"], check=True)


def tar(old: Path, new: Path) -> None:
    archive = old.parent / "home.tar"
    subprocess.run(["tar", "-C", str(old.parent), "-cf", str(archive), old.name], check=True)
    new.mkdir()
    subprocess.run(["tar", "-C", str(new), "-xf", str(archive), "--strip-components=1"], check=True)
    archive.unlink()


WAYS: dict[str, Callable[[Path, Path], None]] = {
    "mv": move, "cp -a": copy, "rsync -a": rsync, "tar": tar,
}  # fmt: skip


def cli_json(home: Path, *args: str) -> tuple[Any, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stdout


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, list[AdapterRecord]]:
    """A home with a parent and a child, evaluated, closed."""
    home = tmp_path / "old-home"
    with AdapterRegistry(home=home) as registry:
        parent = store(registry, 1)
        child = store(registry, 2, parent_ids=[parent.id])
        registry.update_fitness(child.id, fitness_score=0.8)
    return home, [parent, child]


@pytest.mark.parametrize("way", list(WAYS))
def test_a_relocated_home_works_in_its_new_place(
    way: str, made: tuple[Path, list[AdapterRecord]], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    old, records = made
    new = tmp_path / "new-home"
    WAYS[way](old, new)
    if old.exists():
        shutil.rmtree(old)  # the original deleted
    assert not old.exists()
    with AdapterRegistry(home=new, create=False) as registry:
        reports = registry.verify_all()
        assert [r.ok for r in reports] == [True, True], [r.problems for r in reports]
        for record in registry.list_all():
            assert record.file_path == str(new / "adapters" / record.id / _core.WEIGHTS_FILE)
            assert record.recorded_file_path.startswith(str(old))  # kept as written
            assert record.directory == new / "adapters" / record.id
        tensors = registry.load_state_dict(records[1].id)
        assert tensors and all(t.device.type == "cpu" for t in tensors.values())
        third = store(registry, 3, parent_ids=[records[1].id])
        assert third.file_path == str(new / "adapters" / third.id / _core.WEIGHTS_FILE)
        assert registry.verify(third.id).ok
        assert registry.recover().clean
        assert registry.retrieve_by_id(records[1].id).fitness_score == 0.8
    for args in (["show", records[1].id], ["verify", "--all"], ["recover"], ["ls", "-a"]):
        _, text = cli_json(new, *args)
        assert str(old) not in text, args
    shown, _ = cli_json(new, "show", records[1].id)
    assert shown["record"]["file_path"].startswith(str(new))


def test_a_copied_home_checks_its_own_files_never_the_originals(
    made: tuple[Path, list[AdapterRecord]], tmp_path: Path
) -> None:
    """The issue's copy that reported "ok" while checking the original's files."""
    old, records = made
    new = tmp_path / "copy"
    copy(old, new)
    target = records[0].id
    # Damage the original: the copy does not notice, for it never reads there.
    damaged = old / "adapters" / target / _core.WEIGHTS_FILE
    damaged.chmod(0o644)
    damaged.write_bytes(b"x" * damaged.stat().st_size)
    with AdapterRegistry(home=new, create=False) as copy_registry:
        assert all(r.ok for r in copy_registry.verify_all())
    with AdapterRegistry(home=old, create=False) as original:
        report = original.verify(target)
        assert not report.ok and str(new) not in " ".join(report.problems)
    # Damage the copy: the copy reports it, naming its own file.
    gone = new / "adapters" / target / _core.CONFIG_FILE
    gone.chmod(0o644)
    gone.unlink()
    with AdapterRegistry(home=new, create=False) as copy_registry:
        report = copy_registry.verify(target)
        assert report.status == "missing" or not report.ok
        assert str(old) not in " ".join(report.problems)


def test_a_row_naming_another_file_is_still_a_mismatch(
    made: tuple[Path, list[AdapterRecord]], tmp_path: Path
) -> None:
    """A recorded path is accepted only where it names this adapter's own weights (in any
    root); a row written by hand that names another adapter's file or any other file keeps
    it as its file_path, and verify reports it."""
    from conftest import raw_sql

    old, records = made
    with AdapterRegistry(home=old) as registry:
        other = str(old / "adapters" / records[1].id / _core.WEIGHTS_FILE)
        for path in (other, "/etc/passwd", f"relative/{records[0].id}/{_core.WEIGHTS_FILE}"):
            row = {**records[0].to_dict(), "id": str(uuid.uuid4()), "file_path": path}
            shutil.copytree(registry.root / records[0].id, registry.root / row["id"])
            names = ", ".join(row)
            values = ", ".join(f":{c}" for c in row)
            raw_sql(registry, f"INSERT INTO adapter_records ({names}) VALUES ({values})", **row)
            assert registry.retrieve_by_id(row["id"]).file_path == path
            report = registry.verify(row["id"])
            assert report.status == "mismatch", report
            assert any(f"file_path {path}" in p for p in report.problems), report.problems


def test_a_root_moved_beside_its_postgresql_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Many hosts, one PostgreSQL database: the root mounted at another path works there."""
    server = request.getfixturevalue("postgres")
    url = server.create_database(f"reloc_{tmp_path.name[-20:].replace('-', '_')}")
    root = tmp_path / "mnt-a" / "adapters"
    with AdapterRegistry(root, url) as registry:
        record = store(registry, 1)
    moved = tmp_path / "mnt-b" / "adapters"
    moved.parent.mkdir()
    move(root, moved)
    with AdapterRegistry(moved, url, create=False) as registry:
        assert registry.verify(record.id).ok
        assert registry.retrieve_by_id(record.id).file_path.startswith(str(moved))
        assert registry.recover().clean


def test_after_rsync_without_hard_links_a_peft_name_that_differs_is_still_reported(
    made: tuple[Path, list[AdapterRecord]], tmp_path: Path
) -> None:
    """rsync -a makes the PEFT name a copy of the weights: accepted while byte-identical and
    sealed, reported (by verify and by loading) once it differs."""
    torch = pytest.importorskip("torch")
    assert torch is not None
    from adapter_registry import IntegrityError

    old, records = made
    new = tmp_path / "synced"
    rsync(old, new)
    target = records[0].id
    peft = new / "adapters" / target / _core.PEFT_WEIGHTS_FILE
    weights = peft.with_name(_core.WEIGHTS_FILE)
    assert peft.stat().st_ino != weights.stat().st_ino  # no longer one file
    peft.chmod(0o644)
    data = bytearray(peft.read_bytes())
    data[-1] ^= 1
    peft.write_bytes(bytes(data))
    peft.chmod(_core.SEALED_MODE)
    with AdapterRegistry(home=new, create=False) as registry:
        report = registry.verify(target)
        assert report.status == "mismatch" and report.problems == (
            f"{_core.PEFT_WEIGHTS_FILE} is not the same file as {_core.WEIGHTS_FILE}",
        )
        with pytest.raises(IntegrityError, match="is not the same file"):
            registry.load_state_dict(target)
        assert registry.verify(records[1].id).ok

"""verify() and verify_all(): every kind of damage is reported by kind and adapter."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterNotFoundError, AdapterRegistry, IntegrityError


def writable(path: Path) -> Path:
    path.chmod(0o644)  # as root, or the owner, could
    return path


def flip_last_byte(path: Path) -> None:
    data = bytearray(writable(path).read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = writable(path).read_bytes()
    path.write_bytes(data[:-4])


def tamper_config(path: Path) -> None:
    config_path = path.with_name("adapter_config.json")
    config = json.loads(writable(config_path).read_bytes())
    config["lora_alpha"] = 1000
    config_path.write_text(json.dumps(config))


def replace_peft_file(path: Path) -> None:
    """Unlink the hard link PEFT loads and put other bytes under its name."""
    peft = path.with_name("adapter_model.safetensors")
    data = bytearray(peft.read_bytes())
    data[-1] ^= 0x01
    peft.unlink()
    peft.write_bytes(bytes(data))


DAMAGE = {
    "flipped byte": (flip_last_byte, "mismatch", "adapter.safetensors does not match"),
    "truncated": (truncate, "mismatch", "adapter.safetensors does not match"),
    "deleted weights": (lambda p: p.unlink(), "missing", "adapter.safetensors is missing"),
    "directory removed": (lambda p: shutil.rmtree(p.parent), "missing", "is missing"),
    "weights made a directory": (
        lambda p: (p.unlink(), p.mkdir()),
        "unreadable",
        "adapter.safetensors is unreadable",
    ),
    "weights made a symlink": (
        lambda p: (p.unlink(), p.symlink_to(p.with_name("adapter_model.safetensors"))),
        "unreadable",
        "adapter.safetensors is unreadable",
    ),
    "config changed": (tamper_config, "mismatch", "adapter_config.json does not match"),
    "PEFT file replaced": (
        lambda p: replace_peft_file(p),
        "mismatch",
        "adapter_model.safetensors is not the same file",
    ),
    "mode changed": (
        lambda p: p.chmod(0o644),
        "mismatch",
        "adapter.safetensors has mode 0644; sealed files are 0444",
    ),
    "config mode changed": (
        lambda p: p.with_name("adapter_config.json").chmod(0o666),
        "mismatch",
        "adapter_config.json has mode 0666",
    ),
    "PEFT file removed": (
        lambda p: p.with_name("adapter_model.safetensors").unlink(),
        "missing",
        "adapter_model.safetensors is missing",
    ),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_each_kind_of_damage_is_reported(
    store_one: Any, registry: AdapterRegistry, kind: str
) -> None:
    damage, status, problem = DAMAGE[kind]
    intact = store_one(seed=1)
    victim = store_one(seed=2)
    damage(Path(victim.file_path))
    reports = {r.adapter_id: r for r in registry.verify_all(threads=2)}
    assert reports[intact.id].ok and reports[intact.id].problems == ()
    report = reports[victim.id]
    assert report.status == status
    assert any(problem in p for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match=f"adapter {victim.id}: .*{problem}"):
        report.raise_for_status()
    assert registry.verify(victim.id) == report


def test_a_replaced_file_of_the_right_size_is_caught(
    store_one: Any, registry: AdapterRegistry
) -> None:
    """Other bytes of the same size written into the same file, its mode put back: the PEFT
    link, the size and the seal all hold, so only the hash can tell."""
    a, b = store_one(seed=1), store_one(seed=2)
    assert a.file_size_bytes == b.file_size_bytes
    target = Path(a.file_path)
    before = target.stat()
    writable(target).write_bytes(Path(b.file_path).read_bytes())  # same inode, same links
    target.chmod(0o444)
    after = target.stat()
    assert (after.st_ino, after.st_nlink, after.st_mode, after.st_size) == (
        before.st_ino, before.st_nlink, before.st_mode, before.st_size,
    )  # fmt: skip
    assert target.with_name("adapter_model.safetensors").stat().st_ino == after.st_ino
    report = registry.verify(a.id)
    assert report.status == "mismatch"
    [problem] = report.problems  # the hash, and nothing else, tells
    assert "adapter.safetensors does not match its record" in problem
    assert registry.verify(b.id).ok


def test_verify_all_reports_progress_and_takes_ids(
    store_one: Any, registry: AdapterRegistry
) -> None:
    records = [store_one(seed=i) for i in range(5)]
    seen: list[tuple[int, int, int]] = []
    reports = registry.verify_all([r.id for r in records[:3]], progress=lambda *p: seen.append(p))
    assert [r.adapter_id for r in reports] == [r.id for r in records[:3]]
    files_done, files_total, bytes_done = seen[-1]
    assert files_done == files_total == 6
    config_bytes = sum(
        os.path.getsize(Path(r.file_path).with_name("adapter_config.json")) for r in records[:3]
    )
    assert bytes_done == sum(r.file_size_bytes for r in records[:3]) + config_bytes
    assert len(registry.verify_all()) == 5
    with pytest.raises(AdapterNotFoundError):
        registry.verify_all(["12345678-1234-4234-8234-123456789abc"])

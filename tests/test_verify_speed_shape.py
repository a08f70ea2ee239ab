"""The shape of the fast verification and ingest paths (issue 14), never their speed: the
columns-only verification gives exactly the reports that verification from records gives, for
every kind of damage; ids, order and progress are as verify_all() promises; a large file (read
ahead on a second thread) is judged like a small one; and a pipelined store publishes exactly
the bytes it hashed."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterNotFoundError, AdapterRegistry, _core, integrity
from adapter_registry._lora_files import one_pair

MIB = 1 << 20


def writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def damaged_registry(registry: AdapterRegistry, store_one: Any) -> list[str]:
    """Adapters with one kind of damage each, and intact ones between them."""
    records = [store_one(seed=i) for i in range(9)]
    directory = [Path(r.file_path).parent for r in records]
    data = bytearray(writable(directory[1] / _core.WEIGHTS_FILE).read_bytes())
    data[-1] ^= 1
    (directory[1] / _core.WEIGHTS_FILE).write_bytes(bytes(data))  # mismatch
    (directory[2] / _core.CONFIG_FILE).unlink()  # config missing
    writable(directory[3] / _core.CONFIG_FILE)  # mode 0644
    (directory[4] / _core.PEFT_WEIGHTS_FILE).unlink()  # the PEFT link missing
    config = directory[5] / _core.CONFIG_FILE  # the config a symlink to itself elsewhere
    elsewhere = directory[5].parent.parent / "elsewhere.json"
    elsewhere.write_bytes(config.read_bytes())
    config.unlink()
    config.symlink_to(elsewhere)
    (directory[6] / _core.WEIGHTS_FILE).unlink()  # the weights gone (the link stays)
    os.mkfifo(directory[7] / "unrelated")  # something extra: not judged
    return [r.id for r in records]


def test_the_columns_path_gives_the_reports_of_the_records_path(
    registry: AdapterRegistry, store_one: Any
) -> None:
    ids = damaged_registry(registry, store_one)
    from_records = integrity.verify_records(registry.root, registry.list_all(include_archived=True))
    from_columns = integrity.verify_stored(registry._records, registry.root)
    assert from_columns == from_records
    assert [r.adapter_id for r in from_columns] == ids, "oldest first"
    statuses = [r.status for r in from_columns]
    assert statuses == [
        "ok", "mismatch", "missing", "mismatch", "missing", "unreadable", "missing", "ok", "ok"
    ]  # fmt: skip
    assert from_columns[3].problems == ("adapter_config.json has mode 0644; sealed files are 0444",)
    assert any("adapter_config.json has mode 0777" in p for p in from_columns[5].problems)
    assert registry.verify_all() == from_columns


def test_ids_keep_their_order_and_an_unknown_one_is_not_found(
    registry: AdapterRegistry, store_one: Any
) -> None:
    ids = [store_one(seed=i).id for i in range(4)]
    picked = [ids[2], ids[0], ids[2]]
    reports = integrity.verify_stored(registry._records, registry.root, picked)
    assert [r.adapter_id for r in reports] == picked and all(r.ok for r in reports)
    unknown = "12345678-1234-4234-8234-123456789abc"
    with pytest.raises(AdapterNotFoundError, match=f"adapter {unknown} is not registered"):
        integrity.verify_stored(registry._records, registry.root, [ids[0], unknown])


def test_progress_counts_two_files_per_adapter_and_ends_at_the_totals(
    registry: AdapterRegistry, store_one: Any
) -> None:
    records = [store_one(seed=i) for i in range(40)]
    seen: list[tuple[int, int, int]] = []
    reports = integrity.verify_stored(
        registry._records, registry.root, threads=2, progress=lambda *p: seen.append(p)
    )
    assert all(r.ok for r in reports)
    config_bytes = sum(
        (Path(r.file_path).parent / _core.CONFIG_FILE).stat().st_size for r in records
    )
    assert seen[-1] == (80, 80, sum(r.file_size_bytes for r in records) + config_bytes)
    assert all(a <= b for a, b in itertools.pairwise(seen)), "never backwards"
    assert integrity.verify_stored(registry._records, registry.root, [], progress=seen.append) == []


def test_a_large_file_read_ahead_is_judged_like_a_small_one(
    registry: AdapterRegistry, store_one: Any
) -> None:
    record = registry.store(
        one_pair(12 * MIB, 3), config={"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"],
        "base_model_name_or_path": "m"}, task_type="bug-fix", source="manual", session_id="s",
    )  # fmt: skip
    small = store_one(seed=2)
    assert [r.ok for r in registry.verify_all([record.id, small.id], threads=2)] == [True, True]
    weights = Path(record.file_path)
    data = bytearray(writable(weights).read_bytes())
    data[len(data) // 2] ^= 0x80  # a bit in the middle, far from either end
    weights.write_bytes(bytes(data))
    report = registry.verify(record.id)
    assert report.status == "mismatch"
    assert hashlib.sha256(bytes(data)).hexdigest() in report.problems[0]


def test_a_pipelined_store_publishes_the_bytes_it_hashed(tmp_path: Path) -> None:
    source = tmp_path / "src.safetensors"
    source.write_bytes(one_pair(20 * MIB + 12345, 7))  # many chunks and a ragged last one
    root = tmp_path / "root"
    root.mkdir()
    staged = _core.stage(str(root), "a", str(source), b"{}")
    published = staged.publish("x", b"{}")
    stored = (published / _core.WEIGHTS_FILE).read_bytes()
    assert stored == source.read_bytes()
    assert staged.file_hash == hashlib.sha256(stored).hexdigest()
    assert staged.file_size == len(stored)


def test_the_cli_verify_reads_records_for_its_bar_only_when_the_bar_shows(
    registry: AdapterRegistry, store_one: Any
) -> None:
    from adapter_registry.cli.integrity import verify_records
    from adapter_registry.cli.output import ByteProgress

    records = [store_one(seed=i) for i in range(3)]
    on_disk = sum(
        r.file_size_bytes + (Path(r.file_path).parent / _core.CONFIG_FILE).stat().st_size
        for r in records
    )
    asked: list[int] = []

    def total() -> int:
        asked.append(on_disk)
        return on_disk

    with ByteProgress(total, "verify", show=False) as unseen:
        registry.verify_all(progress=unseen)
    assert asked == [] and unseen.bytes_done == on_disk, "no total where no bar draws"
    with ByteProgress(total, "verify", show=True) as shown:
        registry.verify_all(progress=shown)
    assert asked == [on_disk] and shown.files_done == 6
    for show in (False, True):
        run = verify_records(registry, None, show_progress=show)
        assert run.reports == registry.verify_all() and run.bytes == on_disk and run.ok
        picked = verify_records(registry, [records[2].id], show_progress=show)
        assert [r.adapter_id for r in picked.reports] == [records[2].id]
    unknown = "12345678-1234-4234-8234-123456789abc"
    with pytest.raises(AdapterNotFoundError, match=unknown):
        verify_records(registry, [unknown], show_progress=False)

"""Backup of a live registry (issue 16 item 4), on both backends: while writer processes keep
storing and an evaluator keeps scoring, ``backup`` holds every adapter registered before it
began, its rows are one snapshot (each adapter's fitness is the last one its history records,
which update_fitness writes in one transaction with the score), and it restores with import
into an empty home, every adapter verifying."""

from __future__ import annotations

import multiprocessing
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRegistry, exporting

from bundling import read_manifest, store
from conftest import empty_registry, rows
from swarm import evaluator, writer
from workers import open_registry

WRITERS, PER_WRITER = 4, 12


def test_a_backup_of_a_live_swarm_holds_everything_before_it_and_restores(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, db_url: str
) -> None:
    home = str(tmp_path / "live")
    open_registry(home, db_url).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(WRITERS + 1) as pool:
        start = manager.Barrier(WRITERS + 2)
        stop = manager.Event()
        writers = [
            pool.apply_async(writer, (home, db_url, w, PER_WRITER, "", start))
            for w in range(WRITERS)
        ]
        scoring = pool.apply_async(evaluator, (home, db_url, 0, start, stop))
        start.wait()
        live = open_registry(home, db_url)
        while rows(live) < WRITERS:  # the swarm is under way
            time.sleep(0.02)
        before = {r.id for r in live.list_all()}
        backup = live.backup(tmp_path / "backup.tar")
        during = rows(live)
        stored = [w.get(timeout=600) for w in writers]
        stop.set()
        scored = scoring.get(timeout=60)
        live.close()

    assert [e for part in [*stored, scored] for e in part["errors"]] == []
    assert before <= set(backup.adapters)
    assert len(backup.adapters) <= during  # nothing registered after its snapshot
    with open_registry(home, db_url) as after:
        assert rows(after) == WRITERS * PER_WRITER
    # One snapshot: each adapter's fitness is the one its history recorded last.
    with tarfile.open(tmp_path / "backup.tar") as tar:
        tar.extract("manifest.json", tmp_path / "m", filter="data")
    for entry in read_manifest(tmp_path / "m")["adapters"]:
        scores = [e["value"] for e in entry["evaluations"] if e["metric"] == "fitness_score"]
        assert entry["record"]["fitness_score"] == (scores[-1] if scores else None)

    restored: AdapterRegistry = empty_registry(request, backend, tmp_path / "restored")
    try:
        report = restored.import_bundle(tmp_path / "backup.tar", with_aliases=True)
        assert report.ok and sorted(report.imported) == sorted(backup.adapters)
        verdicts = restored.verify_all()
        assert len(verdicts) == len(backup.adapters) and all(v.ok for v in verdicts)
        for adapter_id in before:
            assert restored.retrieve_by_id(adapter_id).directory == restored.root / adapter_id
    finally:
        restored.close()


def test_the_rows_of_a_backup_are_one_snapshot(registry: AdapterRegistry, tmp_path: Path) -> None:
    """Another writer scores the adapter and stores a new one between the backup's first read
    (the records) and its next (the tags): the backup holds neither."""
    first = store(registry, 1)
    registry.update_fitness(first.id, 0.25)
    other = AdapterRegistry(root=registry.root, db_url=registry.db_url)
    reads: list[str] = []

    def between_reads(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is exporting._rows.__code__:
            reads.append(frame.f_code.co_name)
            if len(reads) == 2:
                other.update_fitness(first.id, 0.75)
                store(other, 2)

    sys.setprofile(between_reads)
    try:
        backup = registry.backup(tmp_path / "b")
    finally:
        sys.setprofile(None)
        other.close()
    assert len(reads) >= 2  # the writer did run between the reads
    assert backup.adapters == [first.id]
    (entry,) = read_manifest(tmp_path / "b")["adapters"]
    assert entry["record"]["fitness_score"] == 0.25
    assert [e["value"] for e in entry["evaluations"]] == [0.25]
    assert registry.retrieve_by_id(first.id).fitness_score == 0.75  # it did change, after

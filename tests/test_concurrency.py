"""Many writers at once, in processes and in threads: nothing lost, nothing duplicated, and a
same-id race has exactly one winner."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import rows
from workers import open_registry, race, store_many

WRITERS = 8


def check_consistent(home: Path, expected: int) -> None:
    registry = open_registry(str(home))
    records = registry.list_all()
    assert len(records) == expected == rows(registry)
    assert len({r.id for r in records}) == expected
    dirs = [e for e in os.listdir(registry.root) if not e.startswith(".")]
    assert sorted(dirs) == sorted(r.id for r in records)
    assert all(report.ok for report in registry.verify_all())
    assert os.listdir(registry.root / ".staging") == []
    registry.close()


def test_eight_processes_storing_at_once_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    open_registry(str(tmp_path)).close()
    per_worker = 12
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WRITERS) as pool:
        results = pool.starmap(store_many, [(str(tmp_path), w, per_worker) for w in range(WRITERS)])
    assert sum(len(ids) for ids in results) == WRITERS * per_worker
    check_consistent(tmp_path, WRITERS * per_worker)
    registry = open_registry(str(tmp_path))
    for ids in results:  # every worker's chain of children kept its lineage
        child = registry.retrieve_by_id(ids[3])
        assert child.parents == [ids[2]] and child.version == 2
    registry.close()


@pytest.mark.parametrize("exclusive_claim", ["0", "1"])
def test_a_same_id_race_between_processes_has_exactly_one_winner(
    tmp_path: Path, exclusive_claim: str
) -> None:
    open_registry(str(tmp_path)).close()
    ctx = multiprocessing.get_context("spawn")
    env = {"ADAPTER_REGISTRY_FORCE_CLAIM": exclusive_claim}
    with ctx.Manager() as manager, ctx.Pool(WRITERS) as pool:
        barrier = manager.Barrier(WRITERS)
        for _round in range(3):
            adapter_id = str(uuid.uuid4())
            outcomes = pool.starmap(
                race, [(str(tmp_path), adapter_id, seed, barrier, env) for seed in range(WRITERS)]
            )
            winners = [o for o in outcomes if o.startswith("won:")]
            assert len(winners) == 1, outcomes
            assert outcomes.count("exists") == WRITERS - 1
            registry = open_registry(str(tmp_path))
            assert registry.retrieve_by_id(adapter_id).file_hash == winners[0].removeprefix("won:")
            registry.close()
    check_consistent(tmp_path, 3)


def test_threads_sharing_one_registry(tmp_path: Path) -> None:
    registry = open_registry(str(tmp_path))
    adapter_id = str(uuid.uuid4())
    with ThreadPoolExecutor(WRITERS) as pool:
        outcomes = list(
            pool.map(
                lambda seed: race(str(tmp_path), adapter_id, seed, _NoBarrier(), {}), range(WRITERS)
            )
        )
        stored = list(pool.map(lambda w: store_many(str(tmp_path), w, 4), range(WRITERS)))
    assert sum(o.startswith("won:") for o in outcomes) == 1
    assert sum(len(s) for s in stored) == WRITERS * 4
    registry.close()
    check_consistent(tmp_path, WRITERS * 4 + 1)


class _NoBarrier:
    def wait(self) -> None:
        pass

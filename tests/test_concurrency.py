"""Many writers at once, in processes and in threads: nothing lost, nothing duplicated, and a
same-id race has exactly one winner."""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapter_registry import AdapterAlreadyExistsError, AdapterRegistry
from adapter_registry._lora_files import lora_bytes, lora_config

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


def test_one_registry_shared_by_eight_threads_at_once(registry: AdapterRegistry) -> None:
    """One AdapterRegistry, 8 threads inside it at the same time (a barrier they must all
    reach together: threads run one after another would break it, not pass): a same-id race,
    then stores, queries and fitness updates interleaved."""
    barrier = threading.Barrier(WRITERS, timeout=120)
    raced_id = str(uuid.uuid4())

    def worker(w: int) -> tuple[str, list[str]]:
        barrier.wait()
        try:
            registry.store(
                lora_bytes(seed=10_000 + w), config=lora_config(), adapter_id=raced_id,
                task_type="bug-fix", source="manual", session_id=f"racer-{w}",
            )  # fmt: skip
            outcome = "won"
        except AdapterAlreadyExistsError:
            outcome = "exists"
        barrier.wait()
        ids: list[str] = []
        for i in range(4):
            parents = [ids[-1]] if ids and i % 2 else []
            record = registry.store(
                lora_bytes(seed=w * 100 + i), config=lora_config(), task_type=f"task-{w % 2}",
                source="evolution" if parents else "manual", session_id=f"w{w}",
                agent_id=f"agent-{w}", parent_ids=parents,
            )  # fmt: skip
            ids.append(record.id)
            assert registry.retrieve_by_id(record.id) == record
            assert record.id in {r.id for r in registry.query_by_task_type(f"task-{w % 2}")}
            assert registry.lineage(record.id) == [registry.retrieve_by_id(p) for p in parents]
            updated = registry.update_fitness(record.id, fitness_score=w + i / 10, pass_rate=0.5)
            assert updated.fitness_score == w + i / 10
            registry.query_best_for_task(f"task-{w % 2}")
        barrier.wait()
        return outcome, ids

    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(worker, range(WRITERS)))
    assert sorted(outcome for outcome, _ in results) == ["exists"] * (WRITERS - 1) + ["won"]
    stored = [i for _, ids in results for i in ids]
    assert len(set(stored)) == len(stored) == WRITERS * 4
    records = registry.list_all()
    assert sorted(r.id for r in records) == sorted([*stored, raced_id])
    assert rows(registry) == WRITERS * 4 + 1
    by_id = {r.id: r for r in records}
    for w, (_, ids) in enumerate(results):
        assert [by_id[i].fitness_score for i in ids] == [w + i / 10 for i in range(4)]
    best = registry.query_best_for_task("task-1")
    assert best is not None and best.fitness_score == WRITERS - 1 + 0.3
    dirs = [e for e in os.listdir(registry.root) if not e.startswith(".")]
    assert sorted(dirs) == sorted(by_id)
    assert all(report.ok for report in registry.verify_all())
    assert os.listdir(registry.root / ".staging") == []

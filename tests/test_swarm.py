"""Swarm load (issue 5): 16 writer processes store 50 adapters each (4 KB to 8 MB, a quarter of
them children), while 4 readers ask for the best adapter and 2 evaluators score, all on one
root and one database, with one planted same-id race. ADAPTER_REGISTRY_STRESS_SCALE=N stores
N times as many."""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
import uuid
from pathlib import Path

import pytest

from conftest import rows
from swarm import evaluator, reader, writer
from workers import open_registry

WRITERS, READERS, EVALUATORS = 16, 4, 2
PER_WRITER = 50 * int(os.environ.get("ADAPTER_REGISTRY_STRESS_SCALE", "1"))


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@pytest.mark.stress
def test_a_swarm_of_writers_readers_and_evaluators(tmp_path: Path, db_url: str) -> None:
    home = str(tmp_path)
    open_registry(home, db_url).close()
    race_id = str(uuid.uuid4())
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(WRITERS + READERS + EVALUATORS) as pool:
        start = manager.Barrier(WRITERS + READERS + EVALUATORS + 1)
        stop = manager.Event()
        writers = [
            pool.apply_async(writer, (home, db_url, w, PER_WRITER, race_id if w < 2 else "", start))
            for w in range(WRITERS)
        ]
        readers = [pool.apply_async(reader, (home, db_url, start, stop)) for _ in range(READERS)]
        evaluators = [
            pool.apply_async(evaluator, (home, db_url, seed, start, stop))
            for seed in range(EVALUATORS)
        ]
        start.wait()
        began = time.perf_counter()
        stored = [w.get(timeout=900) for w in writers]
        seconds = time.perf_counter() - began
        stop.set()
        read = [r.get(timeout=60) for r in readers]
        scored = [e.get(timeout=60) for e in evaluators]

    errors = [e for part in stored + read + scored for e in part["errors"]]
    assert errors == []  # "database is locked" or anything else would be here
    assert sorted(w["lost_race"] for w in stored) == [0] * (WRITERS - 1) + [1]  # one loser
    ids = [i for w in stored for i in w["ids"]]
    total = WRITERS * PER_WRITER
    assert len(ids) == len(set(ids)) == total and race_id in ids

    registry = open_registry(home, db_url)
    assert rows(registry) == total
    assert sorted(e for e in os.listdir(registry.root) if not e.startswith(".")) == sorted(ids)
    assert os.listdir(registry.root / ".staging") == []
    reports = registry.verify_all(threads=2)
    assert len(reports) == total and all(r.ok for r in reports)
    children = [r for r in registry.list_all() if r.parents]
    assert len(children) == WRITERS * ((PER_WRITER - 1) // 4)
    assert all(registry.retrieve_by_id(c.parents[0]).version < c.version for c in children)
    assert sum(s["updates"] for s in scored) > 0
    evaluated = [r for r in registry.list_all() if r.fitness_score is not None]
    assert evaluated and registry.query_best_for_task(evaluated[0].task_type) is not None
    registry.close()

    store_latencies = [t for w in stored for t in w["latencies"]]
    query_latencies = [t for r in read for t in r["latencies"]]
    figures = {
        "database": db_url.split(":", 1)[0],
        "adapters": total,
        "megabytes": round(sum(w["bytes"] for w in stored) / 1e6, 1),
        "seconds": round(seconds, 2),
        "stores_per_second": round(total / seconds, 1),
        "store_p50_ms": round(statistics.median(store_latencies) * 1e3, 1),
        "store_p99_ms": round(p99(store_latencies) * 1e3, 1),
        "queries": len(query_latencies),
        "query_best_p50_ms": round(statistics.median(query_latencies) * 1e3, 3),
        "query_best_p99_ms": round(p99(query_latencies) * 1e3, 3),
        "fitness_updates": sum(s["updates"] for s in scored),
    }
    print(json.dumps(figures, indent=2))

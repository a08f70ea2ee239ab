"""The processes of the swarm test: writers, readers and evaluators on one root and one
database (on PostgreSQL, separate processes stand in for separate hosts). Each returns what it
saw (latencies, errors) for the test to judge and report."""

from __future__ import annotations

import math
import random
import time
from typing import Any

from adapter_registry import AdapterAlreadyExistsError
from adapter_registry._lora_files import lora_of_size

from workers import open_registry

TASKS = ("bug-fix", "feature-impl", "refactor", "test-gen")
MIN_SIZE, MAX_SIZE = 4 << 10, 8 << 20
SOURCES_PER_WRITER = 6


def log_uniform_size(rng: random.Random) -> int:
    return round(math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE))))


def writer(
    home: str, db_url: str, worker: int, count: int, race_id: str, start: Any
) -> dict[str, Any]:
    """Store `count` adapters (every fourth a child of this writer's previous one); the planted
    race id is this writer's first store (the loser stores under a fresh id instead)."""
    rng = random.Random(worker)
    sources = [
        lora_of_size(log_uniform_size(rng), seed=worker * 100 + i)
        for i in range(SOURCES_PER_WRITER)
    ]
    registry = open_registry(home, db_url)
    ids: list[str] = []
    latencies: list[float] = []
    errors: list[str] = []
    lost_race = 0
    start.wait()
    began = time.perf_counter()
    while len(ids) < count:
        weights, config = sources[len(ids) % len(sources)]
        parents = [ids[-1]] if ids and len(ids) % 4 == 0 else []
        planted = race_id if not ids and race_id and not lost_race else None
        t = time.perf_counter()
        try:
            record = registry.store(
                weights,
                config=config,
                task_type=TASKS[(worker + len(ids)) % len(TASKS)],
                source="evolution" if parents else "distillation",
                session_id=f"swarm-{worker}",
                agent_id=f"agent-{worker}",
                parent_ids=parents,
                adapter_id=planted,
            )
        except AdapterAlreadyExistsError:
            if planted is None:
                errors.append("AdapterAlreadyExistsError for a fresh id")
            lost_race += 1
            continue
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}")
            break
        latencies.append(time.perf_counter() - t)
        ids.append(record.id)
    elapsed = time.perf_counter() - began
    registry.close()
    return {"ids": ids, "latencies": latencies, "errors": errors, "lost_race": lost_race,
            "seconds": elapsed, "bytes": sum(len(sources[i % len(sources)][0])
                                             for i in range(len(ids)))}  # fmt: skip


def reader(home: str, db_url: str, start: Any, stop: Any) -> dict[str, Any]:
    """Ask for the best adapter of each task type, round and round, until told to stop."""
    registry = open_registry(home, db_url)
    latencies: list[float] = []
    errors: list[str] = []
    start.wait()
    while not stop.is_set():
        for task in TASKS:
            t = time.perf_counter()
            try:
                registry.query_best_for_task(task)
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}")
            latencies.append(time.perf_counter() - t)
        time.sleep(0.001)
    registry.close()
    return {"latencies": latencies, "errors": errors}


def evaluator(home: str, db_url: str, seed: int, start: Any, stop: Any) -> dict[str, Any]:
    """Score adapters as they appear, until told to stop."""
    rng = random.Random(seed)
    registry = open_registry(home, db_url)
    updates = 0
    errors: list[str] = []
    start.wait()
    while not stop.is_set():
        try:
            records = registry.query_by_task_type(rng.choice(TASKS))
            if records:
                chosen = rng.choice(records)
                registry.update_fitness(chosen.id, rng.random(), pass_rate=rng.random())
                updates += 1
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}")
        time.sleep(0.005)
    registry.close()
    return {"updates": updates, "errors": errors}

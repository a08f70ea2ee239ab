"""The swarm's processes: agents that store LoRA adapters, evaluators that score them."""

from __future__ import annotations

import hashlib
import multiprocessing
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._lora_files import QWEN_7B, lora_bytes, lora_config, model_shape
from ..record import AdapterRecord
from ..registry import AdapterRegistry

TASKS = ("bug-fix", "feature-impl", "refactor")
BASE_MODEL = QWEN_7B
LAYERS, RANK, SEED = 4, 8, 1234
MB = 1_000_000  # sizes are decimal: 1 MB = 10^6 bytes
CONFIG = lora_config(r=RANK, lora_dropout=0.05, base_model_name_or_path=BASE_MODEL)


def lora_adapter(hidden: int, kv_out: int, rng: random.Random) -> bytes:
    """A q/k/v/o LoRA of LAYERS layers at rank RANK for a model of that hidden size and k/v
    width; the next seed drawn from ``rng`` picks its values."""
    shape = {"layers": LAYERS, "hidden": hidden, "kv_out": kv_out}
    return lora_bytes(RANK, rng.getrandbits(64), **shape)


@dataclass(frozen=True)
class Swarm:
    """What every process of the swarm needs to know (it crosses process boundaries)."""

    root: str
    db_url: str
    agents: int
    per_agent: int
    hidden: int
    kv_out: int
    session: str

    @classmethod
    def in_home(cls, home: Path, agents: int, per_agent: int, size_mb: float) -> Swarm:
        """A swarm playing in ``home``, of adapters of about ``size_mb`` each."""
        hidden, kv_out = model_shape(size_mb * MB, LAYERS, RANK)
        root, db_url = home / "adapters", f"sqlite:///{home}/adapter_registry.db"
        session = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        return cls(str(root), db_url, agents, per_agent, hidden, kv_out, session)


def agent(swarm: Swarm, index: int) -> list[tuple[float, float]]:
    """One agent: trains (builds) and stores its adapters; returns when each store ran.

    Adapter j is of task TASKS[(index + j) % 3]. Every second one is evolved: its parent is the
    swarm's latest adapter of that task, whoever stored it (every fourth, the two latest: a
    crossover), or, where the swarm has none yet, this agent's previous adapter.
    """
    rng = random.Random(SEED + index)
    mine: list[str] = []
    spans: list[tuple[float, float]] = []
    with AdapterRegistry(root=swarm.root, db_url=swarm.db_url) as registry:
        for j in range(swarm.per_agent):
            task = TASKS[(index + j) % len(TASKS)]
            weights = lora_adapter(swarm.hidden, swarm.kv_out, rng)
            parents: list[str] = []
            if j % 2 == 1:
                latest = [r.id for r in registry.query_by_task_type(task)][-2:]
                crossover = j % 4 == 3 and len(latest) == 2
                parents = latest if crossover else (latest[-1:] or mine[-1:])
            started = time.monotonic()
            record = registry.store(
                weights,
                config=CONFIG,
                task_type=task,
                source="evolution" if parents else "distillation",
                session_id=swarm.session,
                parent_ids=parents,
                agent_id=f"agent-{index + 1}",
                training_task_hash=hashlib.sha256(f"{task}/{j // 2}".encode()).hexdigest(),
            )
            spans.append((started, time.monotonic()))
            mine.append(record.id)
    return spans


def score(record: AdapterRecord) -> tuple[float, float]:
    """(fitness, pass rate) standing in for a test run: drawn from the adapter's own hash, with
    a bonus per generation, so that evolution tends to pay and the numbers are reproducible."""
    draw = int(record.file_hash[:8], 16) / 0xFFFFFFFF
    rate = int(record.file_hash[8:16], 16) / 0xFFFFFFFF
    fitness = min(0.35 + 0.5 * draw + 0.08 * (record.generation or 0), 1.0)
    return round(fitness, 3), round(0.4 + 0.6 * rate, 3)


def evaluator(swarm: Swarm, ids: list[str]) -> list[tuple[float, float]]:
    """One evaluator: scores its share of the adapters; returns when each update ran."""
    spans: list[tuple[float, float]] = []
    with AdapterRegistry(root=swarm.root, db_url=swarm.db_url) as registry:
        for adapter_id in ids:
            fitness, pass_rate = score(registry.retrieve_by_id(adapter_id))
            started = time.monotonic()
            registry.update_fitness(adapter_id, fitness_score=fitness, pass_rate=pass_rate)
            spans.append((started, time.monotonic()))
    return spans


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """How long at least one of the (possibly overlapping) intervals was running."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _context() -> Any:
    """fork where there is one: the agents start at once, with the package already imported."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def store_all(swarm: Swarm) -> float:
    """Every agent in a process of its own, all at once; the seconds some store was running."""
    AdapterRegistry(root=swarm.root, db_url=swarm.db_url).close()  # the schema, before the race
    with _context().Pool(swarm.agents) as pool:
        spans = pool.starmap(agent, [(swarm, i) for i in range(swarm.agents)])
    return busy_seconds([s for agent_spans in spans for s in agent_spans])


def evaluate_all(swarm: Swarm, ids: list[str], evaluators: int) -> float:
    """``evaluators`` processes score a share of ``ids`` each; the seconds some update ran."""
    with _context().Pool(evaluators) as pool:
        shares = [(swarm, ids[i::evaluators]) for i in range(evaluators)]
        spans = pool.starmap(evaluator, shares)
    return busy_seconds([s for part in spans for s in part])

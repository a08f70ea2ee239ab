"""Each bench_*.py module describes one comparison for both pytest-benchmark and run.py:
GROUP, CONTENDERS (ours first, then the baselines), ROUNDS, CALLS (per round, for
sub-millisecond operations; a dict by contender name where they differ) and a setup(workdir)
context manager yielding the contenders' arguments.

ADAPTER_REGISTRY_BENCH_SMOKE=1 (`make test` sets it) is the smoke run: each module's sizes
shrink to what `size()` gives for it, and each contender runs once, untimed
(--benchmark-disable), so that setup and every correctness assert run in CI without the
cost of a measurement."""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from adapter_registry._lora_files import one_pair

MIB = 1 << 20
SMOKE = os.environ.get("ADAPTER_REGISTRY_BENCH_SMOKE") == "1"


def size(full: int, smoke: int) -> int:
    """A bench's size: `full` when measuring, `smoke` in the smoke run."""
    return smoke if SMOKE else full


def pytest_configure(config: pytest.Config) -> None:
    if SMOKE:  # one untimed call per contender: what is checked is the answer, not the time
        config.option.benchmark_disable = True


LORA_CONFIG = {
    "peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"],
    "base_model_name_or_path": "m", "task_type": "CAUSAL_LM",
}  # fmt: skip


@pytest.fixture(scope="module")
def args(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """What the requesting module's setup() yields, for its contenders."""
    module = request.module
    with module.setup(tmp_path_factory.mktemp(module.__name__)) as yielded:
        yield yielded


def run_pedantic(benchmark: Any, module: ModuleType, contender: Any, args: Any) -> Any:
    benchmark.group = module.GROUP
    calls = getattr(module, "CALLS", 1)
    iterations = calls.get(contender.__name__, 1) if isinstance(calls, dict) else calls
    return benchmark.pedantic(
        contender, args=args, rounds=module.ROUNDS, iterations=iterations, warmup_rounds=1
    )


def lora_dir(path: Path, seed: int, mib: int = 1) -> Path:
    """A PEFT adapter directory: adapter.safetensors (one rank-8 LoRA pair, `mib` MiB of
    float32) beside adapter_config.json; distinct bytes for each seed."""
    path.mkdir(parents=True)
    (path / "adapter.safetensors").write_bytes(one_pair(mib * MIB, seed))
    (path / "adapter_config.json").write_text(json.dumps(LORA_CONFIG, indent=2) + "\n")
    return path


def record_rows(count: int, tasks: int, agents: int = 0) -> list[dict[str, Any]]:
    """`count` rows of adapter_records over `tasks` task types, as they are written straight into
    the table for the query benchmarks (no files): every tenth round of task types archived,
    every fourth not evaluated (no fitness_score). With `agents`, round r of task types comes
    from agent-{r % agents} (no agent_id without); the random values are the same either way.
    An `agents` prime to 20 gives every agent archived, unevaluated and live rows of every task."""
    rng = random.Random(0)
    return [
        {
            "agent_id": f"agent-{(i // tasks) % agents}" if agents else None,
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "version": 1,
            "task_type": f"task-{i % tasks}", "base_model_id": "Qwen/Qwen2.5-Coder-7B", "rank": 64,
            "created_at": f"2026-01-01T00:00:{i:09d}+00:00", "file_path": f"/x/{i}",
            "file_hash": "0" * 64, "file_size_bytes": 1, "source": "evolution",
            "session_id": "s", "is_archived": (i // tasks) % 10 == 0, "parent_ids": "[]",
            "generation": 0,
            "config_hash": "0" * 64, "pass_rate": rng.random(),
            "fitness_score": rng.random() if (i // tasks) % 4 else None,
        }
        for i in range(count)
    ]  # fmt: skip


def postgres_beside_sqlite(
    stack: ExitStack, workdir: Path, rows: list[dict[str, Any]]
) -> tuple[Any, Any]:
    """Two registries holding the same ``rows``: one in a fresh PostgreSQL server (ANALYZEd, as
    a live database would be), one in SQLite; both closed, and the server stopped, with
    ``stack``. Returns (PostgreSQL's, SQLite's)."""
    import sys

    from sqlalchemy import insert

    from adapter_registry import AdapterRecord, AdapterRegistry

    sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
    from postgres import PostgresServer

    server = stack.enter_context(PostgresServer(fsync=True))
    registries = []
    for name, url in (
        ("postgresql", server.create_database("bench")),
        ("sqlite", f"sqlite:///{workdir / 'r.db'}"),
    ):
        registry = AdapterRegistry(root=workdir / name, db_url=url)
        stack.callback(registry.close)
        with registry._db.write() as conn:
            conn.execute(insert(AdapterRecord.__table__), rows)  # type: ignore[attr-defined]
        if name == "postgresql":
            with registry._db.write() as conn:
                conn.exec_driver_sql("ANALYZE adapter_records")
        registries.append(registry)
    return registries[0], registries[1]

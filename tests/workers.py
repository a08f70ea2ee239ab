"""Functions run in separate processes by the concurrency tests (importable by spawn)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from adapter_registry import AdapterAlreadyExistsError, AdapterRegistry, _core
from adapter_registry._lora_files import lora_bytes, lora_config


def open_registry(home: str, db_url: str | None = None) -> AdapterRegistry:
    """The registry under `home`: its SQLite database, or the one at `db_url`."""
    return AdapterRegistry(
        root=f"{home}/adapters", db_url=db_url or f"sqlite:///{home}/registry.db"
    )


def store_many(home: str, worker: int, count: int) -> list[str]:
    """Store `count` adapters; every third is a child of this worker's previous one."""
    registry = open_registry(home)
    ids: list[str] = []
    for i in range(count):
        parents = [ids[-1]] if ids and i % 3 == 0 else []
        record = registry.store(
            lora_bytes(seed=worker * 1000 + i),
            config=lora_config(),
            task_type="bug-fix",
            source="evolution" if parents else "distillation",
            session_id=f"w{worker}",
            agent_id=f"agent-{worker}",
            parent_ids=parents,
        )
        ids.append(record.id)
    registry.close()
    return ids


def race(home: str, adapter_id: str, seed: int, barrier: Any, env: dict[str, str]) -> str:
    """Store `adapter_id` as soon as every racer is ready; say who won."""
    os.environ.update(env)
    registry = open_registry(home)
    barrier.wait()
    try:
        record = registry.store(
            lora_bytes(seed=seed),
            config=lora_config(),
            task_type="bug-fix",
            source="manual",
            session_id=f"racer-{seed}",
            adapter_id=adapter_id,
        )
        return f"won:{record.file_hash}"
    except AdapterAlreadyExistsError:
        return "exists"
    finally:
        registry.close()


def recover_until(home: str, stop: Any) -> int:
    """Call recover() over and over until `stop` is set; returns how many calls it made."""
    registry = open_registry(home)
    calls = 0
    while not stop.is_set():
        registry.recover()
        calls += 1
    registry.close()
    return calls


STORE_IN_CHILD = """
import sys
from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import lora_bytes, lora_config
root, db_url, adapter_id, seed = sys.argv[1:5]
reg = AdapterRegistry(root=root, db_url=db_url)
reg.store(lora_bytes(seed=int(seed)), config=lora_config(), task_type="bug-fix",
          source="manual", session_id="crashing", adapter_id=adapter_id, training_task_hash="t")
print("not killed")
"""


def store_in_child(
    root: Path, db_url: str, adapter_id: str, step: str, seed: int = 7
) -> subprocess.CompletedProcess[str]:
    """Store one adapter in a fresh interpreter whose store is killed (SIGKILL) at crash point
    `step`, on the registry at `root` and `db_url`, whichever the backend."""
    return subprocess.run(
        [sys.executable, "-c", STORE_IN_CHILD, str(root), db_url, adapter_id, str(seed)],
        env={**os.environ, _core.CRASH_AT_ENV: step},
        capture_output=True,
        text=True,
        timeout=120,
    )

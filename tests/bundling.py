"""What the bundle tests share: a second, empty registry on the backend under test, a small
family of adapters with every kind of state a bundle carries, and a bundle rewritten by hand."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from adapter_registry import AdapterRecord, AdapterRegistry
from adapter_registry._lora_files import lora_bytes, lora_config

from conftest import entries, rows


def store(registry: AdapterRegistry, seed: int, **kwargs: Any) -> AdapterRecord:
    kwargs.setdefault("task_type", "bug-fix")
    kwargs.setdefault("source", "manual")
    kwargs.setdefault("session_id", "session-1")
    return registry.store(lora_bytes(r=4, seed=seed), config=lora_config(r=4), **kwargs)


def family(registry: AdapterRegistry) -> dict[str, AdapterRecord]:
    """grandparent -> parent -> child, an unrelated archived adapter, and their state: fitness
    (with its history), an evaluation with details, tags, an alias."""
    grand = store(registry, 1)
    parent = store(registry, 2, parent_ids=[grand.id], source="evolution")
    child = store(registry, 3, parent_ids=[parent.id], source="evolution", task_type="refactor")
    other = store(registry, 4, agent_id="agent-7")
    registry.update_fitness(child.id, 0.75, 0.5, evaluator="suite", eval_set_hash="h1")
    registry.record_evaluation(parent.id, "latency_ms", 12.5, details={"p": [1, 2]})
    registry.set_tags(child.id, {"team": "core", "stage": "canary"})
    registry.set_alias("production", child.id)
    registry.archive(other.id)
    return {
        "grand": registry.retrieve_by_id(grand.id),
        "parent": registry.retrieve_by_id(parent.id),
        "child": registry.retrieve_by_id(child.id),
        "other": registry.retrieve_by_id(other.id),
    }


def state(registry: AdapterRegistry) -> tuple[int, list[str]]:
    """Rows and entries under the root (staging left out): what 'nothing written' compares."""
    return rows(registry), [e for e in entries(registry) if not e.startswith(".staging")]


def history(registry: AdapterRegistry, adapter_id: str) -> list[tuple[Any, ...]]:
    return [
        (e.metric, e.value, e.evaluator, e.eval_set_hash, e.details, e.recorded_at)
        for e in registry.evaluations(adapter_id)
    ]


def read_manifest(bundle: Path) -> dict[str, Any]:
    return dict(json.loads((bundle / "manifest.json").read_text()))


def write_manifest(bundle: Path, manifest: dict[str, Any]) -> None:
    path = bundle / "manifest.json"
    path.chmod(0o644)
    path.write_text(json.dumps(manifest))


def writable(bundle: Path) -> None:
    for path in bundle.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def tar_of(directory: Path, dest: Path, extra: list[tarfile.TarInfo] | None = None) -> Path:
    """The members of a directory bundle as a .tar, with ``extra`` members appended."""
    with tarfile.open(dest, "w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(directory)))
        for info in extra or []:
            tar.addfile(info)  # no data: an empty file, a link, a device or a FIFO
    return dest

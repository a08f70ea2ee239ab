"""store() of a 1 MiB adapter in one process, beside registering the same adapter in MLflow's
model registry on its SQLite backend: a run that logs the adapter directory
(adapter.safetensors + adapter_config.json) with mlflow.log_artifacts, then
MlflowClient().create_model_version(name, source=<the run's artifact URI>, run_id) under a model
registered once in setup(). MLflow runs with its defaults (file artifact store under the work
directory, its own run context tags). Every call of either contender stores a new adapter from
its own pre-written directory (new id here, new run and version there). Target: 10x (the issue
measured MLflow at about 19 ms per 1 MiB model version)."""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from adapter_registry import AdapterRegistry

from conftest import lora_dir, run_pedantic

GROUP = "store a 1 MiB adapter, one process (per call)"
ROUNDS = 20
CALLS = 3
MODEL = "adapters"


@dataclass
class Stores:
    registry: AdapterRegistry
    ours: Iterator[Path]
    client: MlflowClient
    experiment_id: str
    theirs: Iterator[Path]


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[Stores]]:
    """A pool of distinct 1 MiB adapter directories per contender, enough for every call of a
    run.py or pytest-benchmark run (warm-up round included) without reuse."""
    count = (ROUNDS + 2) * CALLS
    ours = [lora_dir(workdir / "src" / f"ours-{i}", seed=i) for i in range(count)]
    theirs = [lora_dir(workdir / "src" / f"mlflow-{i}", seed=count + i) for i in range(count)]
    registry = AdapterRegistry(root=workdir / "adapters", db_url=f"sqlite:///{workdir / 'r.db'}")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    client = MlflowClient()
    experiment_id = client.create_experiment(
        "adapters", artifact_location=(workdir / "mlartifacts").as_uri()
    )
    client.create_registered_model(MODEL)
    yield (Stores(registry, itertools.cycle(ours), client, experiment_id, itertools.cycle(theirs)),)
    registry.close()
    mlflow.set_tracking_uri(previous)


def registry_store(s: Stores) -> str:
    record = s.registry.store(
        next(s.ours), task_type="bug-fix", source="manual", session_id="bench"
    )
    return record.id


def mlflow_run_and_model_version(s: Stores) -> str:
    with mlflow.start_run(experiment_id=s.experiment_id) as run:
        mlflow.log_artifacts(str(next(s.theirs)))
        source = mlflow.get_artifact_uri()
    version = s.client.create_model_version(MODEL, source=source, run_id=run.info.run_id)
    return str(version.version)


CONTENDERS = [registry_store, mlflow_run_and_model_version]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_store_1mib(benchmark: Any, args: Any, contender: Any) -> None:
    first = contender(*args)
    last = run_pedantic(benchmark, sys.modules[__name__], contender, args)
    assert last != first  # every call made a new adapter (id) or model version

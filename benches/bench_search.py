"""search(task_type=T, agent_id=A, min_fitness=0.5, order_by="-fitness_score", limit=5), "an
agent's top 5 for a task", over 100,000 records of 50 task types from 21 agents (about 95 per
task and agent, 40 of them live and at least 0.5), through the public API on SQLite, beside
MLflow's nearest equivalent over the same 100,000 model versions. Target: p50 at most 100 us,
and 50x MLflow.

The MLflow side is bench_query_mlflow's (one registered model per task type, one version per
adapter, bulk-inserted after the API made and checked the first of each), with two more tags
on every version, task_type and agent_id. MLflow can neither compare nor order by a number, so
its query is what a user would write: search_model_versions("tags.task_type = 'T' and
tags.agent_id = 'A' and tags.is_archived = 'false'"), every page, then fitness >= 0.5 and
the order by the fitness_score tag (ties: the earlier stored) in Python, the first 5. setup()
checks, for a few pairs, that both give the same five adapters in the same order.
"""

from __future__ import annotations

import gc
import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from sqlalchemy import insert

from adapter_registry import AdapterRecord, AdapterRegistry

import bench_query_mlflow
from conftest import SMOKE, record_rows, run_pedantic, size

GROUP = "search(task_type, agent_id, min_fitness, top 5) vs MLflow, 100k records (per call)"
ROUNDS = 10
#: Ours takes tens of microseconds, MLflow about a second.
CALLS = {"public_api": 1000, "mlflow_search_then_filter_and_sort": 1}
RECORDS, TASKS, AGENTS = size(100_000, 5_000), 50, 21

Pairs = Iterator[tuple[str, str]]


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[AdapterRegistry, Pairs, MlflowClient]]:
    """The rows written straight into the table (the files are not what is measured)."""
    registry = AdapterRegistry(root=workdir / "adapters", db_url=f"sqlite:///{workdir / 'r.db'}")
    rows = record_rows(RECORDS, TASKS, AGENTS)
    with registry._db.write() as conn:
        conn.execute(insert(AdapterRecord.__table__), rows)  # type: ignore[attr-defined]
    columns = ("id", "task_type", "base_model_id", "pass_rate", "fitness_score", "is_archived")
    versions, tags = bench_query_mlflow._mlflow_rows(
        [tuple(r[c] for c in columns) for r in rows], (workdir / "mlartifacts").as_uri()
    )
    for row, version_tags in zip(rows, tags, strict=True):
        first = version_tags[0]
        version_tags.extend(
            {**first, "key": key, "value": row[key]} for key in ("task_type", "agent_id")
        )
    client = bench_query_mlflow.mlflow_registry(workdir, versions, tags)
    del rows, versions, tags  # a million dicts the calls never read: not in their heap
    gc.collect()
    for task, agent in (("task-0", "agent-0"), ("task-17", "agent-5"), ("task-49", "agent-20")):
        ours = [r.id for r in _search(registry, task, agent)]
        assert _mlflow_top5(client, task, agent) == ours and (SMOKE or len(ours) == 5)
    yield registry, pairs(), client
    registry.close()


def pairs() -> Pairs:
    return itertools.cycle(
        (f"task-{t}", f"agent-{a}") for t, a in itertools.product(range(TASKS), range(AGENTS))
    )


def _search(registry: AdapterRegistry, task: str, agent: str) -> list[AdapterRecord]:
    return registry.search(
        task_type=task, agent_id=agent, min_fitness=0.5, order_by="-fitness_score", limit=5
    )


def _mlflow_top5(client: MlflowClient, task: str, agent: str) -> list[str]:
    found: list[Any] = []
    token = None
    while True:
        page = client.search_model_versions(
            filter_string=f"tags.task_type = '{task}' and tags.agent_id = '{agent}' "
            "and tags.is_archived = 'false'",
            page_token=token,
        )
        found.extend(page)
        token = page.token
        if not token:
            break
    fit = [v for v in found if float(v.tags.get("fitness_score", "-inf")) >= 0.5]
    fit.sort(key=lambda v: (-float(v.tags["fitness_score"]), int(v.creation_timestamp)))
    return [str(v.tags["adapter_id"]) for v in fit[:5]]


def public_api(registry: AdapterRegistry, names: Pairs, client: MlflowClient) -> Any:
    return _search(registry, *next(names))


def mlflow_search_then_filter_and_sort(
    registry: AdapterRegistry, names: Pairs, client: MlflowClient
) -> Any:
    return _mlflow_top5(client, *next(names))


CONTENDERS = [public_api, mlflow_search_then_filter_and_sort]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_search(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) is not None

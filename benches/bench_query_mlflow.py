"""query_best_for_task over the 100,000 records of 50 task types that bench_query builds, beside
the same question put to MLflow's model registry on its SQLite backend holding the same
100,000 adapters. Target: 50x.

How the MLflow side is built: one registered model per task type, one model version per adapter
(versions numbered in the order the adapters were stored), its tags adapter_id, base_model_id,
pass_rate, fitness_score (absent when not evaluated) and is_archived ("true"/"false"); source
and storage_location a file artifact URI of a run whose id is the adapter's uuid (the runs
themselves are not created: a registry search never reads them). The 50 registered models and
the first version of each are made through MlflowClient; setup() then checks that the rows
MLflow wrote for those 50 versions are exactly what this module would write (every column but
the timestamps, every tag), and bulk-inserts the other 99,950 versions and their tags into
MLflow's own tables (its SQLAlchemy table objects, schema made by its migrations), since
creating 100,000 versions through the API takes about half an hour. Finally it checks, for a
few tasks, that MLflow's answer is the adapter query_best_for_task returns.

MLflow cannot order model versions by a tag, so its best-for-task is what a user would write:
search_model_versions(filter_string="name = '<task>' AND tags.is_archived = 'false'"), every
page, then the highest fitness_score tag in Python. Beside it, `mlflow_search_one_version`
asks for one version of the task (max_results=1): no answer, only the floor of any registry
search."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
)
from sqlalchemy import create_engine, insert, select, update

from adapter_registry import AdapterRegistry

import bench_query
from conftest import run_pedantic

GROUP = "query_best_for_task vs MLflow search_model_versions, 100k records (per call)"
ROUNDS = 10
CALLS = 1
EPOCH_MS = 1_767_225_600_000  # 2026-01-01, the first adapter's creation time
TIMES = ("creation_time", "last_updated_time")


def _mlflow_rows(
    records: list[tuple[Any, ...]], artifacts: str
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """One model version row and its tag rows per adapter, in store order."""
    versions, tags = [], []
    numbers: dict[str, int] = {}
    for i, (adapter_id, task, base, pass_rate, fitness, archived) in enumerate(records):
        number = numbers[task] = numbers.get(task, 0) + 1
        run_id = uuid.UUID(adapter_id).hex
        source = f"{artifacts}/{run_id}/artifacts"
        versions.append({
            "name": task, "version": number, "creation_time": EPOCH_MS + i,
            "last_updated_time": EPOCH_MS + i, "description": None, "user_id": None,
            "current_stage": "None", "source": source, "storage_location": source,
            "run_id": run_id, "run_link": None, "status": "READY", "status_message": None,
            "workspace": "default",
        })  # fmt: skip
        values = {
            "adapter_id": adapter_id,
            "base_model_id": base,
            "pass_rate": repr(pass_rate),
            "is_archived": "true" if archived else "false",
        }
        if fitness is not None:
            values["fitness_score"] = repr(fitness)
        tags.append([
            {"name": task, "version": number, "key": k, "value": v, "workspace": "default"}
            for k, v in values.items()
        ])  # fmt: skip
    return versions, tags


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[AdapterRegistry, Iterator[str], MlflowClient]]:
    with bench_query.setup(workdir) as (registry, names, raw):
        records = raw.execute(
            "SELECT id, task_type, base_model_id, pass_rate, fitness_score, is_archived "
            "FROM adapter_records ORDER BY created_at, id"
        ).fetchall()
        versions, tags = _mlflow_rows(records, (workdir / "mlartifacts").as_uri())
        client = mlflow_registry(workdir, versions, tags)
        for task in ("task-0", "task-17", "task-49"):
            best = registry.query_best_for_task(task)
            assert best is not None and _mlflow_best(client, task) == best.id
        yield registry, names, client


def mlflow_registry(
    workdir: Path, versions: list[dict[str, Any]], tags: list[list[dict[str, Any]]]
) -> MlflowClient:
    """MLflow's registry in workdir/mlflow.db holding these versions and tags (from
    _mlflow_rows, with any tags added): the first version of each model made through the API
    and checked against its rows, the others bulk-inserted."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    through_api = set()
    for i, row in enumerate(versions):
        if row["version"] == 1:
            client.create_registered_model(row["name"])
            made = client.create_model_version(
                row["name"],
                source=row["source"],
                run_id=row["run_id"],
                tags={t["key"]: t["value"] for t in tags[i]},
            )
            assert int(made.version) == 1
            through_api.add(i)
    engine = create_engine(uri)
    with engine.begin() as conn:
        for i in through_api:
            row = versions[i]
            key = (SqlModelVersion.name == row["name"], SqlModelVersion.version == 1)
            written = conn.execute(select(SqlModelVersion.__table__).where(*key)).one()
            assert {k: v for k, v in written._asdict().items() if k not in TIMES} == {
                k: v for k, v in row.items() if k not in TIMES
            }, "the bulk rows must be what create_model_version writes"
            written_tags = conn.execute(
                select(SqlModelVersionTag.__table__).where(
                    SqlModelVersionTag.name == row["name"], SqlModelVersionTag.version == 1
                )
            ).all()
            assert sorted(t._asdict().items() for t in written_tags) == sorted(
                t.items() for t in tags[i]
            )
            conn.execute(
                update(SqlModelVersion.__table__).where(*key).values({k: row[k] for k in TIMES})
            )
        rest = [i for i in range(len(versions)) if i not in through_api]
        conn.execute(insert(SqlModelVersion.__table__), [versions[i] for i in rest])
        conn.execute(insert(SqlModelVersionTag.__table__), [t for i in rest for t in tags[i]])
        conn.execute(
            update(SqlRegisteredModel.__table__).values(last_updated_time=EPOCH_MS + len(rest))
        )
    engine.dispose()
    return client


def _mlflow_best(client: MlflowClient, task: str) -> str:
    found: list[Any] = []
    token = None
    while True:
        page = client.search_model_versions(
            filter_string=f"name = '{task}' AND tags.is_archived = 'false'", page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            break
    scored = [v for v in found if "fitness_score" in v.tags]
    best = max(scored, key=lambda v: (float(v.tags["fitness_score"]), -int(v.creation_timestamp)))
    return str(best.tags["adapter_id"])


def public_api(registry: AdapterRegistry, names: Iterator[str], client: MlflowClient) -> Any:
    best = registry.query_best_for_task(next(names))
    assert best is not None
    return best.id


def mlflow_search_then_max(registry: Any, names: Iterator[str], client: MlflowClient) -> Any:
    return _mlflow_best(client, next(names))


def mlflow_search_one_version(registry: Any, names: Iterator[str], client: MlflowClient) -> Any:
    return client.search_model_versions(filter_string=f"name = '{next(names)}'", max_results=1)[0]


CONTENDERS = [public_api, mlflow_search_then_max, mlflow_search_one_version]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_query_best_vs_mlflow(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) is not None

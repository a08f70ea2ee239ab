"""The dashboard's pages over 100,000 records (SQLite, read-only): a task's leaderboard (top
50 by fitness: the first page, and one 17,000 rows down among the unscored of its 18,000 live
adapters, past its 14,000 scored ones), and adapter pages with the worst
lineages: the tip of a 700-generation chain and a parent of 10,000 children, the lineage graph
bounded by its depth and breadth caps (6 and 12) and the children by theirs (50, then a link).
Targets: leaderboard p50 at most 50 ms of server time, the adapter page at most 50 ms.

Each page is fetched through Starlette's TestClient (the whole ASGI app: routing, queries,
Jinja2, SVG; no socket), so a call's time is the server's time plus the client's small share.
The baseline is what the leaderboard is built on, ``search()`` of the same page on the
registry's own (writable) connection: the page's cost over its query. python benches/
bench_dashboard.py also prints the p50 of the ``Server-Timing`` header of each page.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from starlette.testclient import TestClient

from adapter_registry import AdapterRecord, AdapterRegistry
from adapter_registry.dashboard.app import create_app
from adapter_registry.dashboard.reading import ReadOnlyRegistry
from adapter_registry.tables import EDGES

from conftest import record_rows, run_pedantic, size

GROUP = "dashboard pages over 100k records (per page, server + TestClient)"
ROUNDS = 10
CALLS = 20
RECORDS, TASKS = size(100_000, 2_000), 5
CHAIN, CHILDREN = size(700, 30), size(10_000, 60)
DEEP = RECORDS // TASKS * 17 // 20  # a leaderboard page this many rows down (of 18,000 live)
TASK = "task-1"
CHAIN_ID = "00000000-0000-4000-8000-{:012d}"
CHILD_ID = "11111111-0000-4000-8000-{:012d}"


def _row(adapter_id: str, n: int, parents: list[str], generation: int) -> dict[str, Any]:
    return {
        "id": adapter_id, "version": 1, "task_type": "lineage", "base_model_id": "m",
        "rank": 4, "created_at": f"2026-06-01T00:00:00.{n:06d}+00:00", "file_path": "/x",
        "file_hash": "0" * 64, "file_size_bytes": 1, "source": "evolution", "session_id": "s",
        "is_archived": False, "parent_ids": json.dumps(parents), "generation": generation,
        "config_hash": "0" * 64, "pass_rate": 0.5, "fitness_score": n / 1000,
        "agent_id": None, "training_task_hash": None,
    }  # fmt: skip


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[TestClient, AdapterRegistry]]:
    """The records written straight into the table (no files: the pages read rows), with the
    chain's and the children's lineage edges."""
    url = f"sqlite:///{workdir / 'r.db'}"
    chain = [CHAIN_ID.format(i) for i in range(CHAIN)]
    lineage = [_row(c, i, chain[i - 1 : i], i) for i, c in enumerate(chain)]
    lineage += [_row(CHILD_ID.format(i), i, [chain[0]], 1) for i in range(CHILDREN)]
    edges = [
        {"parent_id": p, "child_id": r["id"]} for r in lineage for p in json.loads(r["parent_ids"])
    ]
    with ExitStack() as stack:
        registry = stack.enter_context(AdapterRegistry(root=workdir / "adapters", db_url=url))
        with registry._db.write() as conn:
            conn.execute(insert(AdapterRecord.__table__), record_rows(RECORDS, TASKS))  # type: ignore[attr-defined]
            conn.execute(insert(AdapterRecord.__table__), lineage)  # type: ignore[attr-defined]
            conn.execute(insert(EDGES), edges)
        reader = stack.enter_context(ReadOnlyRegistry(root=registry.root, db_url=url))
        client = stack.enter_context(TestClient(create_app(reader)))
        for offset in (0, DEEP):  # the page is search()'s page, in order
            page = client.get(f"/api/leaderboard/{TASK}?limit=50&offset={offset}").json()
            expected = registry.search(
                task_type=TASK, order_by="-fitness_score", limit=50, offset=offset
            )
            assert [a["id"] for a in page["adapters"]] == [r.id for r in expected]
        tip = client.get(f"/api/adapters/{chain[-1]}/lineage").json()
        assert len(tip["ancestors"]) == 6 and tip["deeper"]
        root = client.get(f"/api/adapters/{chain[0]}").json()
        assert len(root["children"]) == 50 and root["more_children"]
        yield client, registry


def _page(client: TestClient, path: str) -> float:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    return float(answer.headers["server-timing"].removeprefix("app;dur="))


def leaderboard_page(client: TestClient, registry: AdapterRegistry) -> float:
    return _page(client, f"/leaderboard/{TASK}?limit=50")


def leaderboard_deep_page(client: TestClient, registry: AdapterRegistry) -> float:
    return _page(client, f"/leaderboard/{TASK}?limit=50&offset={DEEP}")


def adapter_page_700_generations(client: TestClient, registry: AdapterRegistry) -> float:
    return _page(client, f"/adapters/{CHAIN_ID.format(CHAIN - 1)}")


def adapter_page_10k_children(client: TestClient, registry: AdapterRegistry) -> float:
    return _page(client, f"/adapters/{CHAIN_ID.format(0)}")


def search_alone(client: TestClient, registry: AdapterRegistry) -> Any:
    return registry.search(task_type=TASK, order_by="-fitness_score", limit=51)


CONTENDERS = [
    leaderboard_page,
    search_alone,
    leaderboard_deep_page,
    adapter_page_700_generations,
    adapter_page_10k_children,
]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_dashboard(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) is not None


def main() -> None:
    """The p50 of each page's Server-Timing (milliseconds), 200 fetches each."""
    with tempfile.TemporaryDirectory() as tmp, setup(Path(tmp)) as (client, registry):
        for page in CONTENDERS:
            if page is search_alone:
                continue
            took = [page(client, registry) for _ in range(200)]
            print(f"{page.__name__}: server p50 {statistics.median(took):.2f} ms, "
                  f"p90 {statistics.quantiles(took, n=10)[-1]:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()

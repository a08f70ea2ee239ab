"""The dashboard step: the read-only dashboard started in this process on a free port against
the demo's registry, its overview page and one JSON endpoint fetched over HTTP, and what they
say checked against the registry. Skipped, with the reason, where the ``ui`` extra (Starlette,
uvicorn, Jinja2) is not installed."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any
from urllib.parse import quote

from .steps import Play, first_missing
from .swarm import TASKS

__all__ = ["dashboard", "ui_missing"]


def ui_missing() -> str | None:
    """The first of starlette, uvicorn, jinja2 that cannot be found, or None."""
    return first_missing("starlette", "uvicorn", "jinja2")


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:  # a local server of ours
        return int(response.status), response.read()


def dashboard(play: Play) -> dict[str, Any]:
    """Serve the dashboard for a moment; fetch ``/`` and ``/api/leaderboard/{task}``."""
    summary: dict[str, Any] = {"ran": False, "reason": None, "url": None, "seconds": None}
    missing = ui_missing()
    if missing is not None:
        summary["reason"] = f"{missing} is not installed (pip install 'adapter-registry[ui]')"
        play.say.title(f"dashboard: skipped, {summary['reason']}")
        return {"dashboard": summary}
    from ..dashboard.app import create_app
    from ..dashboard.reading import ReadOnlyRegistry
    from ..dashboard.serving import served

    play.say.title("dashboard: the read-only web dashboard, served on a free local port")
    task = TASKS[0]
    started = time.perf_counter()
    with (
        ReadOnlyRegistry(root=play.swarm.root, db_url=play.swarm.db_url) as reader,
        served(create_app(reader)) as url,
    ):
        page_status, page = _get(f"{url}/")
        api_status, body = _get(f"{url}/api/leaderboard/{quote(task)}?limit=5")
    seconds = time.perf_counter() - started
    board = json.loads(body)
    top = [a["id"] for a in board["adapters"]]
    expected = [
        r.id for r in play.registry.search(task_type=task, order_by="-fitness_score", limit=5)
    ]
    total = len(play.registry.list_all())
    shown_total = f"<td>{total}</td>".encode() in page
    play.say.indented(f"GET {url}/ -> {page_status}, {len(page):,} bytes of HTML")
    play.say.indented(
        f"GET {url}/api/leaderboard/{task}?limit=5 -> {api_status}: "
        + ", ".join(i[:8] for i in top)
    )
    play.expect(page_status == 200 and shown_total, "the dashboard's overview is wrong")
    play.expect(api_status == 200 and top == expected, "the dashboard's leaderboard is wrong")
    summary.update(ran=True, url=url, seconds=round(seconds, 6), leaderboard=top)
    return {"dashboard": summary}

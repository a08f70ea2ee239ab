"""The dashboard's routes: each page is a view's data (``views``, ``lineage``, ``evolution``,
``saved_reports``) rendered by a Jinja2 template, and the same data is served as JSON under
``/api/`` (``/api`` lists the endpoints). Only GET routes exist: nothing here writes.

Every response says where it may load from (a Content-Security-Policy of this origin's own
stylesheet and no script at all) and how long the server took (``Server-Timing: app;dur=MS``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..cli.output import human_bytes
from ..errors import AdapterNotFoundError, AdapterRegistryError, InvalidAdapterError
from . import evolution, lineage, svg, views
from .reading import ReadOnlyRegistry

__all__ = ["ENDPOINTS", "create_app"]

HERE = Path(__file__).resolve().parent
CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'"

#: The JSON endpoints, as /api lists them (the README documents their keys).
ENDPOINTS = {
    "/api/overview": "counts and bytes, per task type and base model; the newest stores",
    "/api/tasks": "the task types stored",
    "/api/evolution": "the task types stored (as /api/tasks)",
    "/api/leaderboard/{task_type}": "one page of a task's adapters by fitness; search filters",
    "/api/search": "one page of search() with any of its filters",
    "/api/adapters/{id}": "every field, files, tags, aliases, evaluations, children",
    "/api/adapters/{id}/lineage": "the ancestry, bounded by ?depth= and ?breadth=",
    "/api/adapters/{id}/verify": "verify the adapter's files now (a read)",
    "/api/evolution/{task_type}": "fitness against generation and time; best per generation",
    "/api/integrity": "the latest report saved by verify --all --save",
}


def _page_only(key: str) -> bool:
    """What a page gets beside its data: its pictures and the query it was asked."""
    return key.startswith("svg") or key == "query"


def _pageto(query: Any, offset: int) -> str:
    """A page's query string with another offset."""
    kept = [(k, v) for k, v in query.multi_items() if k != "offset"]
    return urlencode([*kept, ("offset", str(offset))])


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a value written by hand into the database may be one."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return super().render(_finite(content))


class _Headers:
    """Safety headers and the server's time on every response (pure ASGI: no body copying)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"server-timing", f"app;dur={took:.3f}".encode()),
                ]
            await send(message)

        await self.app(scope, receive, sending)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every {{ value }} escaped; SVG comes from svg.py, escaped there
        undefined=jinja2.StrictUndefined,
    )
    env.filters["bytes"] = human_bytes
    env.filters["fitness"] = lambda v: "-" if v is None or not math.isfinite(v) else f"{v:.4f}"
    env.filters["href"] = svg.adapter_href
    env.filters["pageto"] = _pageto
    env.globals["version"] = __version__
    return env


def create_app(reader: ReadOnlyRegistry) -> Starlette:
    """The dashboard over an open read-only registry (the caller closes it)."""
    env = _environment()

    def page(template: str, context: dict[str, Any], code: int = 200) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**context), status_code=code)

    def pair(
        template: str, data: Callable[[Request], dict[str, Any]]
    ) -> tuple[Callable[[Request], Response], Callable[[Request], Response]]:
        def html(request: Request) -> Response:
            return page(template, {**data(request), "request": request})

        def api(request: Request) -> Response:
            found = data(request)
            return _Json({k: v for k, v in found.items() if not _page_only(k)})

        return html, api

    def overview(request: Request) -> dict[str, Any]:
        return views.overview(reader)

    def board(request: Request) -> dict[str, Any]:
        filters, limit, offset = views.search_filters(request.query_params)
        task_type = request.path_params.get("task_type")
        if task_type is not None:
            filters["task_type"] = task_type
        found = views.leaderboard(reader, filters, limit, offset)
        return {**found, "task_type": task_type, "query": request.query_params}

    def adapter(request: Request) -> dict[str, Any]:
        adapter_id = request.path_params["adapter_id"]
        found = views.adapter_page(reader, adapter_id)
        depth, breadth = lineage.caps(
            request.query_params.get("depth"), request.query_params.get("breadth")
        )
        graph = lineage.ancestry(reader, adapter_id, depth, breadth)
        return {**found, "lineage": graph, "svg_lineage": svg.lineage_svg(graph)}

    def ancestry(request: Request) -> dict[str, Any]:
        depth, breadth = lineage.caps(
            request.query_params.get("depth"), request.query_params.get("breadth")
        )
        return lineage.ancestry(reader, request.path_params["adapter_id"], depth, breadth)

    def verify(request: Request) -> dict[str, Any]:
        return views.verify_one(reader, request.path_params["adapter_id"])

    def evolve(request: Request) -> dict[str, Any]:
        archived = views.search_filters(request.query_params)[0].get("include_archived", False)
        found = evolution.evolution(reader, request.path_params["task_type"], archived)
        best = found["best_per_generation"]
        return {
            **found,
            "svg_generation": svg.scatter_svg(
                found["points"], best, "generation", "fitness by generation"
            ),
            "svg_time": svg.scatter_svg(found["points"], best, "created_at", "fitness over time"),
        }

    def tasks(request: Request) -> dict[str, Any]:
        return {"task_types": views.task_types(reader)}

    def integrity(request: Request) -> dict[str, Any]:
        return {"report": reader.latest_verify_report()}

    def index(request: Request) -> Response:
        return _Json({"version": __version__, "endpoints": ENDPOINTS})

    def stylesheet(request: Request) -> Response:
        return Response((HERE / "dashboard.css").read_bytes(), media_type="text/css")

    routes = [Route("/api", index), Route("/static/dashboard.css", stylesheet)]
    for path, template, data in (
        ("/", "overview.html", overview),
        ("/evolution", "tasks.html", tasks),
        ("/integrity", "integrity.html", integrity),
        ("/search", "leaderboard.html", board),
        ("/leaderboard/{task_type:path}", "leaderboard.html", board),
        ("/evolution/{task_type:path}", "evolution.html", evolve),
        ("/adapters/{adapter_id:path}/verify", "verify.html", verify),
        ("/adapters/{adapter_id:path}/lineage", "lineage.html", ancestry),
        ("/adapters/{adapter_id:path}", "adapter.html", adapter),
    ):
        html, api = pair(template, data)
        routes.append(Route(path, html))
        routes.append(Route("/api" + ("/overview" if path == "/" else path), api))
    routes.append(Route("/api/tasks", pair("tasks.html", tasks)[1]))

    def failed(request: Request, exc: Exception) -> Response:
        status = (
            404 if isinstance(exc, AdapterNotFoundError)
            else 400 if isinstance(exc, InvalidAdapterError)
            else 500
        )  # fmt: skip
        if request.url.path.startswith("/api"):
            return _Json({"error": str(exc)}, status_code=status)
        return page("error.html", {"message": str(exc), "request": request}, status)

    app = Starlette(routes=routes, exception_handlers={AdapterRegistryError: failed})
    app.add_middleware(_Headers)
    return app

"""``ui``: the read-only dashboard in a browser (the ``ui`` extra: Starlette, uvicorn, Jinja2).

It opens the registry the global options name read-only (``dashboard.reading``): it never
creates a registry, never migrates one, and never writes. It binds 127.0.0.1 unless told;
bound to a loopback address it answers only requests addressed to a loopback name (a web
page elsewhere cannot reach it through DNS rebinding).
"""

from __future__ import annotations

import ipaddress

import click

from ..errors import MissingDependencyError
from .app import PROG, Settings

__all__ = ["dashboard_command", "ui"]

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def dashboard_command(home: str) -> str:
    """The command line that opens the registry of a home in the dashboard."""
    import shlex

    return f"{PROG} --home {shlex.quote(home)} ui"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8700, show_default=True, help="Port."
)
@click.pass_obj
def ui(settings: Settings, host: str, port: int) -> None:
    """Open a read-only dashboard of the registry in a browser.

    Pages: the overview, a leaderboard per task type, each adapter (fields, files, tags,
    evaluations, children, its lineage drawn), evolution plots, integrity; the same data as
    JSON under /api. It never writes, and binds localhost unless --host says otherwise: put a
    reverse proxy with authentication and TLS in front before exposing it (see the README).

    \b
    Example:
      adapter-registry ui --port 8700          # after --home DIR, --db-url or RUNE_HOME
    """
    try:
        import uvicorn
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        from ..dashboard.app import create_app
        from ..dashboard.reading import ReadOnlyRegistry
    except ImportError as err:
        raise MissingDependencyError(
            f"the dashboard needs the ui extra ({err.name} is missing): "
            "pip install 'adapter-registry[ui]'"
        ) from err
    with ReadOnlyRegistry(root=settings.root, db_url=settings.db_url, home=settings.home) as reader:
        app = create_app(reader)
        if _loopback(host):
            app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES)
        click.echo(
            f"dashboard of {reader.root} ({reader.db_url}), read-only, on "
            f"http://{host if ':' not in host else f'[{host}]'}:{port}/ (Ctrl-C stops it)",
            err=True,
        )
        uvicorn.run(app, host=host, port=port, log_level="warning")

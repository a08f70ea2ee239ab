"""Where a registry lives when its caller does not say: the environment and the home layout.

A home holds both halves of a registry: ``{home}/adapters`` (the root) and
``{home}/adapter_registry.db`` (SQLite). The home is ``$RUNE_HOME``, else ``~/.rune``; the
database URL is ``$RUNE_DB_URL`` where set. The library and the command line both place a
registry through this module, so the layout is written once.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import URL

from .errors import AdapterStorageError

__all__ = [
    "DB_URL_ENV",
    "HOME_ENV",
    "default_home",
    "home_db_url",
    "home_root",
    "locate",
    "make_root",
    "shown_url",
]

#: The registry home when none is given (default ``~/.rune``).
HOME_ENV = "RUNE_HOME"
#: The database URL used when none is given (else SQLite in the home).
DB_URL_ENV = "RUNE_DB_URL"

ROOT_NAME = "adapters"
DATABASE_NAME = "adapter_registry.db"


def default_home() -> Path:
    """``$RUNE_HOME``, else ``~/.rune``."""
    return Path(os.environ.get(HOME_ENV) or "~/.rune").expanduser()


def home_root(home: Path) -> Path:
    """The adapter root of a home."""
    return home / ROOT_NAME


def home_db_url(home: Path) -> URL:
    """The SQLite database of a home, as a URL (never a string: a home's path may hold
    characters that a URL string would read as syntax)."""
    return URL.create("sqlite", database=str(home / DATABASE_NAME))


def locate(
    root: str | os.PathLike[str] | None,
    db_url: str | URL | None,
    home: str | os.PathLike[str] | None = None,
) -> tuple[Path, str | URL]:
    """The absolute root and the database URL of a registry, defaults applied (nothing is
    created here): ``root`` and ``db_url`` where given; else the home's root and database,
    where the home is ``home`` if given (``$RUNE_DB_URL`` is then not read), else
    ``$RUNE_HOME``/``~/.rune`` (with ``$RUNE_DB_URL`` before its database)."""
    base = default_home() if home is None else Path(home).expanduser().absolute()
    where = Path(root if root is not None else home_root(base)).expanduser().resolve()
    if db_url is None:
        from_env = os.environ.get(DB_URL_ENV) if home is None else None
        db_url = from_env or home_db_url(base)
    return where, db_url


def make_root(where: Path) -> None:
    """Create the adapter root if absent (AdapterStorageError if it cannot be)."""
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AdapterStorageError(
            err.errno, f"adapter root {where} cannot be created: {err.strerror}"
        ) from err


def shown_url(url: URL) -> str:
    """A database as a message names it: a SQLite file by its path, a server by its URL
    without the password."""
    if url.get_backend_name() == "sqlite":
        return str(Path(url.database or "").expanduser())
    return url.render_as_string(hide_password=True)

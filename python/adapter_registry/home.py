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


def locate(root: str | os.PathLike[str] | None, db_url: str | URL | None) -> tuple[Path, str | URL]:
    """The absolute root and the database URL of a registry, defaults applied: the root of
    the default home; ``$RUNE_DB_URL``, else the default home's database. The root is created
    if absent (AdapterStorageError if it cannot be)."""
    home = default_home()
    where = Path(root if root is not None else home_root(home)).expanduser().resolve()
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AdapterStorageError(
            err.errno, f"adapter root {where} cannot be created: {err.strerror}"
        ) from err
    if db_url is None:
        db_url = os.environ.get(DB_URL_ENV) or home_db_url(home)
    return where, db_url

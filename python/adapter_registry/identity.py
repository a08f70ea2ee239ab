"""Opening a registry: its root and its database found, checked to exist (``create=False``)
or created (``create=True``), and checked to belong together.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import URL

from .database import Database
from .errors import RegistryNotFoundError
from .home import locate, make_root

__all__ = ["open_registry"]


def open_registry(
    root: str | os.PathLike[str] | None,
    db_url: str | URL | None,
    home: str | os.PathLike[str] | None,
    *,
    create: bool,
    pool_size: int,
    pool_timeout: float,
    connect_timeout: float,
) -> tuple[Path, Database]:
    """The root and the database of a registry, ready to use.

    Raises:
        RegistryNotFoundError: ``create`` is false and the database (or its registry schema)
            or the root is not there. Nothing was created.
        AdapterStorageError: The root or the database cannot be created or used.
    """
    where, url = locate(root, db_url, home)
    db = Database(
        url, pool_size=pool_size, pool_timeout=pool_timeout, connect_timeout=connect_timeout
    )
    try:
        if not create:
            if not db.exists():
                raise RegistryNotFoundError(f"no registry at {db.shown}: no registry database")
            if not where.is_dir():
                raise RegistryNotFoundError(f"no registry at {where}: the adapter root is missing")
        make_root(where)
        db.ensure_schema()
    except BaseException:
        db.dispose()
        raise
    return where, db

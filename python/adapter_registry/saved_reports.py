"""Saved verification reports (``adapter-registry verify --all --save``): each run of a whole
verification stored as one append-only row of ``verify_reports``, so that a dashboard, which
never writes and never hashes a whole registry, can show how the last one went.

``save_verify_report`` and ``latest_verify_report`` are mixed into ``AdapterRegistry``.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select

from . import _core, validation
from .database import Database
from .records import Records, now
from .reports import VerifyReport
from .tables import VERIFY_REPORTS

__all__ = ["MAX_PROBLEMS", "SavedReports", "latest", "save"]

#: The most adapters with problems one saved report lists (the rest are counted).
MAX_PROBLEMS = 10_000


def _who() -> str | None:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (OSError, KeyError):  # no user name for this uid (a container)
        return None


def save(
    db: Database,
    reports: Sequence[VerifyReport],
    files: int = 0,
    size: int = 0,
    seconds: float = 0.0,
) -> dict[str, Any]:
    """Store one verification's reports as a row; returns it as ``latest`` would."""
    counts = Counter(r.status for r in reports)
    bad = [
        {"id": r.adapter_id, "status": r.status, "problems": list(r.problems)}
        for r in reports
        if not r.ok
    ]
    row = {
        "saved_at": now(),
        "saved_by": _who(),
        "adapters": len(reports),
        "files": validation.check_count("files", files, 0),
        "bytes": validation.check_count("bytes", size, 0),
        "seconds": float(seconds),
        "counts": json.dumps({status: counts[status] for status in _core.VERDICTS}),
        "problems": json.dumps(bad[:MAX_PROBLEMS]),
        "problems_left_out": max(0, len(bad) - MAX_PROBLEMS),
    }
    with db.write() as conn:
        row_id = conn.execute(insert(VERIFY_REPORTS).values(row)).inserted_primary_key
    return _shown({**row, "id": row_id[0] if row_id else None})


def latest(db: Database) -> dict[str, Any] | None:
    """The newest saved report, or None if none was saved."""
    stmt = select(VERIFY_REPORTS).order_by(VERIFY_REPORTS.c.id.desc()).limit(1)
    with db.read() as conn:
        row = conn.execute(stmt).first()
    return None if row is None else _shown(dict(row._mapping))


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    counts = json.loads(row["counts"])
    problems = json.loads(row["problems"])
    return {
        **row,
        "counts": counts,
        "problems": problems,
        "ok": not problems and not row["problems_left_out"],
    }


class SavedReports:
    """Saving a whole verification's reports, and reading the latest, for ``AdapterRegistry``."""

    _records: Records

    def save_verify_report(
        self,
        reports: Sequence[VerifyReport],
        *,
        files: int = 0,
        bytes: int = 0,
        seconds: float = 0.0,
    ) -> dict[str, Any]:
        """Store the reports of a verification (``verify_all()``) for dashboards to show.

        Args:
            reports: The reports, one per adapter.
            files, bytes, seconds: What the verification hashed and how long it took.

        Returns: The saved report: ``id``, ``saved_at``, ``saved_by``, ``adapters``,
            ``files``, ``bytes``, ``seconds``, ``counts`` (adapters by verdict), ``problems``
            (the adapters not ok, each ``id``, ``status``, ``problems``), ``problems_left_out``
            and ``ok``.
        Raises: AdapterStorageError: The database failed; nothing was saved.
        """
        return save(self._records.db, reports, files, bytes, seconds)

    def latest_verify_report(self) -> dict[str, Any] | None:
        """The newest report saved by ``save_verify_report`` (as it returned it), or None."""
        return latest(self._records.db)

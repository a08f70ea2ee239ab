"""Moving adapters between registries: ``export``, ``import_bundle`` and ``backup``, mixed into
``AdapterRegistry``. The format is ``bundles.py``'s; the work is ``exporting.py``'s and
``importing.py``'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from . import importing
from .errors import InvalidAdapterError
from .exporting import TransferProgress, chosen_ids, read_snapshot, write_bundle
from .finding import Finding
from .promoting import Promoting
from .records import Records
from .reports import ExportReport, ImportReport

__all__ = ["Moving", "TransferProgress"]


class Moving:
    """``export``, ``import_bundle`` and ``backup``, for ``AdapterRegistry``."""

    _records: Records
    root: Path

    def export(
        self,
        dest: str | os.PathLike[str],
        *,
        ids: list[str] | None = None,
        with_ancestors: bool = True,
        progress: TransferProgress | None = None,
        **filters: Any,
    ) -> ExportReport:
        """Write adapters as a bundle: a directory, or a ``.tar`` when ``dest`` ends so.

        The bundle holds each adapter's files as published and a manifest with its record
        (mutable state as it is now), tags, evaluation history, and the size and SHA-256 of
        every file. The rows are read in one snapshot; every file is hashed as it is copied.

        Args:
            dest: Where the bundle goes; it must not exist.
            ids: These adapters (default: those the filters select, all without filters).
            with_ancestors: Take every ancestor of each adapter along (the default).
            progress: ``progress(files_done, files_total, bytes_done, bytes_total)``.
            **filters: Any filter of ``search`` (its order and limit too); archived adapters
                are included unless ``include_archived=False``. With ``ids``, they narrow them.

        Returns: What was written.
        Raises:
            InvalidBundleError: ``dest`` exists.
            InvalidAdapterError: A bad filter. AdapterNotFoundError: An id is not registered.
            IntegrityError: A stored file no longer matches its record; nothing is left at
                ``dest``.
        """
        filters.setdefault("include_archived", True)
        if ids is not None:
            wanted = [self._records.require(i) for i in ids]
            if set(filters) != {"include_archived"} or not filters["include_archived"]:
                selected = {r.id for r in cast(Finding, self).search(**filters)}
                wanted = [r for r in wanted if r.id in selected]
        else:
            wanted = cast(Finding, self).search(**filters)
        chosen = chosen_ids(self._records, wanted, with_ancestors)
        snapshot = read_snapshot(self._records.db, self.root, chosen)
        return write_bundle(self.root, snapshot, dest, progress)

    def backup(
        self, dest: str | os.PathLike[str], *, progress: TransferProgress | None = None
    ) -> ExportReport:
        """A consistent backup while others keep storing: a bundle of every adapter, with the
        whole database (records, tags, evaluations, aliases) read in one snapshot. Restore it
        with ``import_bundle(dest, with_aliases=True)`` into an empty registry.

        Args: dest: As for ``export``; progress: As for ``export``.
        Returns: What was written.
        Raises: As ``export``.
        """
        snapshot = read_snapshot(self._records.db, self.root, None)
        return write_bundle(self.root, snapshot, dest, progress)

    def import_bundle(
        self,
        src: str | os.PathLike[str],
        *,
        with_aliases: bool = False,
        threads: int | None = None,
        progress: TransferProgress | None = None,
    ) -> ImportReport:
        """Publish and register the adapters of a bundle here, keeping their ids, created_at,
        lineage, mutable state, tags and evaluation history.

        Every file is verified against the manifest and the record before anything is
        registered; each adapter is published by the same exclusive publish as ``store()``,
        parents first, and registered only once its files are durable. An adapter already
        here with the same hashes is skipped and its state here left as it is (the report
        names the differences); one here with other hashes, one whose files disagree, and one
        whose parent is neither here nor imported is refused with nothing written for it.

        Args:
            src: A bundle directory or ``.tar``.
            with_aliases: Set the bundle's aliases this registry does not have.
            threads: Publishes in flight at once (default 64).
            progress: ``progress(files_done, files_total, bytes_done, bytes_total)`` over the
                hashing and then the publishing of every file.

        Returns: What was imported, skipped and refused (``.ok``, ``.raise_for_status()``).
        Raises:
            InvalidBundleError: The bundle as a whole cannot be imported (not our format, a
                member escaping it, a link or device, an id listed twice); nothing written.
        """
        if not isinstance(with_aliases, bool):
            raise InvalidAdapterError("with_aliases must be True or False")
        return importing.import_bundle(
            self._records, self.root, src, aliases=cast(Promoting, self) if with_aliases else None,
            threads=threads, progress=progress,
        )  # fmt: skip

"""What verify_all(), recover(), export() and import_bundle() hand back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import AdapterRegistryError, IntegrityError

__all__ = ["ExportReport", "ImportReport", "RecoveryReport", "VerifyReport"]


@dataclass(frozen=True)
class VerifyReport:
    """The state of one adapter's stored files against its record."""

    adapter_id: str
    #: One of ``_core.VERDICTS``: "ok", "mismatch", "missing" or "unreadable" (the worst of
    #: its files' verdicts, as the core decides them).
    status: str
    #: One line per problem, naming the file: empty when ok.
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def raise_for_status(self) -> None:
        """Raise IntegrityError naming the adapter and its problems, unless ok."""
        if not self.ok:
            raise IntegrityError(f"adapter {self.adapter_id}: {'; '.join(self.problems)}")


@dataclass
class RecoveryReport:
    """What recover() found and did."""

    #: Published directories without a row, verified and registered.
    rolled_forward: list[str] = field(default_factory=list)
    #: Staging directories of dead stores, removed.
    removed_staging: list[str] = field(default_factory=list)
    #: Staging directories it may not touch (another Unix user's dead store), with the reason;
    #: they hold no adapter, so they do not make the report unclean.
    skipped_staging: list[tuple[str, str]] = field(default_factory=list)
    #: Empty directories under adapter names (claims of interrupted publishes), removed.
    removed_claims: list[str] = field(default_factory=list)
    #: Entries under the root that could not be registered, with the reason (left untouched).
    unregistered: list[tuple[str, str]] = field(default_factory=list)
    #: Rows whose weight file is gone.
    missing: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.unregistered or self.missing)


@dataclass
class ExportReport:
    """What ``export`` (or ``backup``) wrote."""

    #: The bundle: a directory, or a ``.tar``.
    path: Path
    #: The adapters in it, parents first.
    adapters: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0


@dataclass
class ImportReport:
    """What ``import_bundle`` did, adapter by adapter."""

    #: Published and registered here, parents first.
    imported: list[str] = field(default_factory=list)
    #: Already here with the same hashes: left as they are (mutable state included).
    skipped: list[str] = field(default_factory=list)
    #: For a skipped adapter, how its mutable state here differs from the bundle's (one line
    #: each, e.g. "fitness_score: 0.5 here, 0.7 in the bundle").
    differences: dict[str, list[str]] = field(default_factory=dict)
    #: Adapters not imported, with the typed error that says why; nothing was written for them.
    refused: dict[str, AdapterRegistryError] = field(default_factory=dict)
    #: Aliases set here (with ``with_aliases``), and those left out with the reason.
    aliases_set: list[str] = field(default_factory=list)
    aliases_skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Evaluation history rows written, as they are in the bundle.
    evaluations: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.refused

    def raise_for_status(self) -> None:
        """Raise the error of the first refused adapter (its message names it), unless ok."""
        for error in self.refused.values():
            raise error

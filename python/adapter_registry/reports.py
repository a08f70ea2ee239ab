"""What verify_all() and recover() hand back."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import IntegrityError

__all__ = ["RecoveryReport", "VerifyReport"]


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

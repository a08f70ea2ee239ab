"""Integrity commands: ``verify`` (bytes against records) and ``recover`` (after crashes)."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click

from .. import _core
from ..home import home_root, locate
from ..records import adapter_directory
from ..registry import AdapterRegistry
from ..reports import VerifyReport
from .app import BadUsage, CommandError, Settings
from .options import ADAPTER
from .output import ByteProgress, emit_json, human_bytes, json_option, shown

__all__ = ["VerifyRun", "recover", "verify", "verify_records"]

#: The order statuses are counted in, from the core that decides them.
STATUSES = _core.VERDICTS


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass
class VerifyRun:
    """What one verification did: its reports, and how many files and bytes it hashed."""

    reports: list[VerifyReport]
    files: int
    bytes: int
    seconds: float

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(r.status for r in self.reports)
        return {status: found[status] for status in STATUSES}

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts.items() if n)
        return (
            f"verified {_count(len(self.reports), 'adapter')} ({_count(self.files, 'file')}, "
            f"{human_bytes(self.bytes)}) in {self.seconds:.2f} s: {counts or 'nothing to do'}"
        )


def _config_size(directory: Path) -> int:
    try:
        return os.stat(directory / _core.CONFIG_FILE).st_size
    except OSError:
        return 0


def verify_records(
    registry: AdapterRegistry,
    ids: list[str] | None,
    threads: int | None = None,
    show_progress: bool | None = None,
) -> VerifyRun:
    """verify_all() (the columns verification needs, no records built) with a progress bar
    over bytes on a terminal (stderr), timed. The bar's total, from the records and the
    configs' sizes, is read only when the bar shows."""

    def total_bytes() -> int:
        records = (
            registry.list_all(include_archived=True)
            if ids is None
            else [registry.retrieve_by_id(i) for i in ids]
        )
        return sum(
            r.file_size_bytes + _config_size(adapter_directory(registry.root, r.id))
            for r in records
        )

    with ByteProgress(total_bytes, "verify", show=show_progress) as progress:
        started = time.perf_counter()
        reports = registry.verify_all(ids, threads=threads, progress=progress)
        seconds = time.perf_counter() - started
    return VerifyRun(reports, progress.files_done, progress.bytes_done, seconds)


@click.command()
@click.argument("adapter_ids", metavar="[ID]...", nargs=-1, type=ADAPTER)
@click.option("--all", "everything", is_flag=True, help="Every adapter, archived ones included.")
@click.option(
    "--save",
    is_flag=True,
    help="With --all: store the report in the database (the dashboard shows the latest).",
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="Hashing threads [default: one per core]."
)
@json_option
@click.pass_obj
def verify(
    settings: Settings,
    adapter_ids: tuple[str, ...],
    everything: bool,
    save: bool,
    threads: int | None,
    as_json: bool,
) -> None:
    """Check adapters' files against their recorded hashes.

    A progress bar over bytes shows on a terminal, a summary line after; exit status 1 on
    any mismatch, missing or unreadable file.

    \b
    Example:
      adapter-registry verify --all --threads 4
      adapter-registry verify --all --save      # the dashboard shows the latest saved
    """
    if everything == bool(adapter_ids):
        raise BadUsage("give adapter ids or --all (not both)")
    if save and not everything:
        raise BadUsage("--save stores a whole verification: give --all")
    registry = settings.registry()
    run = verify_records(registry, None if everything else list(adapter_ids), threads)
    saved = (
        registry.save_verify_report(
            run.reports, files=run.files, bytes=run.bytes, seconds=run.seconds
        )
        if save
        else None
    )
    if as_json:
        emit_json(
            {
                "ok": run.ok,
                "adapters": len(run.reports),
                "files": run.files,
                "bytes": run.bytes,
                "seconds": round(run.seconds, 6),
                "counts": run.counts,
                **({"saved": {"id": saved["id"], "saved_at": saved["saved_at"]}} if saved else {}),
                "reports": [
                    {"id": r.adapter_id, "status": r.status, "problems": list(r.problems)}
                    for r in run.reports
                ],
            }
        )
    else:
        for report in run.reports:
            if not report.ok:
                click.echo(
                    shown(
                        f"{report.status.upper()} {report.adapter_id}: {'; '.join(report.problems)}"
                    )
                )
        click.echo(run.summary())
        if saved:
            click.echo(f"saved as report {saved['id']} at {saved['saved_at']}")
    if not run.ok:
        click.get_current_context().exit(1)


def _registry_to_recover(settings: Settings, adopt: bool) -> AdapterRegistry:
    """Adopting is the one recover that may create: the database, for a root that is there."""
    if not adopt:
        return settings.registry()
    given = settings.root or (home_root(settings.home) if settings.home else None)
    root = locate(given, settings.db_url)[0]
    if not root.is_dir():
        raise CommandError(f"no registry at {root}: the adapter root is missing")
    return settings.registry(create=True, adopt=True)


@click.command()
@click.option(
    "--adopt",
    is_flag=True,
    help="Also register the adapters that were in the root before its database was bound to "
    "it (a root whose database was lost); creates the database if it is not there.",
)
@json_option
@click.pass_obj
def recover(settings: Settings, adopt: bool, as_json: bool) -> None:
    """Bring files and rows back in step after crashes.

    Registers published adapters left without a row (after verifying them), clears the
    staging of dead stores, and reports rows whose files are gone (exit status 1 then). It
    never removes or changes a published adapter, and is safe beside running stores. The
    adapters a root held before its database was bound to it are registered only with --adopt.

    \b
    Example:
      adapter-registry recover --json
      adapter-registry --root /srv/old/adapters --db-url sqlite:////srv/new.db recover --adopt
    """
    report = _registry_to_recover(settings, adopt).recover(adopt=adopt)
    if as_json:
        emit_json(
            {
                "clean": report.clean,
                "rolled_forward": report.rolled_forward,
                "removed_staging": report.removed_staging,
                "skipped_staging": [
                    {"name": n, "reason": why} for n, why in report.skipped_staging
                ],
                "removed_claims": report.removed_claims,
                "unregistered": [{"name": n, "reason": why} for n, why in report.unregistered],
                "missing": report.missing,
            }
        )
    else:
        for adapter_id in report.rolled_forward:
            click.echo(f"registered {adapter_id} (published, verified, had no row)")
        for name in report.removed_staging:
            click.echo(shown(f"removed staging {name} (its store died)"))
        for name, why in report.skipped_staging:
            click.echo(shown(f"left staging {name}: {why}"))
        for name in report.removed_claims:
            click.echo(f"removed empty claim {name}")
        for name, why in report.unregistered:  # names under the root are anyone's to choose
            click.echo(shown(f"UNREGISTERED {name}: {why}"))
        for adapter_id in report.missing:
            click.echo(f"MISSING {adapter_id}: its row names files that are gone")
        click.echo(
            f"{'clean' if report.clean else 'not clean'}: "
            f"{len(report.rolled_forward)} registered, {len(report.removed_staging)} staging and "
            f"{len(report.removed_claims)} claims removed, {len(report.unregistered)} "
            f"unregistered, {len(report.missing)} missing"
        )
    if not report.clean:
        click.get_current_context().exit(1)

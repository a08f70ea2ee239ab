"""Moving adapters between registries: ``export``, ``import`` and ``backup``.

Each shows a progress bar over bytes on a terminal (stderr), a summary line after, and takes
``--json``. ``import`` may create the registry it imports into; ``export`` and ``backup``
never create one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..bundles import open_bundle
from ..reports import ExportReport, ImportReport
from .app import Settings
from .options import ADAPTER, search_arguments, search_options
from .output import ByteProgress, emit_json, human_bytes, json_option, shown

__all__ = ["Bar", "backup", "export", "import_"]


class Bar:
    """A transfer's progress callback: the bar over bytes (``ByteProgress``), started on the
    first call, when the total is known."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._bar: ByteProgress | None = None

    def __call__(self, files_done: int, files_total: int, bytes_done: int, total: int) -> None:
        if self._bar is None:
            self._bar = ByteProgress(total, self.description).__enter__()
        self._bar(files_done, files_total, bytes_done)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _written(report: ExportReport, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "path": str(report.path),
                "adapters": report.adapters,
                "files": report.files,
                "bytes": report.bytes,
                "seconds": round(report.seconds, 6),
            }
        )
    else:
        click.echo(
            shown(
                f"wrote {report.path}: {_count(len(report.adapters), 'adapter')} "
                f"({_count(report.files, 'file')}, {human_bytes(report.bytes)}) "
                f"in {report.seconds:.2f} s"
            )
        )


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--id", "ids", multiple=True, type=ADAPTER, help="This adapter (repeatable); filters narrow."
)
@click.option("--no-ancestors", is_flag=True, help="Leave the ancestors out.")
@click.option("--exclude-archived", is_flag=True, help="Leave archived adapters out.")
@search_options
@json_option
@click.pass_obj
def export(
    settings: Settings,
    /,
    dest: Path,
    ids: tuple[str, ...],
    no_ancestors: bool,
    exclude_archived: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Write adapters to a bundle: a directory or a .tar.

    DEST is a .tar when its name ends so, else a directory. Takes every filter of ls; archived
    adapters are included unless --exclude-archived, and each adapter's ancestors come along
    unless --no-ancestors. The bundle holds the files as published and a manifest (records,
    fitness, archive state, tags, evaluation history, the SHA-256 of every file). DEST must not
    exist.

    \b
    Example:
      adapter-registry export /backups/bug-fix.tar --task-type bug-fix --min-fitness 0.8
    """
    options.pop("include_archived")
    filters = search_arguments(options)
    filters["include_archived"] = not exclude_archived
    registry = settings.registry()
    with Bar("export") as bar:
        report = registry.export(
            dest, ids=list(ids) or None, with_ancestors=not no_ancestors, progress=bar, **filters
        )
    _written(report, as_json)


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@json_option
@click.pass_obj
def backup(settings: Settings, dest: Path, as_json: bool) -> None:
    """Back up every adapter of a live registry, consistently.

    A bundle (.tar or directory) of every adapter. The database is read in one snapshot while
    others may keep storing; every adapter registered before the backup began is in it. Restore
    with import into an empty home.

    \b
    Example:
      adapter-registry backup /backups/rune-$(date +%F).tar
    """
    registry = settings.registry()
    with Bar("backup") as bar:
        report = registry.backup(dest, progress=bar)
    _written(report, as_json)


@click.command("import")
@click.argument("src", type=click.Path(path_type=Path))
@click.option(
    "--with-aliases", is_flag=True, help="Set the bundle's aliases that are not set here."
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="Publishes in flight at once [default: 64]."
)
@json_option
@click.pass_obj
def import_(
    settings: Settings, src: Path, with_aliases: bool, threads: int | None, as_json: bool
) -> None:
    """Import a bundle's adapters, keeping their ids and lineage.

    They keep their times, state, tags and history too. Every file is checked against the
    manifest and its record first. An adapter already here with the same files is skipped (its
    state here is kept; differences are listed); one that cannot be imported is listed with the
    reason, and the exit status is 1. Creates the registry if there is none.

    \b
    Example:
      adapter-registry import /backups/bug-fix.tar --with-aliases
    """
    with open_bundle(src):  # a bundle that is not there (or not one) creates no registry
        pass
    registry = settings.registry(create=True)
    with Bar("import") as bar:
        report = registry.import_bundle(
            src, with_aliases=with_aliases, threads=threads, progress=bar
        )
    if as_json:
        emit_json(import_json(report))
    else:
        for adapter_id in report.imported:
            click.echo(f"imported {adapter_id}")
        for adapter_id in report.skipped:
            differs = "; ".join(report.differences.get(adapter_id, []))
            click.echo(
                shown(f"skipped {adapter_id} (here already{': ' + differs if differs else ''})")
            )
        for adapter_id, error in report.refused.items():
            click.echo(shown(f"REFUSED {adapter_id}: {error}"))
        for alias in report.aliases_set:
            click.echo(shown(f"alias {alias} set"))
        for alias, why in report.aliases_skipped:
            click.echo(shown(f"alias {alias} left out: {why}"))
        click.echo(
            f"{len(report.imported)} imported, {len(report.skipped)} skipped, "
            f"{len(report.refused)} refused ({_count(report.files, 'file')}, "
            f"{human_bytes(report.bytes)}) in {report.seconds:.2f} s"
        )
    if not report.ok:
        click.get_current_context().exit(1)


def import_json(report: ImportReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "imported": report.imported,
        "skipped": report.skipped,
        "differences": report.differences,
        "refused": [
            {"id": i, "error": type(e).__name__, "message": str(e)}
            for i, e in report.refused.items()
        ],
        "aliases_set": report.aliases_set,
        "aliases_skipped": [{"alias": a, "reason": why} for a, why in report.aliases_skipped],
        "evaluations": report.evaluations,
        "files": report.files,
        "bytes": report.bytes,
        "seconds": round(report.seconds, 6),
    }

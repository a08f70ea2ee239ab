"""Reading commands: ``ls``, ``show`` and ``best``. They never write."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import click

from .. import _core
from ..errors import InvalidAdapterError
from ..records import adapter_directory
from ..registry import AdapterRegistry
from ..validation import check_task_type
from .app import CommandError, Settings
from .lineage import lineage_json, tree_text
from .options import ADAPTER, search_arguments, search_options
from .output import (
    EVALUATION_HEADERS,
    LIST_HEADERS,
    LIST_NUMERIC,
    emit_json,
    emit_list,
    evaluation_json,
    evaluation_line,
    human_bytes,
    json_option,
    jsonl_option,
    list_format,
    plain_table,
    record_json,
    record_line,
    shown,
)

__all__ = ["best", "ls", "show"]

#: How many of an adapter's evaluations ``show`` prints, the latest.
LATEST_EVALUATIONS = 5
#: What a stored adapter's directory holds, in the order ``show`` lists it.
EXPECTED_FILES = (
    _core.WEIGHTS_FILE,
    _core.PEFT_WEIGHTS_FILE,
    _core.CONFIG_FILE,
    _core.RECORD_FILE,
)


@click.command()
@search_options
@json_option
@jsonl_option
@click.pass_obj
def ls(settings: Settings, /, as_json: bool, as_jsonl: bool, **options: Any) -> None:
    """List adapters, filtered and ordered as asked (newest first).

    Filters combine with AND. Archived adapters are left out unless -a is given.

    \b
    Example:
      adapter-registry ls --agent-id agent-7 --session-id run-42 --min-fitness 0.8 \\
          --order-by -fitness_score --limit 5 --jsonl
    """
    fmt = list_format(as_json, as_jsonl)
    arguments = search_arguments(options)
    registry = settings.registry()
    if arguments["task_type"] is not None:
        _check_task_type(arguments["task_type"])
    if arguments["parent_id"] is not None:
        registry.retrieve_by_id(arguments["parent_id"])  # an unknown parent is an error
    records = registry.search(**arguments)
    if fmt != "text":
        emit_list(map(record_json, records), fmt)
    elif records:
        click.echo(plain_table(LIST_HEADERS, map(record_line, records), right=LIST_NUMERIC))
    else:
        click.echo("no adapters", err=True)
    if not records and arguments["task_type"] is not None:
        unknown = _unknown_task_type(registry, arguments["task_type"])
        if unknown:
            click.echo(unknown, err=True)


def _check_task_type(task_type: str) -> None:
    """A name that cannot be a task type is an error that says so, not an empty answer."""
    try:
        check_task_type(task_type)
    except InvalidAdapterError:
        raise CommandError(
            f"{task_type!r} is not a task type: task types are kebab-case, e.g. 'bug-fix'"
        ) from None


def _unknown_task_type(registry: AdapterRegistry, task_type: str) -> str | None:
    """Where no adapter has this task type: a line that says so and names those that exist."""
    known = registry._task_types()
    if task_type in known:
        return None
    return f"no adapter has task type {task_type}; task types stored: {', '.join(known) or 'none'}"


def _file_json(directory: Path, name: str, weights: os.stat_result | None) -> dict[str, Any]:
    path = directory / name
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        info = None
    return {
        "name": name,
        "path": str(path),
        "exists": info is not None,
        "size_bytes": info.st_size if info else None,
        "mode": f"{stat.S_IMODE(info.st_mode):04o}" if info else None,
        "links": info.st_nlink if info else None,
        "same_file_as_weights": (
            info is not None
            and weights is not None
            and (info.st_dev, info.st_ino) == (weights.st_dev, weights.st_ino)
        ),
    }


def files_json(directory: Path) -> list[dict[str, Any]]:
    """The adapter's directory as it is now: the expected files first, then anything else."""
    try:
        weights: os.stat_result | None = os.stat(
            directory / _core.WEIGHTS_FILE, follow_symlinks=False
        )
    except OSError:
        weights = None
    try:
        others = sorted(set(os.listdir(directory)) - set(EXPECTED_FILES))
    except OSError:
        others = []
    return [_file_json(directory, name, weights) for name in (*EXPECTED_FILES, *others)]


def _field_text(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "parent_ids":
        return shown(", ".join(value)) if value else "(none)"
    if name == "file_size_bytes":
        return f"{value} ({human_bytes(value)})"
    return str(value).lower() if isinstance(value, bool) else shown(value)


@click.command()
@click.argument("adapter_id", metavar="ID", type=ADAPTER)
@json_option
@click.pass_obj
def show(settings: Settings, adapter_id: str, as_json: bool) -> None:
    """Show one adapter: record, names, evaluations, files, lineage.

    Every field of the record, the aliases that point at it, its tags, its latest evaluations,
    each file of its directory (size, mode, links) and the tree of its parents and children.

    \b
    Example:
      adapter-registry show 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --json
    """
    registry = settings.registry()
    record = registry.retrieve_by_id(adapter_id)
    directory = adapter_directory(registry.root, record.id)
    files = files_json(directory)
    tree = lineage_json(registry, record)
    tags = registry.tags(record.id)
    aliases = sorted(name for name, target in registry.aliases().items() if target == record.id)
    evaluations = registry.evaluations(record.id)
    latest = evaluations[-LATEST_EVALUATIONS:]
    if as_json:
        emit_json(
            {
                "record": record_json(record),
                "directory": str(directory),
                "files": files,
                "ancestors": [r.id for r in registry.lineage(adapter_id)],
                "children": [c["id"] for c in tree["children"]],
                "tags": tags,
                "aliases": aliases,
                "evaluation_count": len(evaluations),
                "latest_evaluations": [evaluation_json(e) for e in latest],
            }
        )
        return
    fields = record_json(record)
    width = max(map(len, fields))
    for name, value in fields.items():
        click.echo(f"{name:<{width}}  {_field_text(name, value)}")
    click.echo(f"\naliases pointing here: {shown(', '.join(aliases)) if aliases else '(none)'}")
    click.echo(f"tags: {'' if tags else '(none)'}".rstrip())
    for key, value in tags.items():
        click.echo(f"  {shown(key)}={shown(value)}")
    if latest:
        click.echo(f"\nevaluations (the latest {len(latest)} of {len(evaluations)}, oldest first)")
        click.echo(plain_table(EVALUATION_HEADERS, map(evaluation_line, latest), right=(2,)))
    else:
        click.echo("\nevaluations: (none)")
    click.echo(f"\nfiles in {directory}")
    rows = []
    for f in files:
        if not f["exists"]:
            rows.append([f["name"], "MISSING", "", ""])
            continue
        note = f"{f['links']} link{'s' if f['links'] != 1 else ''}"
        if f["name"] == _core.PEFT_WEIGHTS_FILE:
            note += (
                f", the same file as {_core.WEIGHTS_FILE}"
                if f["same_file_as_weights"]
                else f", NOT the same file as {_core.WEIGHTS_FILE}"
            )
        rows.append([f["name"], human_bytes(f["size_bytes"]), f["mode"], note])
    click.echo(plain_table(("NAME", "SIZE", "MODE", "LINKS"), rows, right=(1,)))
    click.echo("\nlineage (parents above, children below)")
    click.echo(tree_text(tree))


@click.command()
@click.argument("task_type", metavar="TASK")
@click.option("--base-model", "-b", help="Only adapters of this base model.")
@json_option
@click.pass_obj
def best(settings: Settings, task_type: str, base_model: str | None, as_json: bool) -> None:
    """Show the best live adapter for a task type.

    The highest fitness score among evaluated, non-archived adapters (ties: the first stored);
    exit status 1 when there is none.

    \b
    Example:
      adapter-registry best bug-fix --base-model Qwen/Qwen2.5-Coder-7B --json
    """
    _check_task_type(task_type)
    registry = settings.registry()
    record = registry.query_best_for_task(task_type, base_model_id=base_model)
    if record is None:
        if as_json:
            emit_json(None)
        of = f" of base model {base_model}" if base_model is not None else ""
        unknown = _unknown_task_type(registry, task_type)
        raise CommandError(unknown or f"task type {task_type}: no evaluated live adapter{of}")
    if as_json:
        emit_json(record_json(record))
    else:
        click.echo(plain_table(LIST_HEADERS, [record_line(record)], right=LIST_NUMERIC))

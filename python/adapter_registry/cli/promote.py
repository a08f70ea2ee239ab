"""Naming adapters: ``alias`` (set, get, rm, ls, history), mutable names such as
``production`` with an append-only history of every move, and ``tag``, key/value labels.

An alias never points at an archived adapter: ``alias set`` refuses one, and ``archive``
refuses an adapter that an alias points at.
"""

from __future__ import annotations

from typing import Any

import click

from .. import validation
from ..tables import AliasMove
from .app import BadUsage, Settings
from .options import ADAPTER, pairs
from .output import (
    LIST_HEADERS,
    LIST_NUMERIC,
    emit_json,
    emit_list,
    json_option,
    jsonl_option,
    list_format,
    plain_table,
    record_json,
    record_line,
    shown,
)

__all__ = ["alias", "tag"]

#: The keys of one move in ``alias history --json``; ``set`` and ``rm`` print the same keys
#: but ``id`` and ``moved_at``.
MOVE_KEYS = ("id", "alias", "adapter_id", "moved_at", "moved_by")


def move_json(move: AliasMove) -> dict[str, Any]:
    return {key: getattr(move, key) for key in MOVE_KEYS}


@click.group()
def alias() -> None:
    """Name adapters: aliases such as production, and their history.

    An alias (lower-case letters, digits, '.', '_', '-'; never shaped like an id) points at
    one live adapter. Every move is kept, so a rollback is 'alias set' to an earlier adapter
    of 'alias history'.

    \b
    Example:
      adapter-registry alias set production 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --by alice
    """


@alias.command("set")
@click.argument("name")
@click.argument("adapter_id", metavar="ID", type=ADAPTER)
@click.option("--by", metavar="WHO", help="Who moved it, for the history.")
@json_option
@click.pass_obj
def alias_set(
    settings: Settings, name: str, adapter_id: str, by: str | None, as_json: bool
) -> None:
    """Point an alias at a live adapter, moving it if it is set.

    \b
    Example:
      adapter-registry alias set production 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --by alice
    """
    settings.registry().set_alias(name, adapter_id, by=by)
    if as_json:
        emit_json({"alias": name, "adapter_id": adapter_id, "moved_by": by})
    else:
        click.echo(shown(f"alias {name} -> {adapter_id}"))


@alias.command("get")
@click.argument("name")
@json_option
@click.pass_obj
def alias_get(settings: Settings, name: str, as_json: bool) -> None:
    """Show the adapter an alias points at; exit status 1 if it is not set.

    \b
    Example:
      adapter-registry alias get production --json
    """
    record = settings.registry().resolve_alias(name)
    if as_json:
        emit_json(record_json(record))
    else:
        click.echo(plain_table(LIST_HEADERS, [record_line(record)], right=LIST_NUMERIC))


@alias.command("rm")
@click.argument("name")
@click.option("--by", metavar="WHO", help="Who removed it, for the history.")
@json_option
@click.pass_obj
def alias_rm(settings: Settings, name: str, by: str | None, as_json: bool) -> None:
    """Remove an alias (its history stays); exit status 1 if it is not set.

    \b
    Example:
      adapter-registry alias rm staging --by alice
    """
    settings.registry().delete_alias(name, by=by)
    if as_json:
        emit_json({"alias": name, "adapter_id": None, "moved_by": by})
    else:
        click.echo(shown(f"alias {name} removed"))


@alias.command("ls")
@json_option
@jsonl_option
@click.pass_obj
def alias_ls(settings: Settings, as_json: bool, as_jsonl: bool) -> None:
    """List the aliases that are set, by name, and the adapter each points at.

    \b
    Example:
      adapter-registry alias ls --jsonl
    """
    fmt = list_format(as_json, as_jsonl)
    found = settings.registry().aliases()
    if fmt != "text":
        emit_list(({"alias": k, "adapter_id": v} for k, v in found.items()), fmt)
    elif found:
        rows = ([shown(k), shown(v)] for k, v in found.items())
        click.echo(plain_table(("ALIAS", "ID"), rows))
    else:
        click.echo("no aliases", err=True)


@alias.command("history")
@click.argument("name")
@json_option
@jsonl_option
@click.pass_obj
def alias_history(settings: Settings, name: str, as_json: bool, as_jsonl: bool) -> None:
    """List every move of an alias, oldest first ('-' where it was removed).

    \b
    Example:
      adapter-registry alias history production
    """
    fmt = list_format(as_json, as_jsonl)
    moves = settings.registry().alias_history(name)
    if fmt != "text":
        emit_list(map(move_json, moves), fmt)
    elif moves:
        rows = (
            [shown(m.moved_at[:19].replace("T", " ")), shown(m.adapter_id or "-"),
             shown(m.moved_by or "-")]
            for m in moves
        )  # fmt: skip
        click.echo(plain_table(("MOVED", "ID", "BY"), rows))
    else:
        click.echo(shown(f"alias {name} was never set"), err=True)


@click.command()
@click.argument("adapter_id", metavar="ID", type=ADAPTER)
@click.argument("assignments", metavar="[KEY=VALUE]...", nargs=-1)
@click.option("--rm", "removed", multiple=True, metavar="KEY", help="Remove this tag (repeatable).")
@json_option
@click.pass_obj
def tag(
    settings: Settings,
    adapter_id: str,
    assignments: tuple[str, ...],
    removed: tuple[str, ...],
    as_json: bool,
) -> None:
    """Set or remove an adapter's tags, then print them all.

    KEY=VALUE sets a tag (replacing that key's value); --rm KEY removes one. With neither,
    the tags are printed. Keys are named as aliases are; archived adapters take tags too.

    \b
    Example:
      adapter-registry tag 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b stage=canary team=search --rm wip
    """
    try:
        given = pairs(assignments)
    except click.UsageError as err:
        raise BadUsage(err.message) from err
    both = sorted(set(given) & set(removed))
    if both:
        raise BadUsage(f"tag {both[0]!r} is both set and removed")
    # Every key is checked before anything is written: setting and removing are two steps.
    for key in removed:
        validation.check_name("tag key", key)
    registry = settings.registry()
    if given:
        tags = registry.set_tags(adapter_id, given)
    if removed:
        tags = registry.delete_tags(adapter_id, list(removed))
    if not given and not removed:
        tags = registry.tags(adapter_id)
    if as_json:
        emit_json(tags)
    elif tags:
        for key, value in tags.items():
            click.echo(f"{shown(key)}={shown(value)}")
    else:
        click.echo("no tags", err=True)

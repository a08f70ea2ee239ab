"""Options read from the command line into the library's terms: ``ls``'s search filters, times
that must carry a zone, and ``KEY=VALUE`` pairs.

A value that cannot be read as given (a time without a zone, a pair without '=', an order by
no column) is bad usage, exit status 2, before anything is opened; a value the library refuses
(a non-finite bound, a badly named key) is its error, exit status 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import click

from ..record import COLUMNS
from ..validation import SOURCES

__all__ = [
    "ADAPTER",
    "AdapterRef",
    "aware_time",
    "order_by",
    "pairs",
    "search_arguments",
    "search_options",
]

F = TypeVar("F", bound=Callable[..., Any])

#: ``ls --sort``, kept from before ``--order-by``: each is an ``order_by``.
SORTS = {"created": "-created_at", "fitness": "-fitness_score"}


class AdapterRef(click.ParamType):  # type: ignore[type-arg]
    """An adapter as a person types it: a full id, an alias, or a unique id prefix of at least
    8 hex digits (``Settings.adapter_id``); the command gets the full id."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from .app import Settings

        settings = ctx.find_object(Settings) if ctx is not None else None
        if settings is None:  # no registry to ask (shell completion, --help)
            return str(value)
        return settings.adapter_id(str(value))


#: The type of every argument where a person names an adapter.
ADAPTER = AdapterRef()


def aware_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time with a zone (``Z`` or ``+02:00``); a naive one is refused, never
    guessed to be UTC or local."""
    if value is None:
        return None
    text = value.strip()
    try:
        # 'Z' is read by fromisoformat only from Python 3.11.
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time, e.g. 2026-01-31T12:00:00Z", ctx, param
        ) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise click.BadParameter(
            f"{value!r} has no time zone: give one, e.g. {text}Z (UTC) or {text}+02:00", ctx, param
        )
    return when


def pairs(values: Iterable[str], what: str = "tag") -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict (split at the first '='); a key given twice, or an
    argument without '=', is a click.UsageError. The library checks the keys and values."""
    found: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"{what} {item!r} is not KEY=VALUE")
        if key in found:
            raise click.UsageError(f"{what} key {key!r} is given twice")
        found[key] = value
    return found


def _pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    try:
        return pairs(values)
    except click.UsageError as err:
        raise click.BadParameter(err.message, ctx, param) from err


def order_by(value: str) -> str:
    """A column name, ``-`` in front for descending (click.UsageError otherwise)."""
    if value.removeprefix("-") not in COLUMNS:
        raise click.UsageError(
            f"--order-by {value!r} names no column; one of {', '.join(COLUMNS)}, with '-' in "
            "front for descending"
        )
    return value


_OPTIONS = [
    click.option("--task-type", "-t", help="Only this task type."),
    click.option("--base-model", "-b", "base_model_id", help="Only adapters of this base model."),
    click.option("--source", type=click.Choice(sorted(SOURCES)), help="Only this source."),
    click.option("--session-id", help="Only from this training session."),
    click.option("--agent-id", help="Only from this agent."),
    click.option("--training-task-hash", help="Only with this deduplication key."),
    click.option(
        "--children-of", "parent_id", metavar="ID", help="Only the children of this adapter."
    ),
    click.option("--generation", type=click.IntRange(min=0), help="Only of this generation."),
    click.option("--min-fitness", type=float, help="Fitness at least this."),
    click.option("--max-fitness", type=float, help="Fitness at most this."),
    click.option("--min-pass-rate", type=float, help="Pass rate at least this."),
    click.option(
        "--evaluated/--not-evaluated",
        default=None,
        help="Only those with a fitness score, or only those without [default: both].",
    ),
    click.option(
        "--tag",
        "tags",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_pairs,
        help="Only those with this tag (repeatable: every one must match).",
    ),
    click.option(
        "--created-after",
        metavar="TIME",
        callback=aware_time,
        help="Stored after this ISO 8601 time, with its zone (2026-01-31T12:00:00Z).",
    ),
    click.option(
        "--created-before",
        metavar="TIME",
        callback=aware_time,
        help="Stored before this ISO 8601 time, with its zone.",
    ),
    click.option("--include-archived", "-a", is_flag=True, help="Archived adapters too."),
    click.option(
        "--sort",
        type=click.Choice(list(SORTS)),
        help="created (the default): newest first, as --order-by -created_at; fitness: highest "
        "first, unevaluated last, as --order-by -fitness_score.",
    ),
    click.option(
        "--order-by",
        metavar="[-]COLUMN",
        help="Order by any column, '-' in front for descending; NULLs last, ties oldest first.",
    ),
    click.option("--limit", "-n", type=click.IntRange(min=1), help="At most N adapters."),
    click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip the first N."),
]


def search_options(command: F) -> F:
    """Every filter of ``registry.search`` as an option, and ``--sort``/``--order-by``."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def search_arguments(options: dict[str, Any]) -> dict[str, Any]:
    """The options of ``search_options`` as ``registry.search`` keyword arguments."""
    found = dict(options)
    sort, order = found.pop("sort"), found.pop("order_by")
    if sort is not None and order is not None:
        raise click.UsageError("give --sort or --order-by, not both")
    found["order_by"] = order_by(order) if order is not None else SORTS[sort or "created"]
    found["tags"] = found["tags"] or None
    return found

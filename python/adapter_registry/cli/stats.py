"""``stats``: how many adapters and bytes, by task type and by base model."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from ..record import AdapterRecord
from .app import Settings
from .output import console, emit_json, human_bytes, json_option, number, shown

__all__ = ["stats", "tally"]

#: The keys of every group in --json output, and of the totals.
GROUP_KEYS = ("adapters", "live", "archived", "evaluated", "not_evaluated", "bytes", "best_fitness")


def tally(records: Iterable[AdapterRecord]) -> dict[str, Any]:
    """Counts of a group of adapters. Evaluated: it has a fitness score. best_fitness: the
    highest score of a live one (what ``best`` ranks by), or None."""
    group: dict[str, Any] = dict.fromkeys(GROUP_KEYS, 0)
    group["best_fitness"] = None
    for r in records:
        group["adapters"] += 1
        group["archived" if r.is_archived else "live"] += 1
        group["evaluated" if r.fitness_score is not None else "not_evaluated"] += 1
        group["bytes"] += r.file_size_bytes
        if not r.is_archived and r.fitness_score is not None:
            top = group["best_fitness"]
            group["best_fitness"] = r.fitness_score if top is None else max(top, r.fitness_score)
    return group


def _grouped(records: list[AdapterRecord], field: str) -> dict[str, dict[str, Any]]:
    keys = sorted({getattr(r, field) for r in records})
    return {k: tally(r for r in records if getattr(r, field) == k) for k in keys}


@click.command()
@json_option
@click.pass_obj
def stats(settings: Settings, as_json: bool) -> None:
    """Count adapters and bytes by task type and by base model.

    Each group says how many are live, archived, evaluated and not, and its best fitness.

    \b
    Example:
      adapter-registry stats --json
    """
    records = settings.registry().list_all(include_archived=True)
    result = {
        **tally(records),
        "by_task_type": _grouped(records, "task_type"),
        "by_base_model": _grouped(records, "base_model_id"),
    }
    if as_json:
        emit_json(result)
        return
    from rich.markup import escape
    from rich.table import Table

    out = console()
    for title, label, groups in (
        ("by task type", "task type", result["by_task_type"]),
        ("by base model", "base model", result["by_base_model"]),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column(label)
        for header in ("adapters", "live", "archived", "evaluated", "not evaluated", "size"):
            table.add_column(header, justify="right")
        table.add_column("best fitness", justify="right")
        rows = [*groups.items(), ("total", result)]
        for i, (name, g) in enumerate(rows):
            table.add_row(
                escape(shown(name)),
                *(str(g[k]) for k in ("adapters", "live", "archived", "evaluated")),
                str(g["not_evaluated"]),
                human_bytes(g["bytes"]),
                number(g["best_fitness"]),
                end_section=i == len(rows) - 2,
            )
        out.print(table)

"""``eval add`` and ``eval ls``: an adapter's append-only history of measurements.

A recorded measurement never changes the fitness or pass rate that ranking uses; ``fitness``
sets those, and appends them to the same history.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .app import BadUsage, Settings
from .options import ADAPTER
from .output import (
    EVALUATION_HEADERS,
    emit_json,
    emit_list,
    evaluation_json,
    evaluation_line,
    json_option,
    jsonl_option,
    list_format,
    plain_table,
    shown,
)

__all__ = ["eval_"]


@click.group("eval")
def eval_() -> None:
    """Record measurements of an adapter, and list its history.

    The history is append-only: who measured what, when, on which evaluation set. 'fitness'
    appends there too (metrics fitness_score and pass_rate).

    \b
    Example:
      adapter-registry eval add 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b humaneval 0.62 --evaluator ci
    """


def _details(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as err:
        raise BadUsage(f"--details is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise BadUsage(f"--details must be a JSON object, not {type(value).__name__}")
    return value


# A negative VALUE such as -0.5 would otherwise be read as an unknown option.
@eval_.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("adapter_id", metavar="ID", type=ADAPTER)
@click.argument("metric")
@click.argument("value", type=float)
@click.option("--evaluator", help="Who or what measured it.")
@click.option("--eval-set-hash", help="Which evaluation set.")
@click.option("--details", metavar="JSON", help="A JSON object of at most 64 KB.")
@json_option
@click.pass_obj
def eval_add(
    settings: Settings,
    adapter_id: str,
    metric: str,
    value: float,
    evaluator: str | None,
    eval_set_hash: str | None,
    details: str | None,
    as_json: bool,
) -> None:
    """Record one measurement of an adapter (archived ones too).

    It is appended to the adapter's history; the fitness and pass rate used for ranking do
    not change ('fitness' sets those).

    \b
    Example:
      adapter-registry eval add 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b humaneval 0.62 \\
          --evaluator ci --eval-set-hash 9f8e7d --details '{"n": 164}'
    """
    parsed = _details(details)
    evaluation = settings.registry().record_evaluation(
        adapter_id, metric, value, evaluator=evaluator, eval_set_hash=eval_set_hash, details=parsed
    )
    if as_json:
        emit_json(evaluation_json(evaluation))
    else:
        click.echo(
            shown(f"recorded {metric} {value:.6g} for {adapter_id} (evaluation {evaluation.id})")
        )


@eval_.command("ls")
@click.argument("adapter_id", metavar="ID", type=ADAPTER)
@click.option("--metric", help="Only this metric.")
@json_option
@jsonl_option
@click.pass_obj
def eval_ls(
    settings: Settings, adapter_id: str, metric: str | None, as_json: bool, as_jsonl: bool
) -> None:
    """List an adapter's evaluation history, oldest first.

    \b
    Example:
      adapter-registry eval ls 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --metric fitness_score --jsonl
    """
    fmt = list_format(as_json, as_jsonl)
    evaluations = settings.registry().evaluations(adapter_id, metric=metric)
    if fmt != "text":
        emit_list(map(evaluation_json, evaluations), fmt)
    elif evaluations:
        rows = map(evaluation_line, evaluations)
        click.echo(plain_table(EVALUATION_HEADERS, rows, right=(2,)))
    else:
        click.echo("no evaluations", err=True)

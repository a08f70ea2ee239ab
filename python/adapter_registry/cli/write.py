"""Writing commands: ``store`` (the only way weights get in), ``fitness``, ``archive`` and
``unarchive``."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import click

from ..errors import AdapterNotFoundError, FilesNotStoredWarning, InvalidAdapterError
from ..record import AdapterRecord
from ..registry import AdapterRegistry
from ..validation import SOURCES
from .app import BadUsage, CommandError, Settings
from .options import ADAPTER
from .output import emit_json, human_bytes, json_option, number, record_json, shown

__all__ = ["archive", "fitness", "store", "unarchive"]


def _report(record: AdapterRecord, verb: str, as_json: bool) -> None:
    if as_json:
        emit_json(record_json(record))
        return
    click.echo(
        shown(
            f"{verb} {record.id}: {record.task_type}, version {record.version}, generation "
            f"{record.generation}, fitness {number(record.fitness_score)}, pass rate "
            f"{number(record.pass_rate, 2)}{', archived' if record.is_archived else ''}"
        )
    )


def _after_interrupt(
    registry: AdapterRegistry, adapter_id: str, interrupt: KeyboardInterrupt
) -> AdapterRecord:
    """What an interrupted store left, said as it is: stored (then reported as stored), or
    published without its row, or nothing at all."""
    try:
        record = registry.retrieve_by_id(adapter_id)
    except AdapterNotFoundError:
        if (registry.root / adapter_id).exists():
            raise CommandError(
                f"interrupted after adapter {adapter_id} was published, before its row was "
                "written: 'adapter-registry recover' registers it"
            ) from interrupt
        raise Interrupted("interrupted: nothing was stored") from interrupt
    click.echo(f"interrupted, but the store of {adapter_id} had completed", err=True)
    return record


class Interrupted(CommandError):
    """Stopped by SIGINT or SIGTERM with nothing done; the shell's status for SIGINT."""

    exit_code = 130


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path),
    help="The adapter_config.json of a .safetensors file (a directory holds its own).",
)
@click.option("--task-type", "-t", required=True, help="Kebab-case task type, e.g. bug-fix.")
@click.option("--source", "-s", required=True, type=click.Choice(sorted(SOURCES)))
@click.option("--session-id", required=True, help="The training session that made it.")
@click.option(
    "--parent", "parents", multiple=True, metavar="ID", help="A parent adapter (repeatable)."
)
@click.option("--agent-id", help="The agent that trained it.")
@click.option("--training-task-hash", help="Deduplication key of the training task.")
@click.option("--base-model", help="Base model id, where the config does not name one.")
@json_option
@click.pass_obj
def store(
    settings: Settings,
    path: Path,
    config: Path | None,
    task_type: str,
    source: str,
    session_id: str,
    parents: tuple[str, ...],
    agent_id: str | None,
    training_task_hash: str | None,
    base_model: str | None,
    as_json: bool,
) -> None:
    """Store an adapter: a PEFT directory or a .safetensors file.

    A .safetensors file needs its adapter_config.json (--config); a directory holds its own.
    The bytes are hashed and validated as they are copied, once; bad input writes nothing.

    \b
    Example:
      adapter-registry store ./out/checkpoint-500 --task-type bug-fix --source distillation \\
          --session-id run-42 --agent-id agent-3 --parent 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
    """
    path = path.expanduser()
    if not path.exists():
        raise CommandError(f"{path}: no such file or directory")
    if not path.is_dir() and config is None:
        raise BadUsage(
            f"{path} is a file: give its adapter_config.json with --config, "
            "or store the PEFT adapter directory"
        )
    registry = settings.registry(create=True)
    # The id is chosen here so that an error about the input can name the input instead.
    adapter_id = str(uuid.uuid4())
    left_out: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as left_out:
            warnings.simplefilter("always", FilesNotStoredWarning)
            record = registry.store(
                path,
                config=config,
                task_type=task_type,
                source=source,
                session_id=session_id,
                base_model_id=base_model,
                adapter_id=adapter_id,
                parent_ids=parents,
                training_task_hash=training_task_hash,
                agent_id=agent_id,
            )
    except InvalidAdapterError as err:
        if settings.debug:
            raise
        message = str(err).removeprefix(f"adapter {adapter_id}: ")
        raise CommandError(message if str(path) in message else f"{path}: {message}") from err
    except KeyboardInterrupt as err:
        record = _after_interrupt(registry, adapter_id, err)
    for note in left_out:  # on stderr beside JSON, so stdout stays one document
        click.echo(shown(f"note: {note.message}"), err=as_json)
    if as_json:
        emit_json(record_json(record))
    else:
        click.echo(
            shown(
                f"stored {record.id}: {record.task_type}, {record.base_model_id}, "
                f"rank {record.rank}, version {record.version}, generation {record.generation}, "
                f"{human_bytes(record.file_size_bytes)}, sha256 {record.file_hash}"
            )
        )


@click.command()
@click.argument("adapter_id", metavar="ID", type=ADAPTER)
@click.option("--score", type=float, help="The fitness score (any finite number).")
@click.option("--pass-rate", type=float, help="The pass rate, 0 to 1.")
@click.option("--evaluator", help="Who or what evaluated it, for the history.")
@click.option("--eval-set-hash", help="Which evaluation set, for the history.")
@json_option
@click.pass_obj
def fitness(
    settings: Settings,
    adapter_id: str,
    score: float | None,
    pass_rate: float | None,
    evaluator: str | None,
    eval_set_hash: str | None,
    as_json: bool,
) -> None:
    """Set the fitness and pass rate that rank an adapter.

    Give either or both. Each is also appended to the adapter's evaluation history (metrics
    fitness_score and pass_rate, see 'eval ls'), with the evaluator and evaluation set if given.

    \b
    Example:
      adapter-registry fitness 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --score 0.83 --pass-rate 0.71 \\
          --evaluator harness-2 --eval-set-hash 9f8e7d
    """
    if score is None and pass_rate is None:
        raise BadUsage("give --score, --pass-rate or both")
    record = settings.registry().update_fitness(
        adapter_id,
        fitness_score=score,
        pass_rate=pass_rate,
        evaluator=evaluator,
        eval_set_hash=eval_set_hash,
    )
    _report(record, "evaluated", as_json)


@click.command()
@click.argument("adapter_id", metavar="ID", type=ADAPTER)
@json_option
@click.pass_obj
def archive(settings: Settings, adapter_id: str, as_json: bool) -> None:
    """Archive an adapter: out of rankings, its files kept.

    It leaves rankings and default listings; its files, lineage, tags and evaluations stay.
    An adapter that an alias points at is refused: move or remove the alias first. Archiving
    twice is harmless; 'unarchive' undoes it.

    \b
    Example:
      adapter-registry archive 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
    """
    _report(settings.registry().archive(adapter_id), "archived", as_json)


@click.command()
@click.argument("adapter_id", metavar="ID", type=ADAPTER)
@json_option
@click.pass_obj
def unarchive(settings: Settings, adapter_id: str, as_json: bool) -> None:
    """Unarchive an adapter: back into rankings and listings.

    Unarchiving a live adapter is harmless.

    \b
    Example:
      adapter-registry unarchive 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
    """
    _report(settings.registry().unarchive(adapter_id), "unarchived", as_json)

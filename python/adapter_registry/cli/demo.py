"""``demo``: the README's first command, a small swarm played for real (see ``..demo``)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import click

from .app import CommandError, Settings

__all__ = ["demo"]


def _fresh_home(home: Path | None) -> tuple[Path, bool]:
    """The demo's home and whether it is temporary; a given one must be new or empty."""
    if home is None:
        return Path(tempfile.mkdtemp(prefix="adapter-registry-demo-")).resolve(), True
    home = home.expanduser().resolve()
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise CommandError(
            f"demo home {home} is not empty: the demo needs a fresh one (it tampers with a file)"
        )
    home.mkdir(parents=True, exist_ok=True)
    return home, False


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="A new or empty directory to play in, kept afterwards [default: a temporary one, "
    "removed afterwards]. RUNE_HOME is never used.",
)
@click.option(
    "--agents",
    "-n",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Agent processes.",
)
@click.option(
    "--adapters-per-agent",
    "-k",
    type=click.IntRange(1, 10_000),
    default=6,
    show_default=True,
    help="Adapters each agent stores.",
)
@click.option(
    "--size-mb",
    "-s",
    type=click.FloatRange(0, 4096, min_open=True),
    default=1.0,
    show_default=True,
    help="About how big each adapter is (at least ~0.2 MB).",
)
@click.option(
    "--torch/--no-torch",
    "torch_step",
    default=True,
    show_default=True,
    help="The serving step, where the torch extra is installed.",
)
@click.option("--keep", is_flag=True, help="Keep the temporary home.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the summary as JSON on stdout (the narrative goes to stderr).",
)
@click.pass_obj
def demo(
    settings: Settings,
    home: Path | None,
    agents: int,
    adapters_per_agent: int,
    size_mb: float,
    torch_step: bool,
    keep: bool,
    as_json: bool,
) -> None:
    """Play a small training swarm end to end: the first thing to run.

    Agent processes store real LoRA adapters (some evolved from others), evaluators score
    them, the best per task is picked, every byte is verified, one flipped bit is caught, and
    with the torch extra the best adapter of a tiny Qwen2 is loaded and run. It ends with a
    table of what it did and how fast, and exits 0 when everything behaved as expected.

    \b
    Example:
      adapter-registry demo --agents 8 --adapters-per-agent 10 --size-mb 4
    """
    from .. import demo as play

    if home is None and settings.home_from_command_line:
        home = settings.home
    where, temporary = _fresh_home(home)
    stream = sys.stderr if as_json else sys.stdout
    try:
        result = play.run(where, agents, adapters_per_agent, size_mb, torch_step, stream)
    finally:
        if temporary and not keep:
            shutil.rmtree(where, ignore_errors=True)
            print(f"\nremoved {where}", file=stream)
        else:
            from .ui import dashboard_command

            print(f"\nkept {where}", file=stream)
            print(f"open it in the dashboard: {dashboard_command(str(where))}", file=stream)
    if as_json:
        click.echo(json.dumps({**result.summary, "kept": not temporary or keep}, indent=2))
    if not result.ok:
        raise CommandError(f"the demo saw {len(result.problems)} unexpected result(s)")

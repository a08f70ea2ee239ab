"""The main job: a small training swarm played for real against a fresh registry, in seconds.

    adapter-registry demo [--home DIR] [--agents N] [--adapters-per-agent K] [--size-mb S]
    python -m adapter_registry.demo [the same options]

N agent processes store K LoRA adapters each: real PEFT safetensors files with the tensor
layout of a Qwen2-style model (A/B pairs for q/k/v/o of every layer), built with the standard
library (``_lora_files``), across three task types; every second adapter of an agent is evolved
from the swarm's latest of its task (now and then from two: a crossover). Evaluator processes
set fitness; the demo archives one leader, ranks the best per task, draws a lineage, verifies
every byte with a progress bar, flips one bit of the best adapter to show the check catching
it, and runs recovery. Where the torch extra is installed it also puts a LoRA on a tiny 2-layer
Qwen2 (built from its config: nothing is downloaded), stores it with PEFT's own
save_pretrained, picks it as the best for that base model, loads it back verified and runs a
forward pass. It ends with a table of what it did and how fast. Exit status 0 when everything
behaved as expected.

One job per module: ``swarm`` (the agent and evaluator processes), ``steps`` (rank, verify,
tamper, recover), ``catalog`` (search, aliases, tags and evaluations; the trust boundary),
``dashboard`` (the read-only web dashboard, served for a moment), ``identity`` (a copied
home checks its own files; a mismatched root and database refused), ``bundles`` (export
with ancestors, import into a second home, idempotent), ``names`` (serving
by name: resolve, the server flags, a tampered file refused), ``serve`` (the torch
step), ``report`` (the narrative and the table).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..registry import AdapterRegistry
from . import catalog, steps
from .bundles import bundles
from .dashboard import dashboard
from .identity import identity
from .names import names
from .report import DemoResult, Say, table
from .serve import TINY_BASE, serve
from .swarm import BASE_MODEL, CONFIG, LAYERS, RANK, TASKS, Swarm, lora_adapter, store_all

__all__ = [
    "BASE_MODEL",
    "CONFIG",
    "TASKS",
    "TINY_BASE",
    "DemoResult",
    "lora_adapter",
    "main",
    "run",
]


def run(
    home: Path,
    agents: int,
    per_agent: int,
    size_mb: float,
    torch_step: bool,
    stream: TextIO,
) -> DemoResult:
    """Play the swarm in ``home`` (fresh), narrating on ``stream``."""
    say, result = Say(stream), DemoResult()
    swarm = Swarm.in_home(home, agents, per_agent, size_mb)
    say(f"adapter-registry {__version__} demo in {home}")
    say(f"   adapters in {swarm.root}\n   metadata in {swarm.db_url}")
    say.title(
        f"swarm: {agents} agent processes store {per_agent} LoRA adapters each for {BASE_MODEL} "
        f"(q/k/v/o A/B of {LAYERS} layers, r={RANK}, hidden {swarm.hidden}, "
        f"k/v out {swarm.kv_out})"
    )
    store_s = store_all(swarm)
    summary: dict[str, Any] = {}
    with AdapterRegistry(root=swarm.root, db_url=swarm.db_url) as registry:
        play = steps.Play(swarm, registry, say, result)
        summary.update(steps.stored(play, store_s))
        for step in (
            steps.evaluate, steps.rank, catalog.promote, steps.verify, steps.tamper,
            steps.recover, identity, bundles, catalog.refuse, names, dashboard,
        ):  # fmt: skip
            summary.update(step(play))
        summary.update(serve(play, torch_step))
    result.summary = {
        "ok": result.ok,
        "problems": result.problems,
        "home": str(home),
        "agents": agents,
        "adapters_per_agent": per_agent,
        **summary,
    }
    table(result, stream)
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m adapter_registry.demo [options]``: the same as ``adapter-registry demo``."""
    from ..cli import main as cli_main

    cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])

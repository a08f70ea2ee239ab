"""The demo's catalog and trust steps: finding and promoting adapters (search, aliases with a
rollback, tags, the evaluation history), and the trust boundary (input that cannot be stored,
and a planted directory whose record lies, refused with nothing written)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

from ..errors import AdapterRegistryError
from .steps import Play
from .swarm import CONFIG, TASKS, lora_adapter


def promote(play: Play) -> dict[str, Any]:
    """Search as an engineer asks, promote the best to production, evaluate it, roll back."""
    from ..cli.output import number

    registry, say = play.registry, play.say
    say.title("promote: search, alias 'production', tags, evaluation history, rollback")
    agent = play.stored[0].agent_id
    found = registry.search(agent_id=agent, min_fitness=0.5, order_by="-fitness_score")
    say.indented(f"search(agent_id={agent!r}, min_fitness=0.5): {len(found)} adapters")
    top = registry.search(order_by="-fitness_score", limit=3)
    for r in top:
        say.indented(f"  top: {r.id}  {r.task_type:<13} fitness {number(r.fitness_score)}")
    if len(top) < 2:
        say.indented("too few live adapters to promote one over another")
        return {"promote": {"searched": len(found), "production": None, "alias_moves": 0,
                            "evaluations": 0}}  # fmt: skip
    champion, challenger = top[0], top[-1]
    registry.set_alias("production", challenger.id, by="demo")
    registry.set_alias("production", champion.id, by="demo")
    registry.set_tags(champion.id, {"stage": "production", "team": "demo"})
    registry.record_evaluation(
        champion.id, "pass@1", 0.61, evaluator="demo-ci", eval_set_hash="humaneval-164",
        details={"problems": 164},
    )  # fmt: skip
    registry.update_fitness(champion.id, champion.fitness_score, evaluator="demo-judge")
    history = registry.alias_history("production")
    registry.set_alias("production", history[0].adapter_id or challenger.id, by="rollback")
    rolled_back = registry.resolve_alias("production").id
    say.indented(
        f"production: {challenger.id} -> {champion.id} -> rolled back to {rolled_back} "
        f"({len(registry.alias_history('production'))} moves kept)"
    )
    evaluations = registry.evaluations(champion.id)
    say.indented(
        f"{champion.id}: tags {registry.tags(champion.id)}, "
        f"{len(evaluations)} evaluations ({', '.join(e.metric for e in evaluations)})"
    )
    play.expect(rolled_back == challenger.id, "the rollback did not move production back")
    play.expect(
        [r.id for r in registry.search(tags={"stage": "production"})] == [champion.id],
        "search by tag did not find the tagged adapter",
    )
    return {
        "promote": {
            "searched": len(found),
            "production": rolled_back,
            "alias_moves": len(registry.alias_history("production")),
            "evaluations": len(evaluations),
        }
    }


def refuse(play: Play) -> dict[str, Any]:
    """Input that cannot be stored or shown, and a directory planted with a lying record."""
    registry, say = play.registry, play.say
    say.title("refuse: the trust boundary (nothing is written for any of these)")
    weights = lora_adapter(play.swarm.hidden, play.swarm.kv_out, random.Random(7))
    refused = 0
    bad_inputs: tuple[tuple[str, dict[str, Any]], ...] = (
        ("a lone surrogate in session_id", {"session_id": "run-\ud800"}),
        ("a terminal escape in agent_id", {"agent_id": "agent-\x1b[2J"}),
        ("fitness 10**400", {"fitness_score": 10**400}),
    )
    for what, overrides in bad_inputs:
        before = sorted(os.listdir(play.swarm.root))
        try:
            registry.store(weights, config=CONFIG, task_type=TASKS[0], source="manual",
                           **{"session_id": "demo", **overrides})  # fmt: skip
        except AdapterRegistryError as err:
            refused += sorted(os.listdir(play.swarm.root)) == before
            say.indented(f"{what}: {type(err).__name__}")
    victim, root = play.stored[-1], Path(play.swarm.root)
    planted = root / "0badc0de-0000-4000-8000-000000000000"
    shutil.copytree(root / victim.id, planted)
    record = {**victim.to_dict(), "id": planted.name, "rank": 999,
              "file_path": str(planted / "adapter.safetensors")}  # fmt: skip
    (planted / ".record.json").chmod(0o644)
    (planted / ".record.json").write_text(json.dumps(record))
    report = registry.recover()
    reasons = dict(report.unregistered)
    say.indented(f"planted a copy whose record claims rank 999: {reasons.get(planted.name)}")
    shutil.rmtree(planted)
    play.expect(refused == 3, f"{3 - refused} bad inputs were not refused cleanly")
    play.expect(planted.name in reasons, "recover() registered a lying record")
    return {"refuse": {"inputs_refused": refused, "planted_refused": planted.name in reasons}}

"""The demo's steps after the swarm has stored its adapters, each narrated and each returning
its part of the summary: what was stored, evaluate, rank, verify, tamper, recover."""

from __future__ import annotations

import importlib.util
import os
import statistics
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..record import AdapterRecord
from ..registry import AdapterRegistry
from .report import DemoResult, Say
from .swarm import MB, TASKS, Swarm, evaluate_all


def first_missing(*modules: str) -> str | None:
    """The first of ``modules`` that cannot be found (a step that needs an extra says which
    is missing), or None."""
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder that raises is a module not to be had
            found = False
        if not found:
            return name
    return None


@dataclass
class Play:
    """What the steps share: the swarm, its registry, the narrative and the result so far."""

    swarm: Swarm
    registry: AdapterRegistry
    say: Say
    result: DemoResult
    stored: list[AdapterRecord] = field(default_factory=list)
    best: dict[str, AdapterRecord | None] = field(default_factory=dict)

    def expect(self, holds: bool, problem: str) -> None:
        """Note ``problem`` unless what the demo expected ``holds``."""
        if not holds:
            self.result.problems.append(problem)


def stored(play: Play, store_s: float) -> dict[str, Any]:
    """What the agents stored, per task, and whether it is all there."""
    from ..cli.output import human_bytes

    say, swarm = play.say, play.swarm
    play.stored = stored = play.registry.list_all()
    total_bytes = sum(r.file_size_bytes for r in stored)
    evolved = [r for r in stored if r.parents]
    for task in TASKS:
        of_task = [r for r in stored if r.task_type == task]
        children = sum(1 for r in of_task if r.parents)
        say.indented(f"{task:<13} {len(of_task):>3} stored, {children} evolved from a parent")
    crossovers = sum(1 for r in stored if len(r.parents) > 1)
    say.indented(
        f"{len(stored)} adapters, {human_bytes(total_bytes)} in {store_s:.2f} s of storing "
        f"({crossovers} crossovers with two parents); every file hashed and validated as it "
        "was copied"
    )
    expected = swarm.agents * swarm.per_agent
    expected_evolved = swarm.agents * (swarm.per_agent // 2)
    play.expect(len(stored) == expected, f"{len(stored)} adapters stored, not {expected}")
    play.expect(len(evolved) == expected_evolved, f"{len(evolved)} evolved, not {expected_evolved}")
    store_rate = len(stored) / store_s if store_s else 0.0
    return {
        "store": {
            "adapters": len(stored),
            "evolved": len(evolved),
            "crossovers": crossovers,
            "bytes": total_bytes,
            "seconds": round(store_s, 6),
            "adapters_per_s": round(store_rate, 3),
            "mb_per_s": round(total_bytes / MB / store_s, 3) if store_s else 0.0,
        }
    }


def evaluate(play: Play) -> dict[str, Any]:
    """Evaluator processes set fitness and pass rate of every adapter."""
    evaluators = min(2, play.swarm.agents)
    play.say.title(f"evaluate: {evaluators} evaluator processes set fitness and pass rate")
    ids = [r.id for r in play.stored]
    evaluate_s = evaluate_all(play.swarm, ids, evaluators)
    unevaluated = [r.id for r in play.registry.list_all() if r.fitness_score is None]
    play.say.indented(f"{len(ids) - len(unevaluated)} evaluated in {evaluate_s:.2f} s")
    play.expect(not unevaluated, f"{len(unevaluated)} adapters left unevaluated")
    return {
        "evaluate": {
            "adapters": len(ids) - len(unevaluated),
            "evaluators": evaluators,
            "seconds": round(evaluate_s, 6),
        }
    }


def rank(play: Play) -> dict[str, Any]:
    """Archive the leader of one task, rank the best per task, time the query, draw a lineage."""
    from ..cli.output import number

    registry, say = play.registry, play.say
    say.title("rank: the best live adapter per task, after archiving one leader")
    leader = registry.query_best_for_task(TASKS[-1])
    if leader is not None:
        registry.archive(leader.id)
        say.indented(
            f"archived {leader.id} (the best {TASKS[-1]}, fitness "
            f"{number(leader.fitness_score)}): out of the ranking, on disk and in lineage"
        )
    play.best = {task: registry.query_best_for_task(task) for task in TASKS}
    say.indented(_best_table(play, leader))
    query_us = _query_best_us(registry)
    say.indented(f"query_best_for_task: {query_us:.0f} us median over 300 calls")
    _lineage_of_the_deepest(play)
    return {
        "archived": leader.id if leader is not None else None,
        "best": {task: (r.id if r is not None else None) for task, r in play.best.items()},
        "query_best_us": round(query_us, 3),
    }


def _best_table(play: Play, leader: AdapterRecord | None) -> str:
    """The best adapter of each task as a table (an archived one must not be among them)."""
    from ..cli.output import number, plain_table

    rows = []
    for task, record in play.best.items():
        if record is None:
            rows.append([task, "(none)", "-", "-", "-", "-", "-", "-"])
            continue
        ancestors = len(play.registry.lineage(record.id))
        rows.append([
            task, record.id, number(record.fitness_score), number(record.pass_rate, 2),
            str(record.version), str(record.generation), str(ancestors), record.agent_id or "-",
        ])  # fmt: skip
        play.expect(leader is None or record.id != leader.id, "an archived adapter was ranked")
    header = ("TASK", "BEST", "FITNESS", "PASS", "VER", "GEN", "ANCESTORS", "AGENT")
    return plain_table(header, rows, right=(2, 3, 4, 5, 6))


def _query_best_us(registry: AdapterRegistry) -> float:
    """The median microseconds of 300 query_best_for_task calls, over the tasks in turn."""
    timings = []
    for i in range(300):
        started_ns = time.perf_counter_ns()
        registry.query_best_for_task(TASKS[i % len(TASKS)])
        timings.append(time.perf_counter_ns() - started_ns)
    return statistics.median(timings) / 1000


def _lineage_of_the_deepest(play: Play) -> None:
    from ..cli.lineage import lineage_json, tree_text

    deepest = max(
        play.registry.list_all(), key=lambda r: (r.generation or 0, len(r.parents), r.created_at)
    )
    play.say.indented(
        f"lineage of the most evolved adapter (adapter-registry lineage {deepest.id}):"
    )
    play.say.indented(tree_text(lineage_json(play.registry, deepest)))


def verify(play: Play) -> dict[str, Any]:
    """Verify every adapter against its record, with a progress bar."""
    from ..cli.integrity import verify_records

    play.say.title("verify every adapter against its record")
    verified = verify_records(play.registry, None)
    play.say.indented(verified.summary())
    for report in verified.reports:
        play.expect(report.ok, f"verify: {report.adapter_id} {report.status}")
    seconds = verified.seconds
    return {
        "verify": {
            "adapters": len(verified.reports),
            "ok": verified.counts["ok"],
            "files": verified.files,
            "bytes": verified.bytes,
            "seconds": round(seconds, 6),
            "adapters_per_s": round(len(verified.reports) / seconds, 3) if seconds else 0.0,
            "mb_per_s": round(verified.bytes / MB / seconds, 3) if seconds else 0.0,
        }
    }


def flip_bit(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


def tamper(play: Play) -> dict[str, Any]:
    """Flip one bit in the middle of the tensor data of the best bug-fix adapter (as root, or an
    attacker with write access, could), show verify catching it, and put the bit back."""
    victim = play.best.get("bug-fix") or play.stored[0]
    path = victim.file_path
    with open(path, "rb") as f:
        data_start = 8 + struct.unpack("<Q", f.read(8))[0]
    offset = data_start + (victim.file_size_bytes - data_start) // 2
    mode = os.stat(path).st_mode & 0o777
    play.say.title(
        f"tamper: chmod {mode:o} -> 644 and flip one bit of byte {offset} of {Path(path).name} "
        f"of {victim.id} (the best {victim.task_type})"
    )
    os.chmod(path, 0o644)
    flip_bit(path, offset)
    try:
        report = play.registry.verify(victim.id)
        play.say.indented(f"verify: {report.status} (adapter-registry verify exits 1)")
        for problem in report.problems:
            play.say.indented(f"  {problem}")
    finally:
        flip_bit(path, offset)
        os.chmod(path, mode)
    caught = report.status == "mismatch"
    play.expect(caught, "the tampered file was not reported as a mismatch")
    restored = play.registry.verify(victim.id)
    play.say.indented(f"bit flipped back, chmod {mode:o}: verify: {restored.status}")
    play.expect(restored.ok, "the restored file does not verify")
    return {
        "tamper": {
            "adapter": victim.id,
            "offset": offset,
            "status": report.status,
            "caught": caught,
            "restored": restored.ok,
        }
    }


def recover(play: Play) -> dict[str, Any]:
    """Recovery after a crash; after a clean run it has nothing to do."""
    play.say.title("recover: after a crash it registers published adapters; here, nothing to do")
    recovery = play.registry.recover()
    play.say.indented("clean" if recovery.clean else f"NOT CLEAN: {recovery}")
    play.expect(recovery.clean, "recover() found problems")
    return {"recover": {"clean": recovery.clean}}

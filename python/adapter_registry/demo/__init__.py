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
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import multiprocessing
import os
import random
import statistics
import struct
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from .._lora_files import QWEN_7B, lora_bytes, lora_config, model_shape
from ..record import AdapterRecord
from ..registry import AdapterRegistry

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

TASKS = ("bug-fix", "feature-impl", "refactor")
BASE_MODEL = QWEN_7B
#: The base model of the torch step: a 2-layer Qwen2 built from its config.
TINY_BASE = "tiny/qwen2-2layer"
LAYERS, RANK, SEED = 4, 8, 1234
MB = 1_000_000  # sizes are decimal: 1 MB = 10^6 bytes
CONFIG = lora_config(r=RANK, lora_dropout=0.05, base_model_name_or_path=BASE_MODEL)


def lora_adapter(hidden: int, kv_out: int, rng: random.Random) -> bytes:
    """A q/k/v/o LoRA of LAYERS layers at rank RANK for a model of that hidden size and k/v
    width; the next seed drawn from ``rng`` picks its values."""
    shape = {"layers": LAYERS, "hidden": hidden, "kv_out": kv_out}
    return lora_bytes(RANK, rng.getrandbits(64), **shape)


def flip_bit(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


# ---------------------------------------------------------------- the swarm's processes


@dataclass(frozen=True)
class Swarm:
    """What every process of the swarm needs to know (it crosses process boundaries)."""

    root: str
    db_url: str
    agents: int
    per_agent: int
    hidden: int
    kv_out: int
    session: str


def agent(swarm: Swarm, index: int) -> list[tuple[float, float]]:
    """One agent: trains (builds) and stores its adapters; returns when each store ran.

    Adapter j is of task TASKS[(index + j) % 3]. Every second one is evolved: its parent is the
    swarm's latest adapter of that task, whoever stored it (every fourth, the two latest: a
    crossover), or, where the swarm has none yet, this agent's previous adapter.
    """
    rng = random.Random(SEED + index)
    mine: list[str] = []
    spans: list[tuple[float, float]] = []
    with AdapterRegistry(root=swarm.root, db_url=swarm.db_url) as registry:
        for j in range(swarm.per_agent):
            task = TASKS[(index + j) % len(TASKS)]
            weights = lora_adapter(swarm.hidden, swarm.kv_out, rng)
            parents: list[str] = []
            if j % 2 == 1:
                latest = [r.id for r in registry.query_by_task_type(task)][-2:]
                crossover = j % 4 == 3 and len(latest) == 2
                parents = latest if crossover else (latest[-1:] or mine[-1:])
            started = time.monotonic()
            record = registry.store(
                weights,
                config=CONFIG,
                task_type=task,
                source="evolution" if parents else "distillation",
                session_id=swarm.session,
                parent_ids=parents,
                agent_id=f"agent-{index + 1}",
                training_task_hash=hashlib.sha256(f"{task}/{j // 2}".encode()).hexdigest(),
            )
            spans.append((started, time.monotonic()))
            mine.append(record.id)
    return spans


def score(record: AdapterRecord) -> tuple[float, float]:
    """(fitness, pass rate) standing in for a test run: drawn from the adapter's own hash, with
    a bonus per generation, so that evolution tends to pay and the numbers are reproducible."""
    draw = int(record.file_hash[:8], 16) / 0xFFFFFFFF
    rate = int(record.file_hash[8:16], 16) / 0xFFFFFFFF
    fitness = min(0.35 + 0.5 * draw + 0.08 * (record.generation or 0), 1.0)
    return round(fitness, 3), round(0.4 + 0.6 * rate, 3)


def evaluator(swarm: Swarm, ids: list[str]) -> list[tuple[float, float]]:
    """One evaluator: scores its share of the adapters; returns when each update ran."""
    spans: list[tuple[float, float]] = []
    with AdapterRegistry(root=swarm.root, db_url=swarm.db_url) as registry:
        for adapter_id in ids:
            fitness, pass_rate = score(registry.retrieve_by_id(adapter_id))
            started = time.monotonic()
            registry.update_fitness(adapter_id, fitness_score=fitness, pass_rate=pass_rate)
            spans.append((started, time.monotonic()))
    return spans


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """How long at least one of the (possibly overlapping) intervals was running."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def _context() -> Any:
    """fork where there is one: the agents start at once, with the package already imported."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


# ---------------------------------------------------------------- the run


@dataclass
class DemoResult:
    """What the demo did; ``summary`` is its --json output."""

    problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Say:
    """The narrative: numbered steps and indented lines on one stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.step = 0

    def __call__(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def title(self, text: str) -> None:
        self.step += 1
        self(f"\n{self.step}. {text}")

    def indented(self, text: str) -> None:
        self("\n".join(f"   {line}" for line in text.splitlines()))


def torch_missing() -> str | None:
    """The first of torch, peft, transformers that cannot be found, or None."""
    for name in ("torch", "peft", "transformers"):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return name
    return None


def run(
    home: Path,
    agents: int,
    per_agent: int,
    size_mb: float,
    torch_step: bool,
    stream: TextIO,
) -> DemoResult:
    """Play the swarm in ``home`` (fresh), narrating on ``stream``."""
    from ..cli.integrity import verify_records
    from ..cli.lineage import lineage_json, tree_text
    from ..cli.output import human_bytes, number, plain_table

    say, result = _Say(stream), DemoResult()
    hidden, kv_out = model_shape(size_mb * MB, LAYERS, RANK)
    root, db_url = home / "adapters", f"sqlite:///{home}/adapter_registry.db"
    swarm = Swarm(
        str(root),
        db_url,
        agents,
        per_agent,
        hidden,
        kv_out,
        f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
    )
    say(f"adapter-registry {__version__} demo in {home}")
    say(f"   adapters in {root}\n   metadata in {db_url}")

    say.title(
        f"swarm: {agents} agent processes store {per_agent} LoRA adapters each for {BASE_MODEL} "
        f"(q/k/v/o A/B of {LAYERS} layers, r={RANK}, hidden {hidden}, k/v out {kv_out})"
    )
    AdapterRegistry(root=root, db_url=db_url).close()  # the schema, before the writers race
    context = _context()
    with context.Pool(agents) as pool:
        spans = [
            s
            for agent_spans in pool.starmap(agent, [(swarm, i) for i in range(agents)])
            for s in agent_spans
        ]
    store_s = busy_seconds(spans)

    registry = AdapterRegistry(root=root, db_url=db_url)
    try:
        stored = registry.list_all()
        total_bytes = sum(r.file_size_bytes for r in stored)
        evolved = [r for r in stored if r.parents]
        expected_evolved = agents * (per_agent // 2)
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
        if len(stored) != agents * per_agent:
            result.problems.append(f"{len(stored)} adapters stored, not {agents * per_agent}")
        if len(evolved) != expected_evolved:
            result.problems.append(f"{len(evolved)} evolved, not {expected_evolved}")

        evaluators = min(2, agents)
        say.title(f"evaluate: {evaluators} evaluator processes set fitness and pass rate")
        ids = [r.id for r in stored]
        with context.Pool(evaluators) as pool:
            shares = [(swarm, ids[i::evaluators]) for i in range(evaluators)]
            eval_spans = [s for part in pool.starmap(evaluator, shares) for s in part]
        evaluate_s = busy_seconds(eval_spans)
        unevaluated = [r.id for r in registry.list_all() if r.fitness_score is None]
        say.indented(f"{len(ids) - len(unevaluated)} evaluated in {evaluate_s:.2f} s")
        if unevaluated:
            result.problems.append(f"{len(unevaluated)} adapters left unevaluated")

        say.title("rank: the best live adapter per task, after archiving one leader")
        leader = registry.query_best_for_task(TASKS[-1])
        if leader is not None:
            registry.archive(leader.id)
            say.indented(
                f"archived {leader.id} (the best {TASKS[-1]}, fitness "
                f"{number(leader.fitness_score)}): out of the ranking, on disk and in lineage"
            )
        best = {task: registry.query_best_for_task(task) for task in TASKS}
        rows = []
        for task, record in best.items():
            if record is None:
                rows.append([task, "(none)", "-", "-", "-", "-", "-", "-"])
                continue
            rows.append(
                [
                    task,
                    record.id,
                    number(record.fitness_score),
                    number(record.pass_rate, 2),
                    str(record.version),
                    str(record.generation),
                    str(len(registry.lineage(record.id))),
                    record.agent_id or "-",
                ]
            )
            if leader is not None and record.id == leader.id:
                result.problems.append("an archived adapter was ranked")
        say.indented(
            plain_table(
                ("TASK", "BEST", "FITNESS", "PASS", "VER", "GEN", "ANCESTORS", "AGENT"),
                rows,
                right=(2, 3, 4, 5, 6),
            )
        )
        timings = []
        for i in range(300):
            started_ns = time.perf_counter_ns()
            registry.query_best_for_task(TASKS[i % len(TASKS)])
            timings.append(time.perf_counter_ns() - started_ns)
        query_us = statistics.median(timings) / 1000
        say.indented(f"query_best_for_task: {query_us:.0f} us median over 300 calls")
        deepest = max(
            registry.list_all(), key=lambda r: (r.generation or 0, len(r.parents), r.created_at)
        )
        say.indented(
            f"lineage of the most evolved adapter (adapter-registry lineage {deepest.id}):"
        )
        say.indented(tree_text(lineage_json(registry, deepest)))

        say.title("verify every adapter against its record")
        verified = verify_records(registry, None)
        say.indented(verified.summary())
        for report in verified.reports:
            if not report.ok:
                result.problems.append(f"verify: {report.adapter_id} {report.status}")

        tamper = _tamper(registry, best["bug-fix"] or stored[0], say, result)

        say.title("recover: after a crash it registers published adapters; here, nothing to do")
        recovery = registry.recover()
        say.indented("clean" if recovery.clean else f"NOT CLEAN: {recovery}")
        if not recovery.clean:
            result.problems.append("recover() found problems")

        serve: dict[str, Any] = {
            "ran": False,
            "reason": None,
            "adapter": None,
            "logits_shape": None,
            "identical": None,
            "seconds": None,
        }
        missing = torch_missing() if torch_step else "--no-torch"
        if missing is None:
            say.title(
                f"serve: a LoRA on a tiny 2-layer Qwen2 ({TINY_BASE}), stored with PEFT, "
                "loaded back verified (importing torch, transformers and peft takes a while)"
            )
            serve.update(_serve(registry, swarm.session, say, result))
        else:
            serve["reason"] = (
                "--no-torch"
                if missing == "--no-torch"
                else f"{missing} is not installed (pip install 'adapter-registry[torch]')"
            )
            say.title(f"serve: skipped, {serve['reason']}")
    finally:
        registry.close()

    store_rate = len(stored) / store_s if store_s else 0.0
    verify_rate = len(verified.reports) / verified.seconds if verified.seconds else 0.0
    result.summary = {
        "ok": result.ok,
        "problems": result.problems,
        "home": str(home),
        "agents": agents,
        "adapters_per_agent": per_agent,
        "store": {
            "adapters": len(stored),
            "evolved": len(evolved),
            "crossovers": crossovers,
            "bytes": total_bytes,
            "seconds": round(store_s, 6),
            "adapters_per_s": round(store_rate, 3),
            "mb_per_s": round(total_bytes / MB / store_s, 3) if store_s else 0.0,
        },
        "evaluate": {
            "adapters": len(ids) - len(unevaluated),
            "evaluators": evaluators,
            "seconds": round(evaluate_s, 6),
        },
        "archived": leader.id if leader is not None else None,
        "best": {task: (r.id if r is not None else None) for task, r in best.items()},
        "query_best_us": round(query_us, 3),
        "verify": {
            "adapters": len(verified.reports),
            "ok": verified.counts["ok"],
            "files": verified.files,
            "bytes": verified.bytes,
            "seconds": round(verified.seconds, 6),
            "adapters_per_s": round(verify_rate, 3),
            "mb_per_s": round(verified.bytes / MB / verified.seconds, 3)
            if verified.seconds
            else 0.0,
        },
        "tamper": tamper,
        "recover": {"clean": recovery.clean},
        "serve": serve,
    }
    _table(result, stream)
    return result


def _tamper(
    registry: AdapterRegistry, victim: AdapterRecord, say: _Say, result: DemoResult
) -> dict[str, Any]:
    """Flip one bit in the middle of the victim's tensor data (as root, or an attacker with
    write access, could), show verify catching it, and put the bit back."""
    path = victim.file_path
    with open(path, "rb") as f:
        data_start = 8 + struct.unpack("<Q", f.read(8))[0]
    offset = data_start + (victim.file_size_bytes - data_start) // 2
    mode = os.stat(path).st_mode & 0o777
    say.title(
        f"tamper: chmod {mode:o} -> 644 and flip one bit of byte {offset} of {Path(path).name} "
        f"of {victim.id} (the best {victim.task_type})"
    )
    os.chmod(path, 0o644)
    flip_bit(path, offset)
    try:
        report = registry.verify(victim.id)
        say.indented(f"verify: {report.status} (adapter-registry verify exits 1)")
        for problem in report.problems:
            say.indented(f"  {problem}")
    finally:
        flip_bit(path, offset)
        os.chmod(path, mode)
    caught = report.status == "mismatch"
    if not caught:
        result.problems.append("the tampered file was not reported as a mismatch")
    restored = registry.verify(victim.id)
    say.indented(f"bit flipped back, chmod {mode:o}: verify: {restored.status}")
    if not restored.ok:
        result.problems.append("the restored file does not verify")
    return {
        "adapter": victim.id,
        "offset": offset,
        "status": report.status,
        "caught": caught,
        "restored": restored.ok,
    }


def _serve(
    registry: AdapterRegistry, session: str, say: _Say, result: DemoResult
) -> dict[str, Any]:
    """Store a PEFT LoRA of a tiny Qwen2, pick the best for that base, load it, run it."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    with warnings.catch_warnings():  # deprecation notices of the libraries, not of this demo
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _serve_quietly(registry, session, say, result)


def _serve_quietly(
    registry: AdapterRegistry, session: str, say: _Say, result: DemoResult
) -> dict[str, Any]:
    torch = importlib.import_module("torch")
    peft = importlib.import_module("peft")
    transformers = importlib.import_module("transformers")

    def base_model() -> Any:
        config = transformers.Qwen2Config(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        )  # fmt: skip
        config._name_or_path = TINY_BASE
        torch.manual_seed(SEED)
        return transformers.Qwen2ForCausalLM(config).eval()

    tokens = torch.tensor([[1, 5, 9, 42, 7, 3, 99, 12]])
    lora = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False, lora_dropout=0.0,
    )  # fmt: skip
    trained = peft.get_peft_model(base_model(), lora).eval()
    with torch.no_grad():
        expected = trained(tokens).logits
        plain = base_model()(tokens).logits
    record = registry.store_peft_model(
        trained, task_type="bug-fix", source="manual", session_id=session, agent_id="serving"
    )
    registry.update_fitness(record.id, fitness_score=0.9, pass_rate=0.9)
    best = registry.query_best_for_task("bug-fix", base_model_id=TINY_BASE)
    say.indented(
        f"stored {record.id} with store_peft_model; best for {TINY_BASE}: {best and best.id}"
    )
    if best is None or best.id != record.id:
        result.problems.append("the tiny model's adapter was not the best for its base")
        return {"adapter": record.id}
    started = time.perf_counter()
    model = registry.load_peft(base_model(), best.id)
    with torch.no_grad():
        logits = model(tokens).logits
    seconds = time.perf_counter() - started
    identical = bool(torch.equal(logits, expected))
    changed = not bool(torch.equal(logits, plain))
    say.indented(
        f"load_peft (hashed as read) + forward pass in {seconds * 1000:.0f} ms: logits "
        f"{tuple(logits.shape)}, {'identical to' if identical else 'DIFFERENT from'} the "
        f"trained model's, {'changed' if changed else 'UNCHANGED'} from the base model's"
    )
    if not (identical and changed):
        result.problems.append("the loaded adapter does not reproduce the trained model")
    return {
        "ran": True,
        "adapter": best.id,
        "logits_shape": list(logits.shape),
        "identical": identical,
        "seconds": round(seconds, 6),
    }


def _table(result: DemoResult, stream: TextIO) -> None:
    """The closing table: what the demo did and how fast."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..cli.output import human_bytes

    s = result.summary
    st, ev, ve, ta, se = s["store"], s["evaluate"], s["verify"], s["tamper"], s["serve"]
    table = Table(title="what the demo did", title_justify="left")
    for name, justify in (("step", "left"), ("what", "left"), ("time", "right"), ("rate", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_row(
        "store",
        f"{st['adapters']} adapters by {s['agents']} agents, {human_bytes(st['bytes'])}, "
        f"{st['evolved']} evolved",
        f"{st['seconds']:.2f} s",
        f"{st['adapters_per_s']:.1f} adapters/s, {st['mb_per_s']:.1f} MB/s",
    )
    table.add_row(
        "evaluate",
        f"{ev['adapters']} adapters by {ev['evaluators']} evaluators",
        f"{ev['seconds']:.2f} s",
        f"{ev['adapters'] / ev['seconds']:.0f} adapters/s" if ev["seconds"] else "-",
    )
    table.add_row(
        "rank",
        f"best of {len(s['best'])} task types, 1 archived",
        "",
        f"{s['query_best_us']:.0f} us per query",
    )
    table.add_row(
        "verify",
        f"{ve['ok']}/{ve['adapters']} ok, {ve['files']} files, {human_bytes(ve['bytes'])}",
        f"{ve['seconds']:.2f} s",
        f"{ve['adapters_per_s']:.0f} adapters/s, {ve['mb_per_s']:.0f} MB/s",
    )
    table.add_row(
        "tamper",
        "1 bit flipped in 1 file",
        "",
        "caught" if ta["caught"] else "MISSED",
    )
    table.add_row(
        "recover", "after-crash check", "", "clean" if s["recover"]["clean"] else "NOT CLEAN"
    )
    if se["ran"]:
        table.add_row(
            "serve",
            "load_peft + forward, tiny Qwen2",
            f"{se['seconds']:.2f} s",
            "logits identical" if se["identical"] else "logits DIFFER",
        )
    else:
        table.add_row("serve", escape(f"skipped: {se['reason']}"), "", "")  # keeps "[torch]"
    table.add_row(
        "result",
        "",
        "",
        "ok" if result.ok else f"{len(result.problems)} unexpected",
        end_section=True,
    )
    out = Console(file=stream, highlight=False, width=None if stream.isatty() else 120)
    print(file=stream)
    out.print(table)
    for problem in result.problems:
        print(f"UNEXPECTED: {problem}", file=stream, flush=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m adapter_registry.demo [options]``: the same as ``adapter-registry demo``."""
    from ..cli import main as cli_main

    cli_main(["demo", *(sys.argv[1:] if argv is None else argv)])

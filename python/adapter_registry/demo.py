"""The main job: a short end-to-end run of the registry, in a fresh home, in a few seconds.

    python -m adapter_registry.demo [--home DIR] [--adapters N] [--size-mb S] [--keep]

It builds real PEFT LoRA files (safetensors, written here with ``struct`` and ``json``) for a
small Qwen2-style model, stores them across three task types with lineage, evaluates and ranks
them, verifies every byte, tampers with one file to show the check catching it, runs recovery,
and ends with a table of what it did and how fast. Standard library only: no torch, no numpy.
Exit status 0 when everything behaved as expected, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .record import AdapterRecord
from .registry import AdapterRegistry

TASKS = ("bug-fix", "feature-impl", "refactor")
BASE_MODEL = "Qwen/Qwen2.5-Coder-7B"
LAYERS, RANK, SEED = 4, 8, 1234
MB = 1 << 20


def model_shape(size_mb: float) -> tuple[int, int]:
    """(hidden, kv_out) of a Qwen2-style GQA model whose q/k/v/o LoRA is about size_mb."""
    # Per layer and per unit of rank: A is [r, hidden] for all four projections, B is [out, r]
    # with out = hidden for q/o and hidden/4 for k/v: 6.5 * hidden floats of 4 bytes.
    hidden = round(size_mb * MB / (LAYERS * RANK * 26) / 64) * 64
    hidden = max(hidden, 64)
    return hidden, hidden // 4


def safetensors_bytes(tensors: dict[str, tuple[list[int], bytes]]) -> bytes:
    """Serialize F32 tensors: u64 header length, JSON header padded with spaces, then data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):  # ascending offsets in name order, as safetensors writes them
        shape, data = tensors[name]
        header[name] = {
            "dtype": "F32",
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(tensors[n][1] for n in sorted(tensors))


def lora_adapter(hidden: int, kv_out: int, rng: random.Random) -> bytes:
    """One adapter on q/k/v/o of every layer: A ~ U(+-1/sqrt(hidden)), B ~ N(0, 0.02)."""
    bound = hidden**-0.5
    pools = {
        "A": array("f", (rng.uniform(-bound, bound) for _ in range(8192))).tobytes(),
        "B": array("f", (rng.gauss(0.0, 0.02) for _ in range(8192))).tobytes(),
    }

    def fill(side: str, count: int) -> bytes:  # a random rotation of the pool, tiled
        pool, k = pools[side], rng.randrange(8192) * 4
        pool = pool[k:] + pool[:k]
        return (pool * (-(-count * 4 // len(pool))))[: count * 4]

    tensors: dict[str, tuple[list[int], bytes]] = {}
    for i in range(LAYERS):
        for proj, out in (("q", hidden), ("k", kv_out), ("v", kv_out), ("o", hidden)):
            name = f"base_model.model.model.layers.{i}.self_attn.{proj}_proj"
            tensors[f"{name}.lora_A.weight"] = ([RANK, hidden], fill("A", RANK * hidden))
            tensors[f"{name}.lora_B.weight"] = ([out, RANK], fill("B", out * RANK))
    return safetensors_bytes(tensors)


def lora_config() -> dict[str, object]:
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": BASE_MODEL,
        "r": RANK,
        "lora_alpha": 2 * RANK,
        "lora_dropout": 0.05,
        "bias": "none",
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    }


def progress_bar(enabled: bool) -> tuple[list[int], Callable[[int, int, int], None]]:
    """A verify_all progress callback; draws a one-line bar on a TTY. Returns (last, callback)."""
    last = [0, 0, 0]

    def show(files_done: int, files_total: int, bytes_done: int) -> None:
        redraw = files_done != last[0] or files_done == files_total
        last[:] = [files_done, files_total, bytes_done]
        if enabled and redraw:
            filled = 30 * files_done // max(files_total, 1)
            bar = "#" * filled + "." * (30 - filled)
            print(
                f"\r   [{bar}] {files_done}/{files_total} files, {bytes_done / MB:.1f} MB",
                end="",
                flush=True,
            )

    return last, show


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


def short(record: AdapterRecord) -> str:
    return record.id[:8]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapter_registry.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--home", type=Path, help="keep the registry here (default: a temp dir)")
    parser.add_argument("--adapters", type=int, default=12, help="how many to store (12)")
    parser.add_argument("--size-mb", type=float, default=1.0, help="size of each adapter (1.0)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args(argv)
    if args.adapters < 1 or args.size_mb <= 0:
        parser.error("--adapters and --size-mb must be positive")
    temporary = args.home is None
    home = Path(tempfile.mkdtemp(prefix="adapter-registry-demo-") if temporary else args.home)
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    try:
        return run(home, args.adapters, args.size_mb)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
            print(f"\nremoved {home}")
        else:
            print(f"\nkept {home}")


def run(home: Path, n: int, size_mb: float) -> int:
    rng, surprises = random.Random(SEED), 0
    hidden, kv_out = model_shape(size_mb)
    print(f"adapter_registry {__version__} demo")
    with AdapterRegistry(
        root=home / "adapters", db_url=f"sqlite:///{home}/adapter_registry.db"
    ) as reg:
        print(f"   adapters in {reg.root}\n   metadata in {reg.db_url}")

        # 1. Store: first-generation adapters are distilled; about a third evolve from one.
        print(
            f"\n1. store {n} LoRA adapters for {BASE_MODEL} (Qwen2-style shapes: {LAYERS} "
            f"layers, hidden {hidden}, k/v out {kv_out}, r={RANK}, q/k/v/o)"
        )
        session, config = f"demo-{time.strftime('%Y%m%d-%H%M%S')}", lora_config()
        stored: list[AdapterRecord] = []
        by_task: dict[str, list[AdapterRecord]] = {t: [] for t in TASKS}
        store_s = 0.0
        for i in range(n):
            task = TASKS[i % 3]
            child = i >= 3 and (i + i // 3) % 3 == 0 and bool(by_task[task])
            parents = [rng.choice(by_task[task]).id] if child else []
            weights = lora_adapter(hidden, kv_out, rng)
            started = time.perf_counter()
            record = reg.store(
                weights, config=config, task_type=task, session_id=session,
                source="evolution" if child else "distillation", parent_ids=parents,
                agent_id=f"agent-{rng.randrange(1, 5)}",
                training_task_hash=hashlib.sha256(f"{task}/{i // 3}".encode()).hexdigest(),
            )  # fmt: skip
            store_s += time.perf_counter() - started
            stored.append(record)
            by_task[task].append(record)
        total_mb = sum(r.file_size_bytes for r in stored) / MB
        for task, records in by_task.items():
            evolved = sum(1 for r in records if r.parents)
            print(f"   {task:<13} {len(records):>3} stored ({evolved} evolved from a parent)")
        print(f"   {total_mb:.1f} MB in {store_s:.2f} s, each file hashed and validated on write")

        # 2. Evaluate (a seeded stand-in for a test run), then retire the leading refactor.
        print("\n2. evaluate and archive")
        for record in stored:
            fitness = min(rng.uniform(0.3, 0.85) + 0.05 * (record.generation or 0), 1.0)
            reg.update_fitness(
                record.id,
                fitness_score=round(fitness, 3),
                pass_rate=round(rng.uniform(0.4, 1.0), 3),
            )
        leader = reg.query_best_for_task("refactor")
        if leader is not None:
            reg.archive(leader.id)
            print(
                f"   {n} evaluated; archived {short(leader)} (refactor, fitness "
                f"{leader.fitness_score:.3f}): out of the ranking, kept on disk and in lineage"
            )

        # 3. Rank.
        print("\n3. best live adapter per task")
        print(
            f"   {'task':<13} {'adapter':<9} {'fitness':>7} {'pass':>6} {'version':>7} "
            f"{'gen':>4} {'ancestors':>9}  source"
        )
        for task in TASKS:
            best = reg.query_best_for_task(task)
            if best is None:
                print(f"   {task:<13} (none evaluated)")
                continue
            print(
                f"   {task:<13} {short(best):<9} {best.fitness_score or 0:>7.3f} "
                f"{best.pass_rate or 0:>6.2f} {best.version:>7} {best.generation or 0:>4} "
                f"{len(reg.lineage(best.id)):>9}  {best.source}"
            )

        # 4. Verify every byte of every adapter against its record.
        print("\n4. verify all")
        last, show = progress_bar(sys.stdout.isatty())
        started = time.perf_counter()
        reports = reg.verify_all(progress=show)
        verify_s = time.perf_counter() - started
        verified_mb = last[2] / MB
        bad = [r for r in reports if not r.ok]
        print(
            ("\n" if sys.stdout.isatty() else "")
            + f"   {len(reports) - len(bad)}/{len(reports)} adapters ok, {last[1]} files, "
            f"{verified_mb:.1f} MB in {verify_s:.2f} s"
        )
        for report in bad:
            surprises += 1
            print(f"   UNEXPECTED {report.adapter_id}: {report.status}: {report.problems}")

        # 5. Tamper: act as someone with write access, flip one bit, then put it back.
        victim = stored[len(stored) // 2]
        path = victim.file_path
        with open(path, "rb") as f:
            data_start = 8 + struct.unpack("<Q", f.read(8))[0]
        offset = data_start + (victim.file_size_bytes - data_start) // 2
        mode = os.stat(path).st_mode & 0o777
        print(
            f"\n5. tamper: chmod {mode:o} -> 644 and flip one bit at "
            f"byte {offset} of {short(victim)}/{Path(path).name}"
        )
        os.chmod(path, 0o644)
        flip_byte(path, offset)
        try:
            report = reg.verify(victim.id)
            print(f"   verify: {report.status}")
            for problem in report.problems:
                print(f"     {problem}")
            caught = report.status == "mismatch"
            if not caught:
                surprises += 1
                print("   UNEXPECTED: the tampered file was not reported as a mismatch")
        finally:
            flip_byte(path, offset)
            os.chmod(path, mode)
        report = reg.verify(victim.id)
        print(f"   restored (bit flipped back, chmod {mode:o}): verify: {report.status}")
        surprises += not report.ok

        # 6. Recover: after crashes this rolls published files forward; here nothing to do.
        print("\n6. recover")
        recovery = reg.recover()
        print(
            f"   {'clean' if recovery.clean else 'NOT CLEAN'}: "
            f"{len(recovery.rolled_forward)} rolled forward, "
            f"{len(recovery.removed_staging)} staging dirs removed, "
            f"{len(recovery.removed_claims)} claims removed, "
            f"{len(recovery.unregistered)} unregistered, {len(recovery.missing)} missing"
        )
        surprises += not recovery.clean

        # 7. How fast the hot query is.
        timings = []
        for i in range(300):
            started_ns = time.perf_counter_ns()
            reg.query_best_for_task(TASKS[i % 3])
            timings.append(time.perf_counter_ns() - started_ns)

    rows = [
        ("adapters stored", f"{n}"),
        ("total size", f"{total_mb:.1f} MB"),
        ("store", f"{n / store_s:.1f} adapters/s, {total_mb / store_s:.1f} MB/s"),
        ("verify", f"{verified_mb / verify_s:.1f} MB/s ({len(reports)} adapters)"),
        ("query_best_for_task", f"{statistics.median(timings) / 1000:.0f} us median (300 calls)"),
        ("tampering", "caught" if caught else "MISSED"),
        ("result", "ok" if surprises == 0 else f"{surprises} unexpected result(s)"),
    ]
    print("\nsummary")
    for label, value in rows:
        print(f"   {label:<20} {value}")
    return 0 if surprises == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

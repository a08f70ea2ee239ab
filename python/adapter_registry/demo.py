"""The main job: a short end-to-end run of the registry, in a fresh home, in a few seconds.

    python -m adapter_registry.demo [--home DIR] [--adapters N] [--size-mb S] [--keep]

It builds real PEFT LoRA files (safetensors, serialized here with ``struct`` and ``json``) with
the shapes of a small Qwen2-style model, stores them across three task types with lineage,
evaluates and ranks them, verifies every byte, tampers with one file to show the check catching
it, runs recovery, and ends with a table of what it did and how fast. Standard library only:
no torch, no numpy. Exit status 0 when everything behaved as expected, 1 otherwise.
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
LAYERS, RANK, SEED, MB = 4, 8, 1234, 1 << 20
CONFIG = {  # adapter_config.json as PEFT's LoraConfig writes it (abridged)
    "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": BASE_MODEL,
    "r": RANK, "lora_alpha": 2 * RANK, "lora_dropout": 0.05, "bias": "none",
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}  # fmt: skip


def model_shape(size_mb: float) -> tuple[int, int]:
    """(hidden, kv_out) of a Qwen2-style GQA model whose q/k/v/o LoRA is about size_mb."""
    # Per layer and unit of rank: A is [r, hidden] for all four projections and B is [out, r],
    # out = hidden for q/o and hidden/4 for k/v (4 query heads per kv head): 6.5 * hidden floats.
    hidden = max(64, round(size_mb * MB / (LAYERS * RANK * 26) / 64) * 64)
    return hidden, hidden // 4


def safetensors_bytes(tensors: dict[str, tuple[list[int], bytes]]) -> bytes:
    """F32 tensors as safetensors: u64 header length, JSON header padded with spaces, data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):  # data in name order, offsets ascending, as safetensors does
        shape, data = tensors[name]
        header[name] = {
            "dtype": "F32",
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # so that the data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw + b"".join(tensors[n][1] for n in sorted(tensors))


def lora_adapter(hidden: int, kv_out: int, rng: random.Random) -> bytes:
    """LoRA A ~ U(+-1/sqrt(hidden)) and B ~ N(0, 0.02) on q/k/v/o of every layer.

    Each tensor tiles a random rotation of 8192 drawn values, so that building stays fast.
    """
    bound = hidden**-0.5
    pools = {
        "A": array("f", (rng.uniform(-bound, bound) for _ in range(8192))).tobytes(),
        "B": array("f", (rng.gauss(0.0, 0.02) for _ in range(8192))).tobytes(),
    }

    def fill(side: str, count: int) -> bytes:
        k = rng.randrange(8192) * 4
        pool = pools[side][k:] + pools[side][:k]
        return (pool * (-(-count * 4 // len(pool))))[: count * 4]

    tensors: dict[str, tuple[list[int], bytes]] = {}
    for i in range(LAYERS):
        for proj, out in (("q", hidden), ("k", kv_out), ("v", kv_out), ("o", hidden)):
            name = f"base_model.model.model.layers.{i}.self_attn.{proj}_proj"
            tensors[f"{name}.lora_A.weight"] = ([RANK, hidden], fill("A", RANK * hidden))
            tensors[f"{name}.lora_B.weight"] = ([out, RANK], fill("B", out * RANK))
    return safetensors_bytes(tensors)


def progress_bar(tty: bool) -> tuple[list[int], Callable[[int, int, int], None]]:
    """A verify_all progress callback (a one-line bar on a TTY) and its latest numbers."""
    last = [0, 0, 0]

    def show(files_done: int, files_total: int, bytes_done: int) -> None:
        redraw = tty and (files_done != last[0] or files_done == files_total)
        last[:] = [files_done, files_total, bytes_done]
        if redraw:
            bar = "#" * (30 * files_done // max(files_total, 1))
            print(f"\r   [{bar:.<30}] {files_done}/{files_total} files", end="", flush=True)

    return last, show


def flip_bit(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapter_registry.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--home", type=Path, help="use this home (default: a temporary one)")
    parser.add_argument("--adapters", type=int, default=12, help="how many to store (12)")
    parser.add_argument("--size-mb", type=float, default=1.0, help="size of each adapter (1)")
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
    print(f"adapter_registry {__version__} demo, home {home}")
    db_url = f"sqlite:///{home}/adapter_registry.db"
    with AdapterRegistry(root=home / "adapters", db_url=db_url) as reg:
        print(f"   adapters in {reg.root}\n   metadata in {reg.db_url}")

        print(
            f"\n1. store {n} LoRA adapters for {BASE_MODEL}: q/k/v/o, r={RANK}, shapes of a "
            f"Qwen2-style model ({LAYERS} layers, hidden {hidden}, k/v out {kv_out})"
        )
        session = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        stored: list[AdapterRecord] = []
        by_task: dict[str, list[AdapterRecord]] = {t: [] for t in TASKS}
        store_s = 0.0
        for i in range(n):
            # One adapter per task per round. From the second round on, one task per round (in
            # turn) evolves its latest evolved adapter, or else its first, instead of distilling.
            task, child = TASKS[i % 3], i >= 3 and i % 3 == (i // 3 - 1) % 3
            evolved = [r for r in by_task[task] if r.parents] or by_task[task][:1]
            weights = lora_adapter(hidden, kv_out, rng)
            started = time.perf_counter()
            record = reg.store(
                weights,
                config=CONFIG,
                task_type=task,
                session_id=session,
                source="evolution" if child else "distillation",
                parent_ids=[evolved[-1].id] if child else [],
                agent_id=f"agent-{rng.randrange(1, 5)}",
                training_task_hash=hashlib.sha256(f"{task}/{i // 3}".encode()).hexdigest(),
            )
            store_s += time.perf_counter() - started
            stored.append(record)
            by_task[task].append(record)
        total_mb = sum(r.file_size_bytes for r in stored) / MB
        for task, records in by_task.items():
            children = sum(1 for r in records if r.parents)
            print(f"   {task:<13} {len(records):>3} stored ({children} evolved from a parent)")
        print(f"   {total_mb:.1f} MB in {store_s:.2f} s, each file hashed and validated on write")

        print("\n2. evaluate (seeded scores standing in for test runs) and archive")
        for record in stored:
            fitness = min(rng.uniform(0.3, 0.85) + 0.1 * (record.generation or 0), 1.0)
            pass_rate = round(rng.uniform(0.4, 1.0), 3)
            reg.update_fitness(record.id, fitness_score=round(fitness, 3), pass_rate=pass_rate)
        leader = reg.query_best_for_task("refactor")
        if leader is not None:
            reg.archive(leader.id)
            print(
                f"   {n} evaluated; archived {leader.id[:8]} (best refactor, fitness "
                f"{leader.fitness_score}): out of the ranking, kept on disk and in lineage"
            )

        print("\n3. best live adapter per task")
        print(
            f"   {'task':<13} {'adapter':<9} {'fitness':>7} {'pass':>5} {'version':>7} "
            f"{'gen':>3} {'ancestors':>9}  source"
        )
        for task in TASKS:
            best = reg.query_best_for_task(task)
            if best is None:
                print(f"   {task:<13} (none: archived or not evaluated)")
                continue
            print(
                f"   {task:<13} {best.id[:8]:<9} {best.fitness_score or 0:>7.3f} "
                f"{best.pass_rate or 0:>5.2f} {best.version:>7} {best.generation or 0:>3} "
                f"{len(reg.lineage(best.id)):>9}  {best.source}"
            )

        print("\n4. verify every adapter against its record")
        tty = sys.stdout.isatty()
        last, show = progress_bar(tty)
        started = time.perf_counter()
        reports = reg.verify_all(progress=show)
        verify_s = time.perf_counter() - started
        verified_mb = last[2] / MB
        bad = [r for r in reports if not r.ok]
        print(
            ("\n" if tty else "") + f"   {len(reports) - len(bad)}/{len(reports)} ok "
            f"({last[1]} files, {verified_mb:.1f} MB in {verify_s:.3f} s)"
        )
        for report in bad:
            surprises += 1
            print(f"   UNEXPECTED {report.adapter_id}: {report.status}: {report.problems}")

        # As an attacker (or a careless root) with write access: flip one bit, then undo it.
        victim = stored[len(stored) // 2]
        path = victim.file_path
        with open(path, "rb") as f:
            data_start = 8 + struct.unpack("<Q", f.read(8))[0]
        offset = data_start + (victim.file_size_bytes - data_start) // 2
        mode = os.stat(path).st_mode & 0o777
        print(
            f"\n5. tamper: chmod {mode:o} -> 644 and flip one bit of byte {offset} of "
            f"{victim.id[:8]}/{Path(path).name}"
        )
        os.chmod(path, 0o644)
        flip_bit(path, offset)
        caught = False
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
            flip_bit(path, offset)
            os.chmod(path, mode)
        report = reg.verify(victim.id)
        print(f"   restored (bit flipped back, chmod {mode:o}): verify: {report.status}")
        surprises += not report.ok

        print("\n6. recover (after a crash it registers published adapters; here nothing to do)")
        rec = reg.recover()
        found = {
            "rolled forward": len(rec.rolled_forward),
            "staging dirs removed": len(rec.removed_staging),
            "claims removed": len(rec.removed_claims),
            "unregistered": len(rec.unregistered),
            "rows missing files": len(rec.missing),
        }
        counts = ", ".join(f"{count} {what}" for what, count in found.items())
        print(f"   {'clean' if rec.clean else 'NOT CLEAN'}: {counts}")
        surprises += not rec.clean

        timings = []
        for i in range(300):
            started_ns = time.perf_counter_ns()
            reg.query_best_for_task(TASKS[i % 3])
            timings.append(time.perf_counter_ns() - started_ns)

    rows = [
        ("adapters stored", f"{n} ({total_mb:.1f} MB, {total_mb / n:.2f} MB each)"),
        ("store", f"{n / store_s:.1f} adapters/s, {total_mb / store_s:.1f} MB/s"),
        ("verify", f"{verified_mb / verify_s:.0f} MB/s ({len(reports)} adapters)"),
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

"""Peak memory of verifying 10,000 adapters: how much the resident set grows, per adapter,
beyond the reports returned (target: at most 2 KB), and that progress is reported as the work
goes. Each way of verifying runs in a fresh interpreter, its peak reset (/proc/self/clear_refs)
once the registry is open and warm:

    .venv/bin/python benches/verify_memory.py [--count 10000] [--home DIR]

`verify_all` is the public call; `verify_stored` the path it takes once the registry routes it
there (the columns verification needs, as plain rows)."""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from adapter_registry import AdapterRegistry, integrity

CONFIG = {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj"], "base_model_name_or_path": "m"}


def _store_some(home: Path, seeds: range) -> None:
    from adapter_registry._lora_files import one_pair

    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    meta = {"config": CONFIG, "task_type": "bug-fix", "source": "manual", "session_id": "m"}
    for seed in seeds:
        registry.store(one_pair(4096, seed), **meta)
    registry.close()


def populate(home: Path, count: int) -> None:
    AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}").close()
    workers = 4
    with multiprocessing.Pool(workers) as pool:
        pool.starmap(_store_some, [(home, range(w, count, workers)) for w in range(workers)])


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _reports_bytes(reports: list[Any]) -> int:
    """What the reports themselves hold: each object, its dict, its id and problems."""
    total = sys.getsizeof(reports)
    for r in reports:
        total += sys.getsizeof(r) + sys.getsizeof(r.__dict__) + sys.getsizeof(r.adapter_id)
        total += sys.getsizeof(r.problems) + sum(sys.getsizeof(p) for p in r.problems)
    return total


def measure(home: Path, how: str) -> dict[str, Any]:
    """In this process: verify every adapter one way, and what the peak grew by."""
    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    first = registry.list_all()[0].id
    registry.verify(first)  # every module imported, every statement compiled
    integrity.verify_stored(registry._records, registry.root, [first])
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
    before = _status_kb("VmRSS")
    calls: list[tuple[int, int, int]] = []

    def progress(*p: int) -> None:
        calls.append(p)

    if how == "verify_all":
        reports = registry.verify_all(progress=progress)
    else:
        reports = integrity.verify_stored(registry._records, registry.root, progress=progress)
    peak = _status_kb("VmHWM")
    count = len(reports)
    held = _reports_bytes(reports)
    growth = peak * 1024 - before * 1024 - held
    return {
        "how": how,
        "adapters": count,
        "ok": sum(r.ok for r in reports),
        "peak_growth_bytes": (peak - before) * 1024,
        "reports_bytes": held,
        "growth_beyond_reports_per_adapter": growth / count,
        "progress_calls": len(calls),
        "last_progress": calls[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--home", type=Path, help="reuse (or fill) this registry")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        print(json.dumps(measure(opts.home, opts.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="adapter-registry-memory-") as tmp:
        home = opts.home or Path(tmp)
        if not (home / "r.db").exists():
            populate(home, opts.count)
        for how in ("verify_all", "verify_stored"):
            out = subprocess.run(
                [sys.executable, __file__, "--home", str(home), "--child", how],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            result = json.loads(out.stdout)
            print(
                f"{how}: {result['adapters']} adapters ({result['ok']} ok), peak RSS grew "
                f"{result['peak_growth_bytes'] / 1e6:.1f} MB, the reports hold "
                f"{result['reports_bytes'] / 1e6:.1f} MB: "
                f"{result['growth_beyond_reports_per_adapter']:.0f} bytes per adapter beyond "
                f"them; progress called {result['progress_calls']} times, last "
                f"{tuple(result['last_progress'])}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run every comparison in benches/ with its contenders interleaved, and print one table.

    .venv/bin/python benches/run.py [--only NAME ...] [--json PATH] [--readme README.md]

Each bench_*.py module gives GROUP, CONTENDERS (ours first), ROUNDS, CALLS and setup(). Round
by round, every contender runs once (CALLS times for sub-millisecond work; CALLS may be a dict
by contender name, where one contender is a thousand times slower), in an order that
rotates, so that a burst of noise on this shared machine hits all of them alike. Reported: the
median time of each contender, and for each baseline the median over rounds of
baseline / ours (above 1: ours is faster). How busy the machine was is printed with the table;
each contender's median CPU seconds (this process's threads, not its children) go to the JSON.
With --readme the table replaces the one between the README's bench markers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
MODULES = [
    "bench_hash",
    "bench_load",
    "bench_query",
    "bench_query_mlflow",
    "bench_search",
    "bench_verify",
    "bench_verify_small",
    "bench_verify_one",
    "bench_store",
    "bench_small_store",
    "bench_swarm",
    "bench_import",
    "bench_cli_start",
    "bench_pg_store",
    "bench_pg_query",
    "bench_pg_search",
    "bench_dashboard",
    "bench_bundle",
    "bench_resolve",
]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def timed(contender: Callable[..., Any], args: Sequence[Any], calls: int) -> tuple[float, float]:
    """Seconds per call: wall-clock, and this process's CPU (every thread, user and system;
    not child processes). CPU is what a busy machine shares out, so its ratio holds where
    the wall-clock one falls to what the scheduler gave."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        contender(*args)
    return (time.perf_counter() - start) / calls, (time.process_time() - cpu) / calls


def run_module(module: ModuleType) -> dict[str, Any]:
    contenders: list[Callable[..., Any]] = module.CONTENDERS
    calls = getattr(module, "CALLS", 1)
    per = {
        c.__name__: calls.get(c.__name__, 1) if isinstance(calls, dict) else calls
        for c in contenders
    }
    times: dict[str, list[float]] = {c.__name__: [] for c in contenders}
    cpu: dict[str, list[float]] = {c.__name__: [] for c in contenders}
    with (
        tempfile.TemporaryDirectory(prefix="adapter-registry-bench-") as tmp,
        module.setup(Path(tmp)) as args,
    ):
        for contender in contenders:  # warm-up round, not counted
            timed(contender, args, per[contender.__name__])
        for round_ in range(module.ROUNDS):
            shift = round_ % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                name = contender.__name__
                wall, used = timed(contender, args, per[name])
                times[name].append(wall)
                cpu[name].append(used)
    ours = contenders[0].__name__
    result: dict[str, Any] = {
        "group": module.GROUP,
        "rounds": module.ROUNDS,
        "calls_per_round": per if isinstance(calls, dict) else calls,
        "ours": ours,
        "median_s": {name: statistics.median(t) for name, t in times.items()},
        "median_cpu_s": {name: statistics.median(t) for name, t in cpu.items()},
        "ratios": {
            name: statistics.median(b / o for b, o in zip(t, times[ours], strict=True))
            for name, t in times.items()
            if name != ours
        },
    }
    composite = getattr(module, "COMPOSITE", None)
    if composite:
        sums = [sum(times[name][i] for name in composite) for i in range(module.ROUNDS)]
        result["ratios"][" + ".join(composite)] = statistics.median(
            s / o for s, o in zip(sums, times[ours], strict=True)
        )
    return result


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def fmt(seconds: float) -> str:
    if seconds >= 1e-1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} us"


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['date']}; load "
        f"average {m['load_average_before'][0]:.2f} before, {m['load_average_after'][0]:.2f} "
        "after. Medians; ratio = baseline / ours, the median over interleaved rounds.",
        "",
        "| comparison | ours | baseline | baseline time | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report["groups"]:
        med = r["median_s"]
        for i, (baseline, ratio) in enumerate(r["ratios"].items()):
            base_time = (
                med[baseline] if baseline in med else sum(med[n] for n in baseline.split(" + "))
            )
            first = f"{r['group']} ({r['rounds']} rounds)" if i == 0 else ""
            ours = f"`{r['ours']}` {fmt(med[r['ours']])}" if i == 0 else ""
            lines.append(f"| {first} | {ours} | `{baseline}` | {fmt(base_time)} | {ratio:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=MODULES, help="run these modules only")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--readme", type=Path, help="replace the table in this README")
    opts = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    report: dict[str, Any] = {"machine": machine(), "groups": []}
    for name in opts.only or MODULES:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        report["groups"].append(run_module(importlib.import_module(name)))
    report["machine"]["load_average_after"] = os.getloadavg()
    text = table(report)
    print(text)
    opts.json.write_text(json.dumps(report, indent=2) + "\n")
    if opts.readme:
        readme = opts.readme.read_text()
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        opts.readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Crash injection: kill storing processes with SIGKILL across the whole store pipeline, recover,
and check that nothing was lost, torn or changed.

    python tests/crash_harness.py HOME [--trials N] [--seed S] [--db-url URL]

Prints one JSON object: trials, how the children ended, what recover() did, and the violations
found (there must be none). tests/test_crash.py runs it; run it by hand for longer runs.

Each trial forks a child that stores one adapter. Half the trials kill the child at a named
step (ADAPTER_REGISTRY_CRASH_AT, taken in turn from _core.CRASH_STEPS); the other half send
SIGKILL from here after a random delay, which lands anywhere: in the copy, an fsync, the SQLite
commit, or after the store finished. Then, in this process: recover(), and the invariants.
The registry's database is SQLite in HOME unless --db-url names another (an empty PostgreSQL
database: tests/test_crash.py runs the harness on both backends).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from adapter_registry import AdapterAlreadyExistsError, AdapterRegistry
from adapter_registry._core import CRASH_AT_ENV, CRASH_STEPS
from adapter_registry.storing import FORCE_CLAIM_ENV

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapter_registry._lora_files import lora_of_size

SIZES = (4 << 10, 64 << 10, 1 << 20, 4 << 20)
FULL_CHECK_EVERY = 25


class Trials:
    def __init__(self, home: Path, seed: int, db_url: str | None = None) -> None:
        self.home = home
        self.db_url = db_url or f"sqlite:///{home}/r.db"
        self.rng = random.Random(seed)
        self.sources = [lora_of_size(size, seed=i) for i, size in enumerate(SIZES)]
        self.stored: dict[str, tuple[str, str]] = {}  # id -> (weights sha256, config sha256)
        self.identity: dict[str, tuple[int, int, int, int]] = {}  # id -> stat of the weights
        self.violations: list[str] = []
        self.counts: Counter[str] = Counter()

    def open(self) -> AdapterRegistry:
        return AdapterRegistry(root=self.home / "adapters", db_url=self.db_url)

    def store_kwargs(self, adapter_id: str, source: int) -> dict[str, Any]:
        weights, config = self.sources[source]
        parents = [self.rng.choice(sorted(self.stored))] if self.stored else []
        return {
            "weights": weights,
            "config": config,
            "task_type": "bug-fix",
            "source": "evolution" if parents else "manual",
            "session_id": "crash",
            "adapter_id": adapter_id,
            "parent_ids": parents,
        }

    def trial(self, n: int) -> None:
        adapter_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        kwargs = self.store_kwargs(adapter_id, self.rng.randrange(len(self.sources)))
        step = CRASH_STEPS[(n // 2) % len(CRASH_STEPS)] if n % 2 == 0 else None
        claim = step == "claimed" or self.rng.random() < 0.25
        pid = os.fork()
        if pid == 0:  # the child: store, or die trying
            os.environ.update({CRASH_AT_ENV: step or "", FORCE_CLAIM_ENV: "1" if claim else ""})
            code = 0
            try:
                registry = self.open()
                registry.store(**kwargs)
                registry.close()
            except BaseException as err:  # an error, not a crash: reported as a violation
                print(f"{adapter_id}: {type(err).__name__}: {err}", file=sys.stderr)
                code = 1
            finally:
                os._exit(code)
        if step is None:
            time.sleep(self.rng.uniform(0.0, 0.08))
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        ended = "killed" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        self.counts[f"{step or 'timed'}: {ended}"] += 1
        if ended == "exit 1" or (step is not None and ended != "killed"):
            self.violations.append(f"{adapter_id}: the child ended with {ended} (step {step})")
        self.after_crash(adapter_id, kwargs, full=(n + 1) % FULL_CHECK_EVERY == 0)

    def after_crash(self, adapter_id: str, kwargs: dict[str, Any], full: bool) -> None:
        registry = self.open()
        try:
            report = registry.recover()
            self.counts["rolled forward"] += len(report.rolled_forward)
            self.counts["staging removed"] += len(report.removed_staging)
            self.counts["claims removed"] += len(report.removed_claims)
            if not report.clean:
                self.violations.append(f"after {adapter_id}: recover() not clean: {report}")
            try:  # a retry either stores it or finds it stored, never a half state
                registry.store(**kwargs)
                self.counts["retry stored"] += 1
            except AdapterAlreadyExistsError:
                self.counts["retry found it"] += 1
            self.check(registry, adapter_id, kwargs, full)
        finally:
            registry.close()

    def check(
        self, registry: AdapterRegistry, adapter_id: str, kwargs: dict[str, Any], full: bool
    ) -> None:
        def fail(problem: str) -> None:
            self.violations.append(f"after {adapter_id}: {problem}")

        root = registry.root
        record = registry.retrieve_by_id(adapter_id)
        if not registry.verify(adapter_id).ok:
            fail(f"{adapter_id} does not verify")
        if (root / adapter_id / "adapter.safetensors").read_bytes() != kwargs["weights"]:
            fail(f"{adapter_id} holds other bytes than were stored")
        ids = {r.id for r in registry.list_all()}
        names = {e.name for e in os.scandir(root) if not e.name.startswith(".")}
        if names != ids:
            fail(f"directories without rows {names - ids}, rows without directories {ids - names}")
        leftovers = os.listdir(root / ".staging") if (root / ".staging").exists() else []
        if leftovers:
            fail(f"staging leftovers {leftovers}")
        for earlier, identity in self.identity.items():
            if _identity(root / earlier) != identity:
                fail(f"{earlier}, stored before, changed on disk")
        self.stored[adapter_id] = _digests(root / adapter_id)
        self.identity[adapter_id] = _identity(root / adapter_id)
        if record.file_hash != self.stored[adapter_id][0]:
            fail(f"{adapter_id}: row hash differs from the file's")
        if full:
            for earlier, digests in self.stored.items():
                if _digests(root / earlier) != digests:
                    fail(f"{earlier}, stored before, is not byte-identical")


def _identity(directory: Path) -> tuple[int, int, int, int]:
    st = (directory / "adapter.safetensors").stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode


def _digests(directory: Path) -> tuple[str, str]:
    return (
        hashlib.sha256((directory / "adapter.safetensors").read_bytes()).hexdigest(),
        hashlib.sha256((directory / "adapter_config.json").read_bytes()).hexdigest(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home", type=Path)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db-url", default=None, help="default: SQLite in HOME")
    opts = parser.parse_args(argv)
    trials = Trials(opts.home, opts.seed, opts.db_url)
    started = time.perf_counter()
    for n in range(opts.trials):
        trials.trial(n)
    registry = trials.open()  # the last word: every byte of every adapter, once more
    for earlier, digests in trials.stored.items():
        if _digests(registry.root / earlier) != digests:
            trials.violations.append(f"at the end: {earlier} is not byte-identical")
    bad = [r.adapter_id for r in registry.verify_all() if not r.ok]
    if bad:
        trials.violations.append(f"at the end: verify_all() fails {bad}")
    registry.close()
    print(
        json.dumps(
            {
                "trials": opts.trials,
                "adapters": len(trials.stored),
                "seconds": round(time.perf_counter() - started, 1),
                "outcomes": dict(sorted(trials.counts.items())),
                "violations": trials.violations,
            },
            indent=2,
        )
    )
    return 1 if trials.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())

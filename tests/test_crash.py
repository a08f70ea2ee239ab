"""Crash injection (issue 5): SIGKILL at every step of store() and at random moments, then
recover(); nothing lost, torn or changed. ADAPTER_REGISTRY_STRESS_SCALE=10 runs 2,000 trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapter_registry._core import CRASH_STEPS

from postgres import PostgresServer

HARNESS = Path(__file__).resolve().parent / "crash_harness.py"
SCALE = int(os.environ.get("ADAPTER_REGISTRY_STRESS_SCALE", "1"))


def run_harness(home: Path, trials: int, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(HARNESS), str(home), "--trials", str(trials), *extra],
        capture_output=True, text=True, timeout=600 * SCALE,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    print(json.dumps(result, indent=2))  # the figures, for -s and for the note
    assert result["violations"] == []
    assert done.returncode == 0
    outcomes = result["outcomes"]
    assert result["trials"] == result["adapters"] == trials
    for step in CRASH_STEPS:  # every named step was reached, and killed there
        assert outcomes[f"{step}: killed"] > 0, step
    assert outcomes["timed: killed"] > 0
    # recover() had work of each kind to do, and every retry ended in one of two whole states
    assert outcomes["rolled forward"] > 0
    assert outcomes["staging removed"] > 0
    assert outcomes["claims removed"] > 0
    assert outcomes["retry stored"] + outcomes["retry found it"] == trials
    return result


@pytest.mark.stress
def test_sigkill_anywhere_in_store_loses_and_tears_nothing(tmp_path: Path) -> None:
    run_harness(tmp_path / "home", 200 * SCALE)


@pytest.mark.stress
def test_sigkill_anywhere_in_store_on_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    """The same trials on a PostgreSQL server: a kill inside the transaction leaves a server
    backend whose transaction the server must end, and recover() and the retry must not wait
    on it. Fewer trials than on SQLite: each step is still killed 4 times (CI time)."""
    db_url = postgres.create_database(f"crash_{os.getpid()}")
    result = run_harness(tmp_path / "home", 64 * SCALE, "--db-url", db_url, "--seed", "1")
    assert result["outcomes"]["inserted: killed"] >= 4 * SCALE

"""Interrupted stores (issue 12, item 3): a SIGINT (Ctrl-C) or SIGTERM at any step of a store
either lets it complete (published, registered, and reported as stored) or leaves nothing
behind; the command line never calls an adapter that exists "aborted". Each signal is sent by
the store's own process at a named crash point (ADAPTER_REGISTRY_CRASH_SIGNAL), so every run
is the same run. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRegistry, _core
from adapter_registry._lora_files import lora_of_size

from conftest import ctrl_c_as_at_a_terminal, entries, rows

#: Where a signal stops the store before anything is published: nothing must remain.
BEFORE_PUBLISH = ("copying", "weights-synced", "staged")
#: Where it arrives during or after the publish: the store must complete.
AFTER_PUBLISH = ("claimed", "before-rename", "renamed", "published", "inserted")


def test_the_steps_are_every_crash_point() -> None:
    assert set(BEFORE_PUBLISH + AFTER_PUBLISH) == set(_core.CRASH_STEPS)


@pytest.fixture
def adapter_files(tmp_path: Path) -> tuple[Path, Path]:
    weights, config = lora_of_size(16 << 20, seed=3)  # 16 chunks: the copy is checked between
    (tmp_path / "w.safetensors").write_bytes(weights)
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    return tmp_path / "w.safetensors", tmp_path / "adapter_config.json"


def store_signalled(
    registry: AdapterRegistry, files: tuple[Path, Path], step: str, signal: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        _core.CRASH_AT_ENV: step,
        _core.CRASH_SIGNAL_ENV: signal,
        # "claimed" is a step of the publish that filesystems without renameat2 take.
        "ADAPTER_REGISTRY_FORCE_CLAIM": "1" if step == "claimed" else "",
    }
    return subprocess.run(
        [
            sys.executable, "-m", "adapter_registry.cli", "--root", str(registry.root),
            "--db-url", registry.db_url, "store", str(files[0]), "--config", str(files[1]),
            "--task-type", "bug-fix", "--source", "manual", "--session-id", "interrupted",
            "--json",
        ],
        capture_output=True, text=True, timeout=120, env=env,
        preexec_fn=ctrl_c_as_at_a_terminal,
    )  # fmt: skip


@pytest.mark.parametrize("step", BEFORE_PUBLISH)
def test_a_signal_before_the_publish_leaves_nothing(
    registry: AdapterRegistry, adapter_files: tuple[Path, Path], step: str
) -> None:
    before = entries(registry)
    done = store_signalled(registry, adapter_files, step, "INT")
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "error: interrupted: nothing was stored"
    assert done.stdout == "" and "Aborted" not in done.stderr
    assert rows(registry) == 0
    assert [e for e in entries(registry) if e != ".staging"] == [
        e for e in before if e != ".staging"
    ]
    assert os.listdir(registry.root / ".staging") == []  # not even a dead store's staging
    assert registry.recover().clean


@pytest.mark.parametrize("step", AFTER_PUBLISH)
def test_a_signal_during_or_after_the_publish_lets_the_store_complete(
    registry: AdapterRegistry, adapter_files: tuple[Path, Path], step: str
) -> None:
    done = store_signalled(registry, adapter_files, step, "INT")
    assert done.returncode == 0, done.stderr
    assert "Aborted" not in done.stderr
    printed = json.loads(done.stdout)
    assert done.stderr.strip() == f"interrupted, but the store of {printed['id']} had completed"
    record = registry.retrieve_by_id(printed["id"])
    assert registry.verify(record.id).ok
    report = registry.recover()
    assert report.clean and report.rolled_forward == []


@pytest.mark.parametrize("step", ["copying", "before-rename", "inserted"])
def test_sigterm_is_taken_as_sigint(
    registry: AdapterRegistry, adapter_files: tuple[Path, Path], step: str
) -> None:
    done = store_signalled(registry, adapter_files, step, "TERM")
    if step == "copying":
        assert done.returncode == 130 and rows(registry) == 0, done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert registry.verify(json.loads(done.stdout)["id"]).ok


LIBRARY_STORE = textwrap.dedent(
    """
    import sys
    from adapter_registry import AdapterRegistry
    root, db_url, weights, config = sys.argv[1:5]
    registry = AdapterRegistry(root=root, db_url=db_url)
    try:
        registry.store(weights, config=config, task_type="bug-fix", source="manual",
                       session_id="library", adapter_id=sys.argv[5])
    except KeyboardInterrupt as interrupt:
        print("interrupted:", *getattr(interrupt, "__notes__", []))
    else:
        print("not interrupted")
    """
)


@pytest.mark.parametrize("step", ["copying", "renamed"])
def test_the_library_raises_the_interrupt_and_says_whether_the_store_completed(
    registry: AdapterRegistry, adapter_files: tuple[Path, Path], step: str
) -> None:
    adapter_id = "0f0f0f0f-0000-4000-8000-000000000001"
    env: dict[str, Any] = {**os.environ, _core.CRASH_AT_ENV: step, _core.CRASH_SIGNAL_ENV: "INT"}
    done = subprocess.run(
        [sys.executable, "-c", LIBRARY_STORE, str(registry.root), registry.db_url,
         *map(str, adapter_files), adapter_id],
        capture_output=True, text=True, timeout=120, env=env,
        preexec_fn=ctrl_c_as_at_a_terminal,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    if step == "copying":
        assert done.stdout.strip() == "interrupted:"
        assert rows(registry) == 0
    else:
        assert done.stdout.strip() == (
            f"interrupted: adapter {adapter_id} was stored before the interrupt"
        )
        assert registry.verify(adapter_id).ok

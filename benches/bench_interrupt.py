"""Ctrl-C during the copy of a 1 GiB adapter: how soon store() stops. A timer thread sends the
process SIGINT 100 ms into the store; the Rust copy loop hands the signal to Python every 25 ms,
so the store raises KeyboardInterrupt, leaving nothing, well before the copy would have ended.
Beside it, the same store left alone. The latency is the interrupted time less 100 ms; aim:
about 100 ms."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import one_pair

from conftest import LORA_CONFIG, run_pedantic

GROUP = "Ctrl-C 100 ms into the store of a 1 GiB adapter"
ROUNDS = 5
SIGNAL_AFTER = 0.1


@contextmanager
def setup(home: Path) -> Iterator[tuple[Path, AdapterRegistry]]:
    path = home / "src.safetensors"
    path.write_bytes(one_pair(1 << 30, 0))
    path.read_bytes()
    registry = AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")
    yield path, registry
    registry.close()


def _store(path: Path, registry: AdapterRegistry) -> Any:
    return registry.store(
        path, config=LORA_CONFIG, task_type="bug-fix", source="manual", session_id="bench"
    )


def store_interrupted(path: Path, registry: AdapterRegistry) -> str:
    timer = threading.Timer(SIGNAL_AFTER, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        _store(path, registry)
    except KeyboardInterrupt:
        return "interrupted"
    finally:
        timer.cancel()
    return "completed before the signal"


def store_whole(path: Path, registry: AdapterRegistry) -> str:
    _store(path, registry)
    return "interrupted"  # the same answer, so the contenders' results compare


CONTENDERS = [store_interrupted, store_whole]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_interrupt_1gib(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) == "interrupted"

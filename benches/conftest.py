"""Each bench_*.py module describes one comparison for both pytest-benchmark and run.py:
GROUP, CONTENDERS (ours first, then the baselines), ROUNDS, CALLS (per round, for
sub-millisecond operations) and a setup(workdir) context manager yielding the contenders'
arguments."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest


def bench_args(module: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with module.setup(tmp_path_factory.mktemp(module.__name__)) as args:
        yield args


def run_pedantic(benchmark: Any, module: ModuleType, contender: Any, args: Any) -> Any:
    benchmark.group = module.GROUP
    iterations = getattr(module, "CALLS", 1)
    return benchmark.pedantic(
        contender, args=args, rounds=module.ROUNDS, iterations=iterations, warmup_rounds=1
    )

"""Each bench_*.py module describes one comparison for both pytest-benchmark and run.py:
GROUP, CONTENDERS (ours first, then the baselines), ROUNDS, CALLS (per round, for
sub-millisecond operations) and a setup(workdir) context manager yielding the contenders'
arguments."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def args(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """What the requesting module's setup() yields, for its contenders."""
    module = request.module
    with module.setup(tmp_path_factory.mktemp(module.__name__)) as yielded:
        yield yielded


def run_pedantic(benchmark: Any, module: ModuleType, contender: Any, args: Any) -> Any:
    benchmark.group = module.GROUP
    iterations = getattr(module, "CALLS", 1)
    return benchmark.pedantic(
        contender, args=args, rounds=module.ROUNDS, iterations=iterations, warmup_rounds=1
    )

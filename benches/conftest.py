from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

MIB = 1 << 20


@pytest.fixture(scope="session")
def cached_200mib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 200 MiB file of random bytes, read once so that it sits in the page cache."""
    path = tmp_path_factory.mktemp("bench") / "weights.bin"
    path.write_bytes(np.random.default_rng(0).bytes(200 * MIB))
    path.read_bytes()
    yield path
    path.unlink()

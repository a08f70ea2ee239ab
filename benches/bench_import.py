"""Start-up: a fresh interpreter that imports adapter_registry, beside one that imports sqlmodel
(which adapter_registry is built on), each `python -c "import ..."` run as a subprocess and timed
from spawn to exit. Target: at most 1.15x sqlmodel's (ratio at least 0.87). The pytest test
also checks that importing adapter_registry leaves torch unimported."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import run_pedantic

GROUP = "start-up: python -c 'import adapter_registry'"
ROUNDS = 15


def python(code: str, cwd: Path) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[Path]]:
    yield (workdir,)  # run from an empty directory, so that nothing local shadows a package


def import_adapter_registry(cwd: Path) -> str:
    return python("import adapter_registry", cwd)


def import_sqlmodel(cwd: Path) -> str:
    return python("import sqlmodel", cwd)


CONTENDERS = [import_adapter_registry, import_sqlmodel]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_import(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) == ""


def test_import_leaves_torch_out(args: Any) -> None:
    loaded = python("import sys, adapter_registry; print('torch' in sys.modules)", *args)
    assert loaded.strip() == "False"

"""Start-up: a fresh interpreter that imports adapter_registry, beside one that imports sqlmodel
(which adapter_registry is built on), each `python -c "import ..."` run as a subprocess and timed
from spawn to exit. Target: at most 1.15x sqlmodel's (ratio at least 0.87). The pytest test
also checks that importing adapter_registry leaves torch unimported.

The command line's start-up (`adapter-registry ls` on 10,000 records) is bench_cli_start.py,
which uses this module's setup."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from adapter_registry import AdapterRecord, AdapterRegistry

from conftest import record_rows, run_pedantic, size

GROUP = "start-up: python -c 'import adapter_registry'"
ROUNDS = 15
LS_RECORDS, LS_TASKS, LS_LIMIT = size(10_000, 500), 50, 20


def python(cwd: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[Path]]:
    """The subprocesses run in an empty directory (nothing local shadows a package), beside
    `home`, a registry of LS_RECORDS records for the command line."""
    cwd = workdir / "cwd"
    cwd.mkdir()
    home = workdir / "home"
    db_url = f"sqlite:///{home / 'adapter_registry.db'}"
    with AdapterRegistry(root=home / "adapters", db_url=db_url) as registry:
        rows = record_rows(LS_RECORDS, LS_TASKS)
        with registry._db.write() as conn:
            conn.execute(insert(AdapterRecord.__table__), rows)  # type: ignore[attr-defined]
    yield (workdir,)


def import_adapter_registry(workdir: Path) -> str:
    return python(workdir / "cwd", "-c", "import adapter_registry")


def import_sqlmodel(workdir: Path) -> str:
    return python(workdir / "cwd", "-c", "import sqlmodel")


CONTENDERS = [import_adapter_registry, import_sqlmodel]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_import(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) == ""


def test_import_leaves_torch_out(args: Any) -> None:
    code = "import sys, adapter_registry; print('torch' in sys.modules)"
    assert python(args[0] / "cwd", "-c", code).strip() == "False"

"""Start-up: a fresh interpreter that imports adapter_registry, beside one that imports sqlmodel
(which adapter_registry is built on), each `python -c "import ..."` run as a subprocess and timed
from spawn to exit. Target: at most 1.15x sqlmodel's (ratio at least 0.87). The pytest test
also checks that importing adapter_registry leaves torch unimported.

Where the command line is installed, `adapter-registry ls --limit 20` on a registry of 10,000
records (rows written straight into its database, as bench_query does; ls reads no files) is a
third contender, run as `python -m adapter_registry.cli`: its ratio is ls / bare import, and the
target is below 2 (ls costs less than twice the import)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from adapter_registry import AdapterRecord, AdapterRegistry

from conftest import record_rows, run_pedantic

GROUP = "start-up: python -c 'import adapter_registry'"
ROUNDS = 15
LS_RECORDS, LS_TASKS, LS_LIMIT = 10_000, 50, 20
HAS_CLI = importlib.util.find_spec("adapter_registry.cli") is not None


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


def cli_ls_10k_records(workdir: Path) -> str:
    home = str(workdir / "home")
    return python(workdir / "cwd", "-m", "adapter_registry.cli", "--home", home, "ls",
                  "--limit", str(LS_LIMIT))  # fmt: skip


CONTENDERS = [import_adapter_registry, import_sqlmodel]
if HAS_CLI:
    CONTENDERS.append(cli_ls_10k_records)


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_import(benchmark: Any, args: Any, contender: Any) -> None:
    out = run_pedantic(benchmark, sys.modules[__name__], contender, args)
    if contender is cli_ls_10k_records:
        assert len(out.splitlines()) == LS_LIMIT + 1  # a header, then the newest 20
    else:
        assert out == ""


def test_import_leaves_torch_out(args: Any) -> None:
    code = "import sys, adapter_registry; print('torch' in sys.modules)"
    assert python(args[0] / "cwd", "-c", code).strip() == "False"

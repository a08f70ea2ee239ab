"""Start-up of the command line: `adapter-registry ls --limit 20` on a registry of 10,000
records (rows written straight into its database, as bench_query does; ls reads no files),
run as the installed console script, beside twice the bare `python -c "import adapter_registry"`.
Target: ls under 2x the bare import, i.e. a ratio above 1."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from bench_import import LS_LIMIT, python, setup
from conftest import run_pedantic

GROUP = "start-up: adapter-registry ls, 10k records"
ROUNDS = 15
SCRIPT = shutil.which("adapter-registry", path=str(Path(sys.executable).parent))

__all__ = ["setup"]


def adapter_registry_ls(workdir: Path) -> str:
    assert SCRIPT is not None, "the console script is installed with the package"
    home = str(workdir / "home")
    return python(workdir / "cwd", SCRIPT, "--home", home, "ls", "--limit", str(LS_LIMIT))


def twice_the_bare_import(workdir: Path) -> str:
    return python(workdir / "cwd", "-c", "import adapter_registry") + python(
        workdir / "cwd", "-c", "import adapter_registry"
    )


CONTENDERS = [adapter_registry_ls, twice_the_bare_import]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_cli_start(benchmark: Any, args: Any, contender: Any) -> None:
    out = run_pedantic(benchmark, sys.modules[__name__], contender, args)
    if contender is adapter_registry_ls:
        assert len(out.splitlines()) == LS_LIMIT + 1  # a header, then the newest 20

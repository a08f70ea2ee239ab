"""Moving adapters between registries: `export` of 1,000 adapters of 1 MiB to a `.tar` bundle,
then `import_bundle` of it into a new, empty registry, beside `tar cf` + `tar xf` +
`sha256sum -c` + `sync` of the same files (the registry's adapter directories). Both sides hash
every byte they move and end durable. Target: ours at least 0.8x the baseline's speed (a ratio
baseline / ours of at least 0.8).

Each call first removes what its previous call wrote (the bundle and the target registry, or
the tar and the extracted tree), so both contenders pay the same clean-up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import AdapterRegistry

from conftest import lora_dir, run_pedantic, size

GROUP = "export + import of 1,000 x 1 MiB adapters (a .tar bundle, hashes checked, durable)"
ROUNDS = 5
COUNT = size(1000, 8)


def _registry(home: Path) -> AdapterRegistry:
    return AdapterRegistry(root=home / "adapters", db_url=f"sqlite:///{home / 'r.db'}")


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[AdapterRegistry, Path]]:
    """A source registry of COUNT adapters (distinct bytes each), and the baseline's checksum
    list of the same files, written as `sha256sum` writes it."""
    source = _registry(workdir / "source")
    for i in range(COUNT):
        lora_dir(workdir / "in" / str(i), seed=i)
        source.store(workdir / "in" / str(i), task_type="bug-fix", source="manual", session_id="b")
    shutil.rmtree(workdir / "in")
    lines = []
    for record in source.list_all():
        for name in ("adapter.safetensors", "adapter_config.json", ".record.json"):
            digest = subprocess.run(
                ["sha256sum", f"{record.id}/{name}"], cwd=source.root, check=True,
                capture_output=True, text=True,
            ).stdout  # fmt: skip
            lines.append(digest)
    (workdir / "SHA256SUMS").write_text("".join(lines))
    try:
        yield source, workdir
    finally:
        source.close()


def _fresh(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def export_import(source: AdapterRegistry, workdir: Path) -> int:
    bundle, home = workdir / "ours.tar", workdir / "target"
    _fresh(bundle, home)
    source.export(bundle)
    with _registry(home) as target:
        report = target.import_bundle(bundle)
    assert report.ok and len(report.imported) == COUNT, report
    return len(report.imported)


def tar_sha256sum_sync(source: AdapterRegistry, workdir: Path) -> int:
    archive, tree = workdir / "baseline.tar", workdir / "extracted"
    _fresh(archive, tree)
    ids = [r.id for r in source.list_all()]
    subprocess.run(["tar", "cf", str(archive), "-C", str(source.root), *ids], check=True)
    tree.mkdir()
    subprocess.run(["tar", "xf", str(archive), "-C", str(tree)], check=True)
    subprocess.run(
        ["sha256sum", "--quiet", "-c", str(workdir / "SHA256SUMS")], cwd=tree, check=True
    )
    subprocess.run(["sync"], check=True)
    return len(ids)


CONTENDERS = [export_import, tar_sha256sum_sync]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_bundle(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args) == COUNT

"""The CLI's export, import and backup (issue 16 items 3 and 4) on both backends: --json
reports, filters, exit status 1 when an adapter is refused, the progress bar over bytes, and
import creating the registry it imports into while export and backup never create one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from adapter_registry import AdapterRecord, AdapterRegistry
from adapter_registry.cli import cli
from adapter_registry.cli.transfer import Bar

from bundling import family, writable


def run(registry: AdapterRegistry, *args: str) -> Result:
    where = ["--root", str(registry.root), "--db-url", registry.db_url]
    return CliRunner().invoke(cli, [*where, *args], env={"RUNE_HOME": None, "RUNE_DB_URL": None})


@pytest.fixture
def made(registry: AdapterRegistry) -> dict[str, AdapterRecord]:
    return family(registry)


def test_export_then_import_as_json(
    registry: AdapterRegistry, target: AdapterRegistry, made: dict[str, AdapterRecord],
    tmp_path: Path,
) -> None:  # fmt: skip
    bundle = tmp_path / "b.tar"
    exported = run(registry, "export", str(bundle), "--task-type", "refactor", "--json")
    assert exported.exit_code == 0, exported.output
    out = json.loads(exported.stdout)
    assert out["adapters"] == [made["grand"].id, made["parent"].id, made["child"].id]
    assert out["files"] == 9 and out["path"] == str(bundle)

    imported = run(target, "import", str(bundle), "--with-aliases", "--json")
    assert imported.exit_code == 0, imported.output
    report = json.loads(imported.stdout)
    assert report["ok"] and report["imported"] == out["adapters"] and report["refused"] == []
    assert report["aliases_set"] == ["production"] and report["evaluations"] == 3
    assert target.resolve_alias("production").id == made["child"].id

    again = run(target, "import", str(bundle))
    assert again.exit_code == 0, again.output
    assert "0 imported, 3 skipped, 0 refused" in again.stdout


def test_export_filters_ancestors_and_archived(
    registry: AdapterRegistry, made: dict[str, AdapterRecord], tmp_path: Path
) -> None:
    alone = run(registry, "export", str(tmp_path / "a"), "--id", made["child"].id,
                "--no-ancestors", "--json")  # fmt: skip
    assert json.loads(alone.stdout)["adapters"] == [made["child"].id]
    live = run(registry, "export", str(tmp_path / "l"), "--exclude-archived", "--json")
    assert made["other"].id not in json.loads(live.stdout)["adapters"]
    everything = run(registry, "export", str(tmp_path / "e"), "--json")
    assert made["other"].id in json.loads(everything.stdout)["adapters"]
    taken = run(registry, "export", str(tmp_path / "e"))
    assert taken.exit_code == 1 and "already exists" in taken.stderr


def test_a_refused_adapter_exits_1_naming_it(
    registry: AdapterRegistry, target: AdapterRegistry, made: dict[str, AdapterRecord],
    tmp_path: Path,
) -> None:  # fmt: skip
    bundle = tmp_path / "b"
    registry.export(bundle)
    writable(bundle)
    weights = bundle / "adapters" / made["other"].id / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    result = run(target, "import", str(bundle), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [(r["id"], r["error"]) for r in report["refused"]] == [
        (made["other"].id, "IntegrityError")
    ]
    assert len(report["imported"]) == 3
    hostile = tmp_path / "h"
    hostile.mkdir()
    (hostile / "manifest.json").symlink_to("/etc/passwd")
    refused = run(target, "import", str(hostile))
    assert refused.exit_code == 1 and refused.stderr.startswith("error: bundle ")


def test_backup_restores_into_an_empty_home_and_import_creates_it(
    registry: AdapterRegistry, made: dict[str, AdapterRecord], tmp_path: Path
) -> None:
    backup = run(registry, "backup", str(tmp_path / "all.tar"), "--json")
    assert backup.exit_code == 0, backup.output
    assert len(json.loads(backup.stdout)["adapters"]) == 4
    home = tmp_path / "restored"
    restored = CliRunner().invoke(
        cli, ["--home", str(home), "import", str(tmp_path / "all.tar"), "--with-aliases"],
        env={"RUNE_HOME": None, "RUNE_DB_URL": None},
    )  # fmt: skip
    assert restored.exit_code == 0, restored.output
    with AdapterRegistry(home=home, create=False) as again:
        assert sorted(r.id for r in again.list_all()) == sorted(r.id for r in made.values())
        assert all(r.ok for r in again.verify_all())
        assert again.aliases() == {"production": made["child"].id}


def test_the_progress_bar_counts_bytes_to_the_total() -> None:
    seen: list[tuple[int, int, int]] = []
    with Bar("import") as bar:
        for done in (1, 2, 3):
            bar(done, 3, done * 100, 300)
            assert bar._bar is not None
            seen.append((bar._bar.files_done, bar._bar.files_total, bar._bar.bytes_done))
        assert bar._bar.total_bytes == 300
    assert seen == [(1, 3, 100), (2, 3, 200), (3, 3, 300)]


def test_import_of_a_bundle_that_is_not_there_creates_no_registry(tmp_path: Path) -> None:
    """The bundle is opened before the registry is made: a missing bundle, or a folder that
    is no bundle, leaves the new home unmade."""
    home = tmp_path / "new-home"
    (tmp_path / "not-a-bundle").mkdir()
    for src in (tmp_path / "missing.tar", tmp_path / "not-a-bundle"):
        result = CliRunner().invoke(
            cli,
            ["--home", str(home), "import", str(src)],
            env={"RUNE_HOME": None, "RUNE_DB_URL": None},
        )
        assert result.exit_code == 1 and result.stderr.startswith(f"error: bundle {src}")
        assert not home.exists()

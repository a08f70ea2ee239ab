"""Export and import (issue 16 item 3), on both backends: what a bundle holds, what an import
keeps (ids, created_at, lineage, mutable state, tags, evaluation history), idempotence,
refusals that write nothing, and aliases only when asked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adapter_registry import (
    AdapterAlreadyExistsError,
    AdapterRegistry,
    IntegrityError,
    InvalidAdapterError,
    InvalidBundleError,
    _core,
)
from adapter_registry._lora_files import lora_bytes, lora_config

from bundling import (
    family,
    history,
    read_manifest,
    state,
    store,
    writable,
    write_manifest,
)
from conftest import ctrl_c_as_at_a_terminal, rows

FILES = ["adapter.safetensors", "adapter_config.json", ".record.json"]


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_a_round_trip_keeps_ids_times_lineage_state_tags_and_history(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path, form: str
) -> None:
    made = family(registry)
    bundle = tmp_path / ("bundle.tar" if form == "tar" else "bundle")
    exported = registry.export(bundle, ids=[made["child"].id])
    # The ancestors came along, parents first; the unrelated adapter did not.
    assert exported.adapters == [made["grand"].id, made["parent"].id, made["child"].id]
    assert exported.files == 9 and bundle.is_file() == (form == "tar")

    report = target.import_bundle(bundle)

    assert report.ok and report.imported == exported.adapters and report.skipped == []
    for key in ("grand", "parent", "child"):
        mine, theirs = made[key], target.retrieve_by_id(made[key].id)
        # Every column as exported; the files are where this registry keeps them.
        assert {**theirs.to_dict(), "file_path": ""} == {**mine.to_dict(), "file_path": ""}
        assert theirs.directory == target.root / mine.id
        assert Path(theirs.file_path).parent == target.root / mine.id
        assert history(target, mine.id) == history(registry, mine.id)
    child = target.retrieve_by_id(made["child"].id)
    assert (child.fitness_score, child.pass_rate) == (0.75, 0.5)
    assert [a.id for a in target.lineage(child.id)] == [made["parent"].id, made["grand"].id]
    assert [c.id for c in target.children(made["parent"].id)] == [child.id]
    assert target.tags(child.id) == {"team": "core", "stage": "canary"}
    assert report.evaluations == 3  # fitness, pass rate, latency: as they are, not replayed
    assert all(r.ok for r in target.verify_all())
    assert target.aliases() == {}  # only when asked


def test_export_takes_search_filters_archived_included_unless_excluded(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    everything = registry.export(tmp_path / "all")
    assert sorted(everything.adapters) == sorted(r.id for r in made.values())
    live = registry.export(tmp_path / "live", include_archived=False)
    assert made["other"].id not in live.adapters and len(live.adapters) == 3
    refactor = registry.export(tmp_path / "refactor", task_type="refactor", with_ancestors=False)
    assert refactor.adapters == [made["child"].id]
    agent = registry.export(tmp_path / "agent", agent_id="agent-7")
    assert agent.adapters == [made["other"].id]
    manifest = read_manifest(tmp_path / "all")
    entry = next(e for e in manifest["adapters"] if e["record"]["id"] == made["child"].id)
    assert entry["tags"] == {"team": "core", "stage": "canary"}
    assert entry["record"]["fitness_score"] == 0.75
    assert entry["files"]["adapter.safetensors"]["sha256"] == made["child"].file_hash
    assert set(entry["files"]) == set(FILES)
    assert manifest["aliases"] == {"production": made["child"].id}


def test_a_second_import_skips_and_leaves_the_targets_state_naming_differences(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    registry.export(tmp_path / "b")
    target.import_bundle(tmp_path / "b")
    child = made["child"].id
    target.update_fitness(child, 0.25)
    target.set_tags(child, {"team": "serving"})
    before = (state(target), history(target, child), target.tags(child))

    again = target.import_bundle(tmp_path / "b")

    assert again.ok and again.imported == [] and len(again.skipped) == 4
    assert again.differences == {child: ["fitness_score: 0.25 here, 0.75 in the bundle"]}
    assert again.evaluations == 0
    assert (state(target), history(target, child), target.tags(child)) == before


def test_same_id_other_hashes_is_refused_and_nothing_is_written_for_it(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    mine = store(registry, 1)
    other = store(registry, 2)
    store(target, 9, adapter_id=mine.id)  # the same id, other bytes
    before = target.retrieve_by_id(mine.id)
    registry.export(tmp_path / "b")

    report = target.import_bundle(tmp_path / "b")

    assert report.imported == [other.id]
    error = report.refused[mine.id]
    assert isinstance(error, AdapterAlreadyExistsError)
    assert mine.id in str(error) and "other hashes" in str(error)
    assert target.retrieve_by_id(mine.id) == before
    assert all(r.ok for r in target.verify_all())
    with pytest.raises(AdapterAlreadyExistsError, match=mine.id):
        report.raise_for_status()


def test_a_parent_in_neither_bundle_nor_target_refuses_its_children(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    registry.export(tmp_path / "b", ids=[made["child"].id], with_ancestors=False)
    before = state(target)

    report = target.import_bundle(tmp_path / "b")

    error = report.refused[made["child"].id]
    assert isinstance(error, InvalidAdapterError) and made["parent"].id in str(error)
    assert report.imported == [] and state(target) == before
    # With the parents there first, the same bundle imports.
    registry.export(tmp_path / "parents", ids=[made["parent"].id])
    assert target.import_bundle(tmp_path / "parents").ok
    assert target.import_bundle(tmp_path / "b").imported == [made["child"].id]


def test_aliases_only_when_asked_and_only_those_the_target_lacks(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    registry.set_alias("staging", made["parent"].id)
    mine = store(target, 20)
    target.set_alias("production", mine.id)
    registry.export(tmp_path / "b")

    report = target.import_bundle(tmp_path / "b", with_aliases=True)

    assert report.aliases_set == ["staging"]
    assert [a for a, _ in report.aliases_skipped] == ["production"]
    assert target.aliases() == {"production": mine.id, "staging": made["parent"].id}


def test_export_refuses_an_existing_dest_and_a_damaged_source_leaving_nothing(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    (tmp_path / "taken").mkdir()
    with pytest.raises(InvalidBundleError, match="already exists"):
        registry.export(tmp_path / "taken")
    weights = registry.root / made["grand"].id / "adapter.safetensors"
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    for dest in ("bad", "bad.tar"):
        with pytest.raises(IntegrityError, match=made["grand"].id):
            registry.export(tmp_path / dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "taken"]  # no partial left


def test_import_of_a_refused_adapter_writes_no_directory_row_or_staging(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    # A directory under the id without a row (a crash, a hand copy) is not overwritten.
    mine = store(registry, 1)
    registry.export(tmp_path / "b")
    (target.root / mine.id).mkdir(parents=True)
    (target.root / mine.id / "note").write_text("someone else's")
    before = state(target)
    report = target.import_bundle(tmp_path / "b")
    assert isinstance(report.refused[mine.id], AdapterAlreadyExistsError)
    assert state(target) == before
    assert (target.root / mine.id / "note").read_text() == "someone else's"


def test_store_after_import_sees_imported_parents(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    registry.export(tmp_path / "b")
    target.import_bundle(tmp_path / "b")
    child = target.store(
        lora_bytes(r=4, seed=30), config=lora_config(r=4), task_type="refactor",
        source="evolution", session_id="s", parent_ids=[made["child"].id],
    )  # fmt: skip
    assert (child.version, child.generation) == (made["child"].version + 1, 3)


def import_killed_once_published(target: AdapterRegistry, bundle: Path) -> None:
    """Import ``bundle`` into ``target`` in a process killed once its publishes are done."""
    code = (
        "import sys; from adapter_registry import AdapterRegistry; "
        "AdapterRegistry(root=sys.argv[1], db_url=sys.argv[2]).import_bundle(sys.argv[3])"
    )
    killed = subprocess.run(
        [sys.executable, "-c", code, str(target.root), target.db_url, str(bundle)],
        env={**os.environ, _core.CRASH_AT_ENV: "published"}, capture_output=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr


def test_an_import_cut_short_before_its_commit_completes_when_run_again(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    registry.export(tmp_path / "b")
    import_killed_once_published(target, tmp_path / "b")
    ids = sorted(r.id for r in made.values())
    assert rows(target) == 0  # published, durable, not registered
    assert sorted(e for e in os.listdir(target.root) if not e.startswith(".")) == ids

    report = target.import_bundle(tmp_path / "b")

    assert report.ok and sorted(report.imported) == ids
    assert target.tags(made["child"].id) == {"team": "core", "stage": "canary"}
    assert history(target, made["parent"].id) == history(registry, made["parent"].id)
    assert all(r.ok for r in target.verify_all())


def children_first_bundle(registry: AdapterRegistry, adapter_id: str, path: Path) -> Path:
    """A directory bundle of ``adapter_id`` and its ancestors whose manifest lists the
    children first (export writes parents first)."""
    registry.export(path, ids=[adapter_id])
    writable(path)
    manifest = read_manifest(path)
    manifest["adapters"].reverse()
    write_manifest(path, manifest)
    return path


def test_an_import_cut_short_registers_what_it_published_parents_first_when_run_again(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    bundle = children_first_bundle(registry, made["child"].id, tmp_path / "b")
    import_killed_once_published(target, bundle)
    report = target.import_bundle(bundle)
    assert report.ok
    assert report.imported == [made["grand"].id, made["parent"].id, made["child"].id]


def test_progress_counts_every_file_and_byte_to_the_totals(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    family(registry)
    calls: list[tuple[int, int, int, int]] = []
    exported = registry.export(tmp_path / "b.tar", progress=lambda *a: calls.append(a))
    assert calls[-1] == (12, 12, exported.bytes, exported.bytes)
    assert [c[2] for c in calls] == sorted(c[2] for c in calls)
    calls.clear()
    imported = target.import_bundle(tmp_path / "b.tar", progress=lambda *a: calls.append(a))
    assert (
        calls[-1] == (12, 12, imported.bytes, imported.bytes) and imported.bytes == exported.bytes
    )


def test_a_manifest_listing_children_first_still_imports_parents_first(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    report = target.import_bundle(children_first_bundle(registry, made["child"].id, tmp_path / "b"))
    assert report.ok
    assert report.imported == [made["grand"].id, made["parent"].id, made["child"].id]


def test_ctrl_c_registers_nothing_and_a_second_run_finishes(
    registry: AdapterRegistry, target: AdapterRegistry, tmp_path: Path
) -> None:
    made = family(registry)
    registry.export(tmp_path / "b")
    # The first adapter staged sends SIGINT to the importing process (a Ctrl-C), which goes on.
    code = (
        "import sys; from adapter_registry import AdapterRegistry; AdapterRegistry(root="
        "sys.argv[1], db_url=sys.argv[2]).import_bundle(sys.argv[3], threads=1)"
    )
    env = {**os.environ, _core.CRASH_AT_ENV: "staged", _core.CRASH_SIGNAL_ENV: "INT"}
    stopped = subprocess.run(
        [sys.executable, "-c", code, str(target.root), target.db_url, str(tmp_path / "b")],
        env=env, capture_output=True, text=True, timeout=120,
        preexec_fn=ctrl_c_as_at_a_terminal,
    )  # fmt: skip
    assert stopped.returncode != 0 and "KeyboardInterrupt" in stopped.stderr
    assert "run it again to finish it" in stopped.stderr
    assert rows(target) == 0
    report = target.import_bundle(tmp_path / "b")
    assert report.ok and sorted(report.imported) == sorted(r.id for r in made.values())
    assert all(r.ok for r in target.verify_all())

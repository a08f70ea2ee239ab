"""Truncated, tampered and hostile bundles (issue 16 item 3): each gets one of our typed errors
and nothing is written for the adapters concerned (no row, no directory, no staging left);
members that escape the bundle are never written anywhere."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from adapter_registry import (
    AdapterRecord,
    AdapterRegistry,
    AdapterRegistryError,
    IntegrityError,
    InvalidAdapterError,
    InvalidBundleError,
)

from bundling import family, read_manifest, state, tar_of, writable, write_manifest


@pytest.fixture
def made(registry: AdapterRegistry) -> dict[str, AdapterRecord]:
    return family(registry)


@pytest.fixture
def bundle(registry: AdapterRegistry, made: dict[str, AdapterRecord], tmp_path: Path) -> Path:
    """A good directory bundle of the whole family, writable for the test to spoil."""
    path = tmp_path / "bundle"
    registry.export(path)
    writable(path)
    return path


def weights(bundle: Path, adapter_id: str) -> Path:
    return bundle / "adapters" / adapter_id / "adapter.safetensors"


def refused_whole(target: AdapterRegistry, src: Path, match: str) -> None:
    before = state(target)
    with pytest.raises(InvalidBundleError, match=match):
        target.import_bundle(src)
    assert state(target) == before


def refused_alone(
    target: AdapterRegistry, src: Path, bad: list[str], imported: list[str], kind: type, match: str
) -> None:
    report = target.import_bundle(src)
    assert sorted(report.refused) == sorted(bad)
    assert report.imported == imported
    assert isinstance(report.refused[bad[0]], kind)  # the one concerned; its children follow
    for adapter_id in bad:
        assert isinstance(report.refused[adapter_id], AdapterRegistryError)
        assert adapter_id in str(report.refused[adapter_id])
        assert not os.path.lexists(target.root / adapter_id)
    assert match in str(report.refused[bad[0]])
    assert sorted(r.id for r in target.list_all()) == sorted(imported)
    assert [e for e in state(target)[1] if e.startswith(".staging/")] == []


def member(name: str, kind: bytes, **fields: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs-escape", "adapters/../../escape"])
def test_tar_members_that_escape_are_refused_and_written_nowhere(
    target: AdapterRegistry, bundle: Path, tmp_path: Path, name: str
) -> None:
    tar = tar_of(bundle, tmp_path / "b.tar", [member(name, tarfile.REGTYPE)])
    refused_whole(target, tar, "escapes")
    assert not (tmp_path / "escape").exists() and not Path("/tmp/abs-escape").exists()


@pytest.mark.parametrize(
    "kind, fields",
    [
        (tarfile.SYMTYPE, {"linkname": "/etc/passwd"}),
        (tarfile.LNKTYPE, {"linkname": "manifest.json"}),
        (tarfile.CHRTYPE, {"devmajor": 1, "devminor": 3}),
        (tarfile.FIFOTYPE, {}),
    ],
    ids=["symlink", "hardlink", "device", "fifo"],
)
def test_tar_links_devices_and_fifos_are_refused(
    target: AdapterRegistry, bundle: Path, made: dict[str, AdapterRecord], tmp_path: Path,
    kind: bytes, fields: dict[str, Any],
) -> None:  # fmt: skip
    victim = weights(bundle, made["grand"].id)
    victim.unlink()
    name = str(victim.relative_to(bundle))
    tar = tar_of(bundle, tmp_path / "b.tar", [member(name, kind, **fields)])
    refused_whole(target, tar, "not a regular file")


def test_a_tar_member_given_twice_is_refused(
    target: AdapterRegistry, bundle: Path, tmp_path: Path
) -> None:
    tar = tar_of(bundle, tmp_path / "b.tar")
    with tarfile.open(tar, "a") as archive:
        archive.add(bundle / "manifest.json", arcname="manifest.json")
    refused_whole(target, tar, "comes twice")


def test_a_truncated_tar_is_refused(target: AdapterRegistry, bundle: Path, tmp_path: Path) -> None:
    tar = tar_of(bundle, tmp_path / "b.tar")
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    refused_whole(target, tar, "truncated|not a readable tar")


def test_unknown_members_and_a_missing_manifest_are_refused(
    target: AdapterRegistry, bundle: Path, tmp_path: Path
) -> None:
    (bundle / "README").write_text("hello")
    refused_whole(target, bundle, "not a bundle member")
    (bundle / "README").unlink()
    (bundle / "manifest.json").unlink()
    refused_whole(target, bundle, "no manifest.json")
    refused_whole(target, tmp_path / "nowhere.tar", "no such directory")


def test_directory_bundle_symlinks_are_refused(
    target: AdapterRegistry, registry: AdapterRegistry, bundle: Path,
    made: dict[str, AdapterRecord],
) -> None:  # fmt: skip
    victim = weights(bundle, made["grand"].id)
    victim.unlink()
    victim.symlink_to(registry.root / made["grand"].id / "adapter.safetensors")
    refused_whole(target, bundle, "not a regular file")
    victim.unlink()
    directory = victim.parent
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    directory.symlink_to(registry.root / made["grand"].id)
    refused_whole(target, bundle, "not a directory")


def test_an_id_listed_twice_is_refused(target: AdapterRegistry, bundle: Path) -> None:
    manifest = read_manifest(bundle)
    manifest["adapters"].append(manifest["adapters"][0])
    write_manifest(bundle, manifest)
    refused_whole(target, bundle, "listed twice")


def test_tampered_weights_refuse_that_adapter_and_its_descendants_only(
    target: AdapterRegistry, bundle: Path, made: dict[str, AdapterRecord]
) -> None:
    path = weights(bundle, made["parent"].id)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    refused_alone(
        target, bundle, [made["parent"].id, made["child"].id],
        [made["grand"].id, made["other"].id], IntegrityError, "does not match its manifest",
    )  # fmt: skip


def test_truncated_weights_in_a_directory_bundle_are_refused(
    target: AdapterRegistry, bundle: Path, made: dict[str, AdapterRecord]
) -> None:
    path = weights(bundle, made["other"].id)
    path.write_bytes(path.read_bytes()[:100])
    refused_alone(
        target, bundle, [made["other"].id],
        [made["grand"].id, made["parent"].id, made["child"].id], IntegrityError, "truncated",
    )  # fmt: skip


def test_a_lying_manifest_is_refused(
    target: AdapterRegistry, bundle: Path, made: dict[str, AdapterRecord]
) -> None:
    manifest = read_manifest(bundle)
    entries = {e["record"]["id"]: e for e in manifest["adapters"]}
    # A hash that is not the record's; a record that is not its .record.json.
    entries[made["other"].id]["files"]["adapter.safetensors"]["sha256"] = "0" * 64
    entries[made["grand"].id]["record"]["created_at"] = "2020-01-01T00:00:00.000000+00:00"
    write_manifest(bundle, manifest)
    refused_alone(
        target, bundle, [made["grand"].id, made["parent"].id, made["child"].id, made["other"].id],
        [], IntegrityError, "disagree on created_at",
    )  # fmt: skip


def test_a_record_file_missing_or_swapped_is_refused(
    target: AdapterRegistry, bundle: Path, made: dict[str, AdapterRecord]
) -> None:
    (bundle / "adapters" / made["other"].id / ".record.json").unlink()
    # The parent's weights swapped for the grandparent's: well formed, not its own.
    grand, parent = weights(bundle, made["grand"].id), weights(bundle, made["parent"].id)
    parent.write_bytes(grand.read_bytes())
    report = target.import_bundle(bundle)
    assert "missing from the bundle" in str(report.refused[made["other"].id])
    assert isinstance(report.refused[made["parent"].id], IntegrityError)
    assert isinstance(report.refused[made["child"].id], InvalidAdapterError)
    assert report.imported == [made["grand"].id]
    assert {e for e in os.listdir(target.root) if not e.startswith(".")} == {made["grand"].id}


def test_a_manifest_that_is_not_ours_is_refused(target: AdapterRegistry, bundle: Path) -> None:
    (bundle / "manifest.json").write_text(json.dumps({"format": "other", "adapters": []}))
    refused_whole(target, bundle, "is not a adapter-registry-bundle")
    (bundle / "manifest.json").write_text("{not json")
    refused_whole(target, bundle, "not JSON")


def test_directory_bundle_hard_links_and_fifos_are_refused(
    target: AdapterRegistry, bundle: Path, made: dict[str, AdapterRecord], tmp_path: Path
) -> None:
    config = bundle / "adapters" / made["other"].id / "adapter_config.json"
    os.link(config, tmp_path / "outside")  # the same inode, reachable from outside the bundle
    refused_whole(target, bundle, "hard link")
    (tmp_path / "outside").unlink()
    victim = weights(bundle, made["other"].id)
    victim.unlink()
    os.mkfifo(victim)
    refused_whole(target, bundle, "not a regular file")

"""Where a registry lives when it is not told: $RUNE_HOME, else ~/.rune, created on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter_registry import AdapterRegistry, AdapterStorageError
from adapter_registry._lora_files import lora_bytes, lora_config


def store_and_find(registry: AdapterRegistry) -> None:
    record = registry.store(
        lora_bytes(), config=lora_config(), task_type="bug-fix", source="manual", session_id="s"
    )
    assert registry.retrieve_by_id(record.id) == record


def test_rune_home_holds_the_root_and_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "not" / "yet" / "there"
    monkeypatch.setenv("RUNE_HOME", str(home))
    with AdapterRegistry() as registry:
        assert registry.root == home / "adapters" and registry.root.is_dir()
        assert (home / "adapter_registry.db").is_file()
        store_and_find(registry)


def test_without_rune_home_it_is_dot_rune_in_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with AdapterRegistry() as registry:
        assert registry.root == tmp_path / ".rune" / "adapters"
        assert (tmp_path / ".rune" / "adapter_registry.db").is_file()
        store_and_find(registry)


def test_a_home_with_url_characters_keeps_its_database_where_it_belongs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "h?x=1#frag"
    monkeypatch.setenv("RUNE_HOME", str(home))
    with AdapterRegistry() as registry:
        store_and_find(registry)
    assert (home / "adapter_registry.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [home.name]


def test_a_root_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(AdapterStorageError, match="cannot be created") as caught:
        AdapterRegistry(root=blocker / "adapters", db_url=f"sqlite:///{tmp_path / 'r.db'}")
    assert caught.value.errno == 20

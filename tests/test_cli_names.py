"""The command line as a Python user expects it (issue 18, items 3 to 5): ids by unique prefix
(8 hex digits or more) or by alias where a person types one, task types checked and the
existing ones named, help without a command, global options put before the command, plurals.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from adapter_registry import AdapterNotFoundError, AdapterRegistry
from adapter_registry.cli import cli

TWINS = ("abcdef12-0000-4000-8000-000000000001", "abcdef12-0000-4000-8000-000000000002")


def run(registry: AdapterRegistry, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(registry.root), "--db-url", registry.db_url,
                                    *args])  # fmt: skip


def test_a_unique_prefix_or_an_alias_names_an_adapter(
    store_one: Any, registry: AdapterRegistry
) -> None:
    first = store_one(seed=1, adapter_id=TWINS[0])
    other = store_one(seed=2, adapter_id="0123abcd-0000-4000-8000-000000000003")
    registry.set_alias("production", other.id)
    for name, expected in (
        ("0123abcd", other.id), ("0123abcd-0000", other.id), ("production", other.id),
        (first.id, first.id), ("abcdef12-0000-4000-8000-00000000000", first.id),
    ):  # fmt: skip
        shown = run(registry, "show", name, "--json")
        assert shown.exit_code == 0, (name, shown.output)
        assert json.loads(shown.stdout)["record"]["id"] == expected
    assert run(registry, "fitness", "0123abcd", "--score", "0.7").exit_code == 0
    assert registry.retrieve_by_id(other.id).fitness_score == 0.7
    assert run(registry, "verify", "0123abcd", "production").exit_code == 0
    with pytest.raises(AdapterNotFoundError):  # the library takes full ids only
        registry.retrieve_by_id("0123abcd")


def test_an_ambiguous_or_unknown_name_is_one_error_line(
    store_one: Any, registry: AdapterRegistry
) -> None:
    for seed, adapter_id in enumerate(TWINS):
        store_one(seed=seed, adapter_id=adapter_id)
    ambiguous = run(registry, "show", "abcdef12")
    assert ambiguous.exit_code == 1
    assert ambiguous.stderr.strip() == (
        f"error: id prefix abcdef12 is ambiguous: it starts {TWINS[0]}, {TWINS[1]}"
    )
    for name in ("abcdef1", "fedcba98", "nightly"):  # too short, no such prefix, no such alias
        unknown = run(registry, "archive", name)
        assert unknown.exit_code == 1
        assert unknown.stderr.strip() == f"error: no adapter, alias or id prefix {name!r}"
    assert not any(r.is_archived for r in registry.list_all())


def test_task_types_are_checked_and_the_stored_ones_named(
    store_one: Any, registry: AdapterRegistry
) -> None:
    store_one(seed=1, fitness_score=0.5)
    store_one(seed=2, task_type="refactor")
    bad = run(registry, "best", "Bug Fix")
    assert bad.exit_code == 1 and "'Bug Fix' is not a task type" in bad.stderr
    assert run(registry, "ls", "-t", "Bug Fix").exit_code == 1
    missing = run(registry, "best", "feature-impl")
    assert missing.exit_code == 1
    assert "no adapter has task type feature-impl; task types stored: bug-fix, refactor" in (
        missing.stderr
    )
    listed = run(registry, "ls", "-t", "feature-impl", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    assert "task types stored: bug-fix, refactor" in listed.stderr
    unevaluated = run(registry, "best", "refactor")  # stored, but none evaluated
    assert "no evaluated live adapter" in unevaluated.stderr


def test_the_command_lines_shape(store_one: Any, registry: AdapterRegistry) -> None:
    bare = CliRunner().invoke(cli, [])
    assert bare.exit_code == 0 and "Commands:" in bare.stdout
    late = run(registry, "ls", "--home", "/elsewhere")
    assert late.exit_code == 2
    assert "--home is a global option: put it before the command" in late.stderr
    store_one()
    one = run(registry, "verify", "--all")
    assert "verified 1 adapter (2 files" in one.stdout


def test_store_names_the_files_it_left_out(registry: AdapterRegistry, tmp_path: Any) -> None:
    from adapter_registry._lora_files import peft_dir

    directory = peft_dir(tmp_path / "checkpoint-500")
    (directory / "trainer_state.json").write_text("{}")
    stored = run(registry, "store", str(directory), "-t", "bug-fix", "-s", "manual",
                 "--session-id", "s")  # fmt: skip
    assert stored.exit_code == 0, stored.output
    lines = stored.stdout.splitlines()
    assert lines[0].startswith("note: ") and "left out trainer_state.json" in lines[0]
    assert lines[1].startswith("stored ")

"""What the command line prints (issue 12, item 7): metadata written into the database by hand
can carry terminal escape sequences, and every command shows them escaped; a lineage of any
depth prints, and its JSON nests no deeper than lineage.MAX_DEPTH generations. On SQLite and
on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from click.testing import CliRunner, Result

from adapter_registry import AdapterRegistry
from adapter_registry.cli import cli
from adapter_registry.cli.lineage import MAX_DEPTH
from adapter_registry.record import COLUMNS

from conftest import raw_sql

#: Clears the screen, sets the title and turns text red, if a terminal is given it raw.
HOSTILE = "Qwen\x1b[2J\x1b]0;owned\x07\x1b[31m\x9b0m"


def run(registry: AdapterRegistry, *args: str) -> Result:
    result = CliRunner().invoke(
        cli, ["--root", str(registry.root), "--db-url", registry.db_url, *args]
    )
    assert result.exit_code == 0, result.output
    return result


def copy_row(registry: AdapterRegistry, source_id: str, **values: Any) -> str:
    """A row written by hand, as anyone with the database could (the triggers allow inserts)."""
    new_id = str(uuid.uuid4())
    selected = ", ".join(f":{c}" if c in values or c == "id" else c for c in COLUMNS)
    raw_sql(
        registry,
        f"INSERT INTO adapter_records ({', '.join(COLUMNS)}) SELECT {selected} "
        "FROM adapter_records WHERE id = :source",
        source=source_id, id=new_id, **values,
    )  # fmt: skip
    return new_id


def test_every_command_shows_hostile_metadata_escaped(
    store_one: Any, registry: AdapterRegistry
) -> None:
    source = store_one(fitness_score=0.1)
    hostile = copy_row(registry, source.id, base_model_id=HOSTILE, session_id=HOSTILE,
                       agent_id=HOSTILE, parent_ids=json.dumps([source.id]),
                       fitness_score=0.9)  # fmt: skip
    outputs = {
        "ls": run(registry, "ls").output,
        "show": run(registry, "show", hostile).output,
        "best": run(registry, "best", "bug-fix").output,
        "stats": run(registry, "stats").output,
        "lineage": run(registry, "lineage", source.id).output,
    }
    for command, output in outputs.items():
        assert "\x1b" not in output and "\x9b" not in output and "\x07" not in output, command
    for command in ("ls", "show", "best", "stats"):
        assert "Qwen\\x1b[2J\\x1b]0;owned\\x07" in outputs[command], command
    assert hostile in outputs["lineage"]
    as_json = json.loads(run(registry, "show", hostile, "--json").output)
    assert as_json["record"]["base_model_id"] == HOSTILE  # JSON carries the value itself


def test_a_lineage_of_700_generations_prints_and_its_json_is_capped(
    store_one: Any, registry: AdapterRegistry
) -> None:
    first = store_one()
    chain = [first.id]
    for generation in range(1, 700):
        chain.append(copy_row(registry, chain[-1], parent_ids=json.dumps([chain[-1]]),
                              generation=generation, version=generation + 1))  # fmt: skip
    lines = run(registry, "lineage", chain[-1]).output.splitlines()
    assert len(lines) == MAX_DEPTH + 1 and "show its own lineage" in lines[-1]
    tree = json.loads(run(registry, "lineage", chain[-1], "--json").output)
    depth, node = 0, tree
    while node["parents"]:
        [node] = node["parents"]
        depth += 1
    assert depth == MAX_DEPTH and node.get("truncated") is True
    assert node["id"] == chain[-1 - MAX_DEPTH]
    # Going on from the marker shows the next stretch.
    rest = json.loads(run(registry, "lineage", node["id"], "--json").output)
    assert rest["parents"][0]["id"] == chain[-2 - MAX_DEPTH]
    # A branch shorter than the cap is never marked.
    short = json.loads(run(registry, "lineage", chain[50], "--json").output)
    assert "truncated" not in json.dumps(short["parents"])  # its 50 ancestors, whole


@pytest.mark.parametrize("command", [("verify", "--all"), ("recover",)])
def test_names_found_on_disk_are_shown_escaped(
    store_one: Any, registry: AdapterRegistry, command: tuple[str, ...]
) -> None:
    store_one()
    (registry.root / "evil\x1b[2Jname").mkdir()
    result = CliRunner().invoke(
        cli, ["--root", str(registry.root), "--db-url", registry.db_url, *command]
    )
    assert "\x1b" not in result.output
    if command == ("recover",):
        assert "evil\\x1b[2Jname" in result.output

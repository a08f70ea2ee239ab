"""In the CLI only store, import and demo may create a registry: every other command, run on a
home, root or database that is not there, says "no registry at ..." on one line, exits 1 and
creates nothing (no directory, no database file, no table).

The commands are COMMANDS minus the creating ones, so a command added later is covered as soon
as it exists: give it a command line in ARGS (the test fails for one that has none).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from adapter_registry import AdapterRegistry
from adapter_registry.cli import cli
from adapter_registry.cli.app import COMMANDS

from postgres import PostgresServer

#: The commands that may create a registry.
CREATING = {"store", "import", "demo"}
ID = str(uuid.UUID(int=0x4F1C7A521D2E4C3B9A8F0E1D2C3B4A59))
#: A command line for each command that must not create (after the global options).
ARGS: dict[str, list[str]] = {
    "ls": ["ls"],
    "show": ["show", ID],
    "best": ["best", "bug-fix"],
    "lineage": ["lineage", ID],
    "stats": ["stats"],
    "fitness": ["fitness", ID, "--score", "0.5"],
    "eval": ["eval", "ls", ID],
    "alias": ["alias", "ls"],
    "tag": ["tag", ID],
    "archive": ["archive", ID],
    "unarchive": ["unarchive", ID],
    "verify": ["verify", "--all"],
    "recover": ["recover"],
    "resolve": ["resolve", ID],
    "export": ["export", "bundle.tar"],
    "backup": ["backup", "backup.tar"],
    "ui": ["ui", "--port", "0"],
}
NON_CREATING = sorted(set(COMMANDS) - CREATING)


def tree(path: Path) -> list[str]:
    """Everything under a folder, as relative paths."""
    found = []
    for where, dirs, files in os.walk(path):
        found += [os.path.relpath(os.path.join(where, n), path) for n in dirs + files]
    return sorted(found)


def run(args: list[str], cwd: Path) -> Result:
    old = Path.cwd()
    os.chdir(cwd)  # a command given a relative path (export's DEST) writes nothing here either
    try:
        return CliRunner().invoke(cli, args, env={"RUNE_HOME": None, "RUNE_DB_URL": None})
    finally:
        os.chdir(old)


def assert_refused(result: Result, where: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: no registry at {where}"), result.stderr
    assert len(result.stderr.splitlines()) == 1


def fresh_database(request: pytest.FixtureRequest, backend: str, folder: Path) -> tuple[str, str]:
    """A database URL with no registry in it, and how a message names it."""
    if backend == "sqlite":
        path = folder / "nowhere" / "registry.db"
        return f"sqlite:///{path}", str(path)
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database(f"nocreate{os.getpid()}_{uuid.uuid4().hex[:8]}")
    return url, url.rsplit("/", 1)[1]


def tables(url: str) -> list[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return list(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_every_command_has_a_command_line_here() -> None:
    assert set(NON_CREATING) <= set(ARGS), "give the new command a line in ARGS"


@pytest.mark.parametrize("command", NON_CREATING)
def test_a_missing_home_is_no_registry_and_stays_missing(command: str, tmp_path: Path) -> None:
    home = tmp_path / "mistyped"
    result = run(["--home", str(home), *ARGS[command]], tmp_path)
    assert_refused(result, str(home / "adapter_registry.db"))
    assert tree(tmp_path) == []


@pytest.mark.parametrize("command", NON_CREATING)
def test_a_missing_database_is_no_registry_and_nothing_is_created(
    command: str,
    registry: AdapterRegistry,
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """An existing root beside a database that holds no registry (the default database that
    --root alone used to pair it with)."""
    url, shown = fresh_database(request, backend, tmp_path)
    before = tree(tmp_path)
    result = run(["--root", str(registry.root), "--db-url", url, *ARGS[command]], tmp_path)
    assert result.exit_code == 1 and shown in result.stderr, result.output
    assert_refused(result, "")
    assert tree(tmp_path) == before
    if backend != "sqlite":
        assert tables(url) == []


@pytest.mark.parametrize("command", NON_CREATING)
def test_a_missing_root_is_no_registry_and_is_not_created(
    command: str, registry: AdapterRegistry, tmp_path: Path
) -> None:
    """A registry's database beside a root that is not there."""
    missing = tmp_path / "no" / "adapters"
    before = tree(tmp_path)
    result = run(["--root", str(missing), "--db-url", registry.db_url, *ARGS[command]], tmp_path)
    assert_refused(result, str(missing))
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", NON_CREATING)
def test_an_empty_folder_beside_a_registry_s_database_is_no_registry_and_stays_empty(
    command: str, registry: AdapterRegistry, tmp_path: Path
) -> None:
    """A mistyped --root that exists: never bound to the database (no marker written)."""
    typo = tmp_path / "typo"
    typo.mkdir()
    result = run(["--root", str(typo), "--db-url", registry.db_url, *ARGS[command]], tmp_path)
    assert_refused(result, str(typo))
    assert tree(typo) == []


def test_home_on_the_command_line_wins_over_the_environment_s_database(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    """--home as the API's home=: $RUNE_DB_URL is not read; --db-url given with it wins."""
    from adapter_registry._lora_files import lora_bytes, lora_config

    home = tmp_path / "h"
    with AdapterRegistry(home=home) as mine:
        record = mine.store(
            lora_bytes(), config=lora_config(), task_type="bug-fix", source="manual",
            session_id="s",
        )  # fmt: skip
    env = {"RUNE_HOME": None, "RUNE_DB_URL": registry.db_url}
    listed = CliRunner().invoke(cli, ["--home", str(home), "ls", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [row["id"] for row in json.loads(listed.stdout)] == [record.id]
    given = CliRunner().invoke(
        cli, ["--home", str(home), "--db-url", registry.db_url, "ls"], env=env
    )
    assert given.exit_code == 1 and registry.registry_id in given.stderr, given.output


def test_store_creates_the_registry_it_names(tmp_path: Path) -> None:
    """The creating side, for contrast: store on a new home makes it."""
    from adapter_registry._lora_files import peft_dir

    source = peft_dir(tmp_path / "in")
    home = tmp_path / "new-home"
    result = run(
        ["--home", str(home), "store", str(source), "--task-type", "bug-fix",
         "--source", "manual", "--session-id", "s"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with AdapterRegistry(home=home, create=False) as registry:
        assert len(registry.list_all()) == 1

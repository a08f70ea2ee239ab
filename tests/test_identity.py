"""A registry is a root plus a database, bound by one registry id held in both (the README's
"One registry, wherever it lives"): the whole matrix of a root that is new, bound to this
database or bound elsewhere against a database that is new, bound to this root or bound
elsewhere, on both backends; a registry made before registry ids; adoption; many openers.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from adapter_registry import (
    AdapterRecord,
    AdapterRegistry,
    AdapterStorageError,
    RegistryMismatchError,
    RegistryNotFoundError,
)
from adapter_registry._lora_files import lora_bytes, lora_config
from adapter_registry.cli import cli

from conftest import raw_sql
from postgres import PostgresServer

MARKER = ".registry.json"


@pytest.fixture
def new_db(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Callable[[], str]:
    """Fresh, empty databases of the backend under test (a SQLite file not there yet)."""

    def make() -> str:
        name = f"id{os.getpid()}_{uuid.uuid4().hex[:10]}"
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / 'dbs' / name}.db"
        server: PostgresServer = request.getfixturevalue("postgres")
        return server.create_database(name)

    return make


def store(registry: AdapterRegistry, seed: int = 0, **fields: Any) -> AdapterRecord:
    return registry.store(
        lora_bytes(seed=seed), config=lora_config(), task_type="bug-fix", source="manual",
        session_id="s", **fields,
    )  # fmt: skip


def tables(url: str) -> list[str]:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return []
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return sorted(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def marker_of(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / MARKER).read_bytes()))


def identity_rows(url: str) -> list[Any]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            from sqlalchemy import text

            return [
                tuple(r) for r in conn.execute(text("SELECT registry_id FROM registry_identity"))
            ]
    finally:
        engine.dispose()


def snapshot(root: Path) -> list[str]:
    found = []
    for where, dirs, files in os.walk(root):
        found += [os.path.relpath(os.path.join(where, n), root) for n in dirs + files]
    return sorted(found)


def made(tmp_path: Path, name: str, db_url: str, adapters: int = 1) -> tuple[Path, str, str]:
    """A registry with `adapters` adapters: its root, database and id (closed)."""
    root = tmp_path / name / "adapters"
    with AdapterRegistry(root, db_url) as registry:
        for seed in range(adapters):
            store(registry, seed)
        return root, db_url, registry.registry_id


#: The tables of revision 0004, the last before registry ids.
TABLES_0004 = {
    "adapter_records", "adapter_edges", "adapter_aliases", "alias_moves", "adapter_tags",
    "evaluations", "alembic_version",
}  # fmt: skip


def as_before_ids(root: Path, db_url: str) -> None:
    """Make a registry look as the release before registry ids left it: no marker in the root,
    schema revision 0004 (the tables of 0005 and later dropped)."""
    (root / MARKER).unlink()
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.begin() as conn:
        from sqlalchemy import text

        for table in set(inspect(conn).get_table_names()) - TABLES_0004:
            conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    engine.dispose()


# ------------------------------------------------------------------------------ the matrix


def test_new_root_and_new_database_are_bound_together(tmp_path: Path, new_db: Any) -> None:
    url = new_db()
    root = tmp_path / "fresh" / "adapters"
    with AdapterRegistry(root, url) as registry:
        uuid.UUID(registry.registry_id)
        assert marker_of(root) == {"registry_id": registry.registry_id, "unadopted": []}
        assert identity_rows(url) == [(registry.registry_id,)]
        record = store(registry)
    with AdapterRegistry(root, url, create=False) as again:  # bound to this database: opened
        assert again.registry_id == registry.registry_id
        assert again.retrieve_by_id(record.id) == record


def test_not_creating_a_new_registry_creates_nothing(tmp_path: Path, new_db: Any) -> None:
    url = new_db()
    root = tmp_path / "fresh" / "adapters"
    with pytest.raises(RegistryNotFoundError, match=r"^no registry at "):
        AdapterRegistry(root, url, create=False)
    assert not root.parent.exists() and tables(url) == []
    assert not (tmp_path / "dbs").exists()
    # A registry's database beside a root that is not there.
    _, other_url, _ = made(tmp_path, "other", new_db())
    with pytest.raises(RegistryNotFoundError, match=f"^no registry at {root}"):
        AdapterRegistry(root, other_url, create=False)
    assert not root.parent.exists()


def test_home_places_the_root_and_the_database(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with AdapterRegistry(home=home) as registry:
        assert registry.root == home / "adapters"
        assert (home / "adapter_registry.db").is_file()
        store(registry)
    with AdapterRegistry(home=home, create=False) as again:
        assert len(again.list_all()) == 1


def test_a_root_bound_elsewhere_with_a_database_bound_elsewhere_is_refused(
    tmp_path: Path, new_db: Any
) -> None:
    root_a, _, id_a = made(tmp_path, "a", new_db())
    root_b, url_b, id_b = made(tmp_path, "b", new_db())
    before_a, before_b = snapshot(root_a), snapshot(root_b)
    for create in (True, False):
        with pytest.raises(RegistryMismatchError) as caught:
            AdapterRegistry(root_a, url_b, create=create)
        message = str(caught.value)
        assert str(root_a) in message and id_a in message and id_b in message
        assert (url_b.rsplit("/", 1)[1]) in message
    assert snapshot(root_a) == before_a and snapshot(root_b) == before_b
    with AdapterRegistry(root_b, url_b) as b:
        assert len(b.list_all()) == 1


def test_a_bound_root_with_a_new_database_is_refused_and_nothing_is_created(
    tmp_path: Path, new_db: Any
) -> None:
    """The issue's AdapterRegistry(root=...) that made a fresh default database."""
    root, _, registry_id = made(tmp_path, "a", new_db())
    url = new_db()
    before = snapshot(root)
    with pytest.raises(
        RegistryMismatchError, match=f"root {root} belongs to registry {registry_id}"
    ):
        AdapterRegistry(root, url)
    assert tables(url) == [] and snapshot(root) == before
    assert not (tmp_path / "dbs").exists() or not any(
        p.name.startswith(url.rsplit("/", 1)[1]) for p in (tmp_path / "dbs").iterdir()
    )


def test_a_new_root_with_a_database_that_has_adapters_is_refused(
    tmp_path: Path, new_db: Any
) -> None:
    """The issue's --root alone, or a root path mistyped beside a registry's database."""
    _, url, registry_id = made(tmp_path, "a", new_db())
    for root in (tmp_path / "absent" / "adapters", tmp_path / "empty"):
        if root.name == "empty":
            root.mkdir()
        with pytest.raises(RegistryMismatchError, match=f"database .* registry {registry_id}"):
            AdapterRegistry(root, url)
        assert not (tmp_path / "absent").exists()
        assert not (tmp_path / "empty").exists() or list((tmp_path / "empty").iterdir()) == []


def test_a_database_with_no_adapters_takes_an_unbound_empty_root(
    tmp_path: Path, new_db: Any
) -> None:
    """A bound database with no adapters yet has nothing to disagree with: an opener that
    finds its root unbound (its own binding cut short by a crash, say) binds it."""
    root, url, registry_id = made(tmp_path, "a", new_db(), adapters=0)
    (root / MARKER).unlink()
    with AdapterRegistry(root, url) as registry:
        assert registry.registry_id == registry_id
        assert marker_of(root)["registry_id"] == registry_id


def test_a_root_bound_elsewhere_is_refused_even_when_its_database_is_empty(
    tmp_path: Path, new_db: Any
) -> None:
    root_a, _, id_a = made(tmp_path, "a", new_db(), adapters=0)
    _, url_b, id_b = made(tmp_path, "b", new_db(), adapters=0)
    with pytest.raises(RegistryMismatchError, match=f"{id_a}.*{id_b}"):
        AdapterRegistry(root_a, url_b)


# --------------------------------------------------------------- made before registry ids


def test_a_registry_made_before_ids_is_bound_on_its_first_open(tmp_path: Path, new_db: Any) -> None:
    root, url, _ = made(tmp_path, "old", new_db(), adapters=2)
    as_before_ids(root, url)
    with AdapterRegistry(root, url, create=False) as registry:
        assert marker_of(root) == {"registry_id": registry.registry_id, "unadopted": []}
        assert identity_rows(url) == [(registry.registry_id,)]
        assert [r.ok for r in registry.verify_all()] == [True, True]
        assert registry.recover().clean


def test_a_root_and_a_database_made_before_ids_that_disagree_are_refused(
    tmp_path: Path, new_db: Any
) -> None:
    root_a, url_a, _ = made(tmp_path, "a", new_db())
    root_b, url_b, _ = made(tmp_path, "b", new_db())
    as_before_ids(root_a, url_a)
    as_before_ids(root_b, url_b)
    with pytest.raises(RegistryMismatchError, match="no adapter in common"):
        AdapterRegistry(root_a, url_b)
    assert not (root_a / MARKER).exists()
    with AdapterRegistry(root_a, url_a) as a:  # each with its own: bound
        assert len(a.list_all()) == 1


# ---------------------------------------------------------------------------- adoption


def test_a_new_database_never_silently_adopts_a_non_empty_root(tmp_path: Path, new_db: Any) -> None:
    """A root whose database was lost (and its marker): a new database is refused; opened
    with adopt=True it binds to it and registers nothing; recover() leaves its adapters;
    recover(adopt=True) registers them."""
    root, url, old_id = made(tmp_path, "a", new_db(), adapters=2)
    with AdapterRegistry(root, url) as old:
        old.update_fitness(old.list_all()[0].id, fitness_score=0.9)
        ids = sorted(r.id for r in old.list_all())
    (root / MARKER).unlink()  # lost with the database, or made before registry ids
    url_new = new_db()
    with pytest.raises(RegistryMismatchError, match=r"never takes .*recover --adopt"):
        AdapterRegistry(root, url_new)
    assert tables(url_new) == [] and not (root / MARKER).exists()
    with AdapterRegistry(root, url_new, adopt=True) as registry:
        assert registry.registry_id != old_id
        assert marker_of(root) == {"registry_id": registry.registry_id, "unadopted": ids}
        assert registry.list_all() == []
        report = registry.recover()
        assert report.rolled_forward == [] and [n for n, _ in report.unregistered] == ids
        assert all("adopt=True" in why for _, why in report.unregistered)
        assert registry.list_all() == []
        adopted = registry.recover(adopt=True)
        assert sorted(adopted.rolled_forward) == ids and adopted.clean
        assert sorted(r.id for r in registry.list_all()) == ids
        assert all(r.ok for r in registry.verify_all())
        assert marker_of(root)["unadopted"] == []
        assert registry.recover().clean


def test_recover_adopt_on_the_command_line(tmp_path: Path, new_db: Any, backend: str) -> None:
    root, _, _ = made(tmp_path, "a", new_db(), adapters=1)
    (root / MARKER).unlink()
    url_new = new_db()
    args = ["--root", str(root), "--db-url", url_new]
    refused = CliRunner().invoke(cli, [*args, "recover"])  # recover alone never creates
    assert refused.exit_code == 1 and refused.stderr.startswith("error: no registry at ")
    assert tables(url_new) == []
    done = CliRunner().invoke(cli, [*args, "recover", "--adopt", "--json"])
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.stdout)["rolled_forward"]) == 1
    listed = CliRunner().invoke(cli, [*args, "ls", "--json"])
    assert len(json.loads(listed.stdout)) == 1
    missing = CliRunner().invoke(
        cli, ["--root", str(tmp_path / "nope"), "--db-url", new_db(), "recover", "--adopt"]
    )
    assert missing.exit_code == 1 and f"no registry at {tmp_path / 'nope'}" in missing.stderr
    assert not (tmp_path / "nope").exists()


def test_one_open_with_a_new_database_never_binds_a_made_before_ids_root(
    tmp_path: Path, new_db: Any
) -> None:
    """A pre-release root opened once with a new, empty database (a forgotten db_url) is
    refused, so the real database still opens it afterwards."""
    root, url, _ = made(tmp_path, "old", new_db(), adapters=2)
    as_before_ids(root, url)
    oops = new_db()
    with pytest.raises(RegistryMismatchError) as caught:
        AdapterRegistry(root, oops)
    assert str(root) in str(caught.value) and oops.rsplit("/", 1)[1] in str(caught.value)
    assert "recover --adopt" in str(caught.value) and "adopt=True" in str(caught.value)
    assert not (root / MARKER).exists() and tables(oops) == []
    with AdapterRegistry(root, url) as registry:
        assert len(registry.list_all()) == 2 and marker_of(root)["unadopted"] == []


def test_a_root_whose_database_was_lost_is_adopted_by_a_new_one(
    tmp_path: Path, new_db: Any
) -> None:
    """The root keeps its marker: a new database takes its registry id only when adopting,
    and recover() then registers the root's adapters."""
    root, _, registry_id = made(tmp_path, "a", new_db(), adapters=2)
    ids = sorted(e.name for e in root.iterdir() if not e.name.startswith("."))
    url = new_db()
    with pytest.raises(RegistryMismatchError, match="holds no registry"):
        AdapterRegistry(root, url)
    with AdapterRegistry(root, url, adopt=True) as registry:
        assert registry.registry_id == registry_id and identity_rows(url) == [(registry_id,)]
        assert sorted(registry.recover(adopt=True).rolled_forward) == ids
    with AdapterRegistry(root, url, create=False) as again:
        assert sorted(r.id for r in again.list_all()) == ids
        assert all(r.ok for r in again.verify_all())


def test_a_non_creating_open_never_binds_another_root(tmp_path: Path, new_db: Any) -> None:
    """A mistyped root beside a bound database: "no registry at" when it is empty, a mismatch
    when it holds something; no marker is written either way, creating or not."""
    root, url, registry_id = made(tmp_path, "a", new_db(), adapters=0)
    typo = tmp_path / "typo"
    typo.mkdir()
    with pytest.raises(RegistryNotFoundError, match=f"^no registry at {typo}"):
        AdapterRegistry(typo, url, create=False)
    (typo / "notes").write_text("x")
    for create in (False, True):
        with pytest.raises(RegistryMismatchError, match=f"registry {registry_id}.*root {typo}"):
            AdapterRegistry(typo, url, create=create)
    assert sorted(os.listdir(typo)) == ["notes"]
    with AdapterRegistry(root, url) as registry:  # its own root still opens, and stores
        store(registry)
    with pytest.raises(RegistryMismatchError):
        AdapterRegistry(typo, url, create=False)
    assert sorted(os.listdir(typo)) == ["notes"]


def test_an_opener_that_sees_another_bind_midway_decides_again_under_the_lock(
    tmp_path: Path, new_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two openers of one new registry: the other binds it (database row, then marker)
    between this opener's read of the database and its read of the root."""
    from adapter_registry import identity

    root, url = tmp_path / "h" / "adapters", new_db()
    real, other = identity.read_marker, []

    def read_marker_while_another_binds(where: Path) -> Any:
        if not other:
            other.append("opening")
            with AdapterRegistry(root, url) as first:
                other.append(first.registry_id)
        return real(where)

    monkeypatch.setattr(identity, "read_marker", read_marker_while_another_binds)
    with AdapterRegistry(root, url) as registry:
        assert registry.registry_id == other[1] == marker_of(root)["registry_id"]
    assert identity_rows(url) == [(other[1],)]


def test_recover_adopt_recovers_a_root_whose_database_was_lost(tmp_path: Path, new_db: Any) -> None:
    """The root keeps its marker; recover --adopt gives a new database its id and its rows."""
    root, _, registry_id = made(tmp_path, "a", new_db(), adapters=2)
    args = ["--root", str(root), "--db-url", new_db()]
    refused = CliRunner().invoke(cli, [*args, "recover"])
    assert refused.exit_code == 1 and refused.stderr.startswith("error: no registry at ")
    done = CliRunner().invoke(cli, [*args, "recover", "--adopt", "--json"])
    assert done.exit_code == 0, done.output
    assert len(json.loads(done.stdout)["rolled_forward"]) == 2
    with AdapterRegistry(root, args[3], create=False) as registry:
        assert registry.registry_id == registry_id and len(registry.list_all()) == 2


# ------------------------------------------------------------------------ many openers


def _open_and_tell(root: str, db_url: str, barrier: Any) -> str:
    barrier.wait()
    with AdapterRegistry(root=root, db_url=db_url) as registry:
        return registry.registry_id


def test_many_processes_binding_one_new_registry_agree(tmp_path: Path, new_db: Any) -> None:
    root, url = tmp_path / "shared" / "adapters", new_db()
    processes = 6
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(processes) as pool:
        barrier = manager.Barrier(processes)
        ids = pool.starmap(_open_and_tell, [(str(root), url, barrier)] * processes)
    assert len(set(ids)) == 1
    assert marker_of(root)["registry_id"] == ids[0]
    assert identity_rows(url) == [(ids[0],)]
    assert [p.name for p in root.iterdir()] == [MARKER]  # no temporary marker left


def test_the_identity_is_written_once(tmp_path: Path, new_db: Any) -> None:
    root, url, _ = made(tmp_path, "a", new_db(), adapters=0)
    with AdapterRegistry(root, url) as registry:
        for sql in (
            "UPDATE registry_identity SET registry_id = 'x'",
            "DELETE FROM registry_identity",
        ):
            with pytest.raises(Exception, match=r"(?i)write-once|not allowed|immutable|abort"):
                raw_sql(registry, sql)
        assert identity_rows(url) == [(registry.registry_id,)]


def test_a_marker_that_is_not_ours_is_a_storage_error_naming_it(
    tmp_path: Path, new_db: Any
) -> None:
    root, url, _ = made(tmp_path, "a", new_db(), adapters=0)
    marker = root / MARKER
    for body in (b"not json", b'{"registry_id": "not-a-uuid"}', b"[]"):
        marker.write_bytes(body)
        with pytest.raises(AdapterStorageError, match=f"root {root}: .registry.json is not a"):
            AdapterRegistry(root, url)
    marker.unlink()
    marker.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(AdapterStorageError, match=r"\.registry\.json"):
        AdapterRegistry(root, url)

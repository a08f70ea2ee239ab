"""The read-only dashboard (issue 17): every page and JSON endpoint over HTTP on both backends,
untrusted text escaped everywhere, no write possible through its connections, a read-only open
that creates and migrates nothing, an older schema refused, a WAL database in any state, the
lineage bounded, ``verify --all --save`` and ``ui`` from the command line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from alembic import command
from alembic.config import Config
from click.testing import CliRunner
from sqlalchemy import create_engine, insert, text
from sqlalchemy.pool import NullPool
from starlette.testclient import TestClient

from adapter_registry import AdapterRecord, AdapterRegistry, AdapterStorageError, schema
from adapter_registry._lora_files import lora_bytes, lora_config
from adapter_registry.cli import cli
from adapter_registry.dashboard import lineage
from adapter_registry.dashboard.app import ENDPOINTS, create_app
from adapter_registry.dashboard.reading import ReadOnlyRegistry
from adapter_registry.errors import RegistryMismatchError, RegistryNotFoundError
from adapter_registry.record import TABLE
from adapter_registry.tables import EDGES

from conftest import empty_registry, raw_sql

EVIL = "<script>alert(1)</script>"
#: How SQLite and PostgreSQL refuse a write on a read-only connection.
READ_ONLY = r"read-only|readonly"


@pytest.fixture
def reader(registry: AdapterRegistry) -> Iterator[ReadOnlyRegistry]:
    with ReadOnlyRegistry(root=registry.root, db_url=registry.db_url) as opened:
        yield opened


@pytest.fixture
def client(reader: ReadOnlyRegistry) -> TestClient:
    return TestClient(create_app(reader))


def _population(registry: AdapterRegistry, store_one: Any) -> dict[str, AdapterRecord]:
    a = store_one(seed=1, agent_id="agent-a")
    b = store_one(seed=2, source="evolution", parent_ids=[a.id], agent_id="agent-b")
    c = store_one(seed=3, source="evolution", parent_ids=[a.id, b.id], agent_id="agent-a")
    d = store_one(seed=4, task_type="refactor", base_model_id="other/model")
    old = store_one(seed=5, agent_id="agent-b")
    for record, fitness in ((a, 0.2), (b, 0.6), (c, 0.9), (d, 0.5), (old, 0.95)):
        registry.update_fitness(record.id, fitness_score=fitness, pass_rate=fitness / 2)
    registry.archive(old.id)
    registry.set_alias("champion", c.id)
    registry.set_tags(c.id, {"stage": "prod"})
    registry.record_evaluation(c.id, "accuracy", 0.8, evaluator="ev-1", details={"n": 10})
    return {"a": a, "b": b, "c": c, "d": d, "old": old}


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["adapters"]]


def test_every_page_and_endpoint_answers_with_the_registry_s_data(
    registry: AdapterRegistry, store_one: Any, client: TestClient
) -> None:
    made = _population(registry, store_one)
    a, b, c = made["a"], made["b"], made["c"]

    overview = client.get("/api/overview").json()
    assert overview["totals"] == {
        "adapters": 5, "live": 4, "archived": 1, "evaluated": 5,
        "bytes": sum(r.file_size_bytes for r in made.values()),
    }  # fmt: skip
    tasks = {t["task_type"]: t for t in overview["task_types"]}
    assert (tasks["bug-fix"]["adapters"], tasks["bug-fix"]["best_fitness"]) == (4, 0.9)
    assert {m["base_model_id"] for m in overview["base_models"]} == {a.base_model_id, "other/model"}
    assert [r["id"] for r in overview["newest"]] == [r.id for r in reversed(made.values())]
    assert {r["id"]: r["aliases"] for r in overview["newest"]}[c.id] == ["champion"]
    page = client.get("/")
    assert page.status_code == 200 and "<td>5</td>" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["server-timing"].startswith("app;dur=")

    board = client.get("/api/leaderboard/bug-fix")
    assert _ids(board) == [
        r.id for r in registry.search(task_type="bug-fix", order_by="-fitness_score")
    ]
    assert board.json()["adapters"][0]["aliases"] == ["champion"]
    first, second = client.get("/api/leaderboard/bug-fix?limit=1"), None
    assert first.json()["next_offset"] == 1
    second = client.get("/api/leaderboard/bug-fix?limit=1&offset=1")
    assert _ids(first) + _ids(second) == _ids(board)[:2]
    with_archived = client.get("/api/leaderboard/bug-fix?include_archived=1")
    assert _ids(with_archived)[0] == made["old"].id
    assert _ids(client.get("/api/search?agent_id=agent-a")) == [c.id, a.id]
    assert _ids(client.get("/api/search?tag=stage=prod")) == [c.id]
    assert _ids(client.get(f"/api/search?parent_id={a.id}&order_by=created_at")) == [b.id, c.id]
    assert _ids(client.get("/api/search?min_fitness=0.55&task_type=bug-fix")) == [c.id, b.id]
    html = client.get("/leaderboard/bug-fix").text
    assert [m for m in re.findall(r'data-id="([^"]+)"', html)] == _ids(board)

    shown = client.get(f"/api/adapters/{c.id}").json()
    assert shown["adapter"]["id"] == c.id and shown["adapter"]["parent_ids"] == [a.id, b.id]
    files = {f["name"]: f for f in shown["files"]}
    weights = c.directory / "adapter.safetensors"
    assert files["adapter.safetensors"]["size"] == weights.stat().st_size == c.file_size_bytes
    assert files["adapter.safetensors"]["mode"].startswith("-r")
    assert shown["tags"] == {"stage": "prod"} and shown["aliases"] == ["champion"]
    history = [(e.metric, e.value) for e in reversed(registry.evaluations(c.id))]
    assert [(e["metric"], e["value"]) for e in shown["evaluations"]] == history
    assert history[0] == ("accuracy", 0.8) and shown["evaluation_count"] == len(history)
    assert [r["id"] for r in client.get(f"/api/adapters/{a.id}").json()["children"]] == [
        b.id, c.id,
    ]  # fmt: skip
    graph = client.get(f"/api/adapters/{c.id}/lineage").json()
    assert graph["ancestors"] == [r.id for r in registry.lineage(c.id)]
    assert sorted(map(tuple, graph["edges"])) == sorted([(c.id, a.id), (c.id, b.id), (b.id, a.id)])
    page = client.get(f"/adapters/{c.id}").text
    assert c.id in page and "stage" in page and "accuracy" in page and "<svg" in page
    assert client.get(f"/adapters/{c.id}/lineage").status_code == 200

    assert client.get(f"/api/adapters/{c.id}/verify").json() == {
        "id": c.id, "status": "ok", "problems": [],
    }  # fmt: skip
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    os.chmod(weights, 0o644)
    weights.write_bytes(bytes(data))
    os.chmod(weights, 0o444)
    verdict = client.get(f"/adapters/{c.id}/verify")
    assert verdict.status_code == 200 and "mismatch" in verdict.text
    assert weights.read_bytes() == bytes(data)  # verifying changed nothing
    assert registry.retrieve_by_id(c.id) == c.model_copy(
        update={"fitness_score": 0.9, "pass_rate": 0.45}
    )

    evolution = client.get("/api/evolution/bug-fix").json()
    best = {g["generation"]: g["best_id"] for g in evolution["best_per_generation"]}
    assert best == {0: a.id, 1: b.id, 2: c.id}  # the archived one is not live
    assert len(evolution["points"]) == 3
    assert "<svg" in client.get("/evolution/bug-fix").text
    assert "bug-fix" in client.get("/evolution").text
    assert client.get("/api/tasks").json() == {"task_types": ["bug-fix", "refactor"]}

    assert client.get("/api/integrity").json() == {"report": None}
    assert "No report saved yet" in client.get("/integrity").text
    registry.save_verify_report(registry.verify_all(), files=10, bytes=99, seconds=0.5)
    saved = client.get("/api/integrity").json()["report"]
    assert saved["counts"]["mismatch"] == 1 and saved["problems"][0]["id"] == c.id
    assert not saved["ok"] and saved["adapters"] == 5 and saved["bytes"] == 99
    assert "problems found" in client.get("/integrity").text

    listed = client.get("/api").json()["endpoints"]
    assert set(listed) == set(ENDPOINTS)
    for endpoint in listed:
        path = endpoint.replace("{id}", c.id).replace("{task_type}", "bug-fix")
        assert client.get(path).status_code == 200, path
    for path in ("/search", "/static/dashboard.css"):
        assert client.get(path).status_code == 200


def test_errors_are_answered_by_status_and_message(
    registry: AdapterRegistry, store_one: Any, client: TestClient
) -> None:
    record = store_one()
    missing = client.get("/api/adapters/0b7c4d5e-aaaa-4bbb-8ccc-000000000000")
    assert missing.status_code == 404 and "is not registered" in missing.json()["error"]
    assert client.get("/adapters/nope").status_code == 404
    for bad in ("limit=0", "limit=x", "min_fitness=high", "order_by=nothing", "evaluated=maybe",
                "created_after=yesterday", "tag=novalue"):  # fmt: skip
        answer = client.get(f"/api/search?{bad}")
        assert answer.status_code == 400 and answer.json()["error"], bad
    assert client.get(f"/api/adapters/{record.id}/lineage?depth=999").status_code == 400
    assert client.post("/api/overview").status_code == 405  # no route takes a write


def _raw_record(adapter_id: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": adapter_id, "version": 1, "task_type": "bug-fix", "base_model_id": "m", "rank": 4,
        "created_at": "2026-01-01T00:00:00.000000+00:00", "file_path": "/x",
        "file_hash": "0" * 64, "file_size_bytes": 1, "source": "manual", "session_id": "s",
        "is_archived": False, "parent_ids": "[]", "generation": 0, "config_hash": "0" * 64,
        "pass_rate": None, "fitness_score": None, "training_task_hash": None, "agent_id": None,
    }  # fmt: skip
    row.update(fields)
    return row


def _write_rows(registry: AdapterRegistry, rows: list[dict[str, Any]]) -> None:
    """Rows written straight into the tables, as a hand with SQL could (no validation)."""
    edges = [
        {"parent_id": p, "child_id": r["id"]} for r in rows for p in json.loads(r["parent_ids"])
    ]
    with registry._db.write() as conn:
        conn.execute(insert(TABLE), rows)
        if edges:
            conn.execute(insert(EDGES), edges)


def test_untrusted_text_is_escaped_on_every_page(
    registry: AdapterRegistry, store_one: Any, client: TestClient
) -> None:
    parent = store_one(seed=1, agent_id="agent-1")
    registry.update_fitness(parent.id, fitness_score=0.5)
    # Validated fields refuse most of this: the rows are written by hand, as anyone could.
    evil_id = EVIL + "-id"
    _write_rows(registry, [
        _raw_record(
            evil_id, task_type=EVIL, base_model_id=EVIL, source=EVIL, session_id=EVIL,
            agent_id=EVIL, training_task_hash=EVIL, file_path=EVIL, file_hash=EVIL,
            config_hash=EVIL, created_at="2026-02-01T00:00:00" + EVIL,
            parent_ids=json.dumps([parent.id, EVIL + "-ghost"]), fitness_score=0.7,
            generation=1,
        ),
        _raw_record(EVIL + "-child", task_type=EVIL, parent_ids=json.dumps([evil_id]),
                    agent_id=EVIL, fitness_score=0.9, generation=2),
    ])  # fmt: skip
    raw_sql(registry, "INSERT INTO adapter_tags VALUES (:a, :k, :v)", a=evil_id, k=EVIL, v=EVIL)
    raw_sql(registry, "INSERT INTO adapter_aliases VALUES (:n, :a, 'now', :n)", n=EVIL, a=evil_id)
    raw_sql(
        registry,
        "INSERT INTO evaluations (adapter_id, metric, value, evaluator, eval_set_hash, details, "
        "recorded_at) VALUES (:a, :t, 1.0, :t, :t, :t, :t)",
        a=evil_id, t=EVIL,
    )  # fmt: skip
    registry.save_verify_report(registry.verify_all())  # names the evil ids as missing
    raw_sql(
        registry,
        "INSERT INTO verify_reports (saved_at, saved_by, adapters, files, bytes, seconds, "
        "counts, problems, problems_left_out) VALUES (:t, :t, 1, 0, 0, 0, '{}', :p, 0)",
        t=EVIL, p=json.dumps([{"id": EVIL, "status": EVIL, "problems": [EVIL]}]),
    )  # fmt: skip
    q = quote(EVIL, safe="")
    pages = [
        "/", f"/leaderboard/{q}", f"/search?agent_id={q}&include_archived=1",
        f"/search?task_type={q}&tag={q}={q}", f"/adapters/{quote(evil_id, safe='')}",
        f"/adapters/{quote(evil_id, safe='')}/lineage", f"/adapters/{q}-child",
        f"/adapters/{quote(evil_id, safe='')}/verify", f"/evolution/{q}", "/evolution",
        "/integrity", f"/adapters/{q}-nothing", f"/search?order_by={q}",
    ]  # fmt: skip
    for path in pages:
        answer = client.get(path)
        assert answer.status_code in (200, 400, 404), path
        assert "<script" not in answer.text.lower(), path
        assert "&lt;script&gt;" in answer.text, path  # it was there, escaped
    adapter_page = client.get(f"/adapters/{quote(evil_id, safe='')}").text
    for field in ("agent_id", "session_id", "config_hash", "training_task_hash", "source"):
        assert f"<th>{field}</th><td>&lt;script&gt;" in adapter_page, field
    assert adapter_page.count("&lt;script&gt;") >= 14
    assert client.get(f"/api/adapters/{q}-child").json()["adapter"]["agent_id"] == EVIL


def test_no_write_goes_through_the_dashboard_s_connections(
    registry: AdapterRegistry, store_one: Any, reader: ReadOnlyRegistry, backend: str
) -> None:
    record = store_one()
    with pytest.raises(AdapterStorageError, match=READ_ONLY):
        reader.set_tags(record.id, {"stage": "prod"})
    with pytest.raises(AdapterStorageError, match=READ_ONLY):
        reader.update_fitness(record.id, fitness_score=0.5)
    for sql in (
        "INSERT INTO adapter_tags VALUES ('x', 'k', 'v')",
        "CREATE TABLE intruder (x INTEGER)",
        "DELETE FROM adapter_aliases",
    ):
        with (
            pytest.raises(Exception, match=READ_ONLY),
            reader.database.engine.begin() as c,
        ):
            c.execute(text(sql))
        raw = reader.database._raw
        assert raw is not None
        with pytest.raises(raw.errors, match=READ_ONLY):
            raw.fetch(sql, [], {})
    assert registry.tags(record.id) == {} and registry.retrieve_by_id(record.id) == record
    names = "SELECT count(*) FROM " + (
        "sqlite_master WHERE name = 'intruder'" if backend == "sqlite"
        else "pg_tables WHERE tablename = 'intruder'"
    )  # fmt: skip
    assert raw_sql(registry, names) == [(0,)]


def test_a_read_only_open_creates_nothing(tmp_path: Path, db_url: str, backend: str) -> None:
    root = tmp_path / "no-root"
    if backend == "sqlite":
        missing = tmp_path / "nothing" / "r.db"
        with pytest.raises(RegistryNotFoundError, match=r"^no registry at "):
            ReadOnlyRegistry(root=root, db_url=f"sqlite:///{missing}")
        assert not missing.parent.exists()
        sqlite3.connect(tmp_path / "empty.db").close()  # a database, no registry in it
        db_url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(RegistryNotFoundError, match=r"^no registry at .*no registry schema"):
        ReadOnlyRegistry(root=root, db_url=db_url)
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.connect() as conn:
        from sqlalchemy import inspect

        assert inspect(conn).get_table_names() == []  # no migration ran
    engine.dispose()
    AdapterRegistry(root=tmp_path / "adapters", db_url=db_url).close()
    with pytest.raises(RegistryNotFoundError, match=f"^no registry at {root}"):
        ReadOnlyRegistry(root=root, db_url=db_url)
    assert not root.exists()


def test_a_read_only_open_refuses_a_root_and_a_database_of_two_registries(
    registry: AdapterRegistry, store_one: Any, request: pytest.FixtureRequest, backend: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Root A with database B never shows B's rows against A's files; nothing is written."""
    store_one(seed=1)
    other = empty_registry(request, backend, tmp_path / "other")
    try:
        with pytest.raises(RegistryMismatchError) as caught:
            ReadOnlyRegistry(root=registry.root, db_url=other.db_url)
        assert registry.registry_id in str(caught.value)
        assert other.registry_id in str(caught.value)
        with pytest.raises(RegistryMismatchError):
            ReadOnlyRegistry(root=other.root, db_url=registry.db_url)
    finally:
        other.close()
    unbound = tmp_path / "unbound"
    unbound.mkdir()
    with pytest.raises(RegistryNotFoundError, match=f"^no registry at {unbound}"):
        ReadOnlyRegistry(root=unbound, db_url=registry.db_url)
    (unbound / "notes").write_text("x")
    with pytest.raises(RegistryMismatchError, match=f"registry {registry.registry_id}"):
        ReadOnlyRegistry(root=unbound, db_url=registry.db_url)
    assert sorted(os.listdir(unbound)) == ["notes"]
    with ReadOnlyRegistry(root=registry.root, db_url=registry.db_url) as reader:
        assert reader.registry_id == registry.registry_id and len(reader.search()) == 1


def _at_revision(db_url: str, revision: str) -> None:
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(schema.MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    engine.dispose()


def test_an_older_schema_is_refused_and_left_as_it_is(
    tmp_path: Path, db_url: str, backend: str
) -> None:
    (tmp_path / "adapters").mkdir()
    _at_revision(db_url, "0004")
    with pytest.raises(
        AdapterStorageError, match=r"older schema \(revision 0004\).*never migrates"
    ):
        ReadOnlyRegistry(root=tmp_path / "adapters", db_url=db_url)
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
    engine.dispose()
    AdapterRegistry(root=tmp_path / "adapters", db_url=db_url).close()  # a writer migrates it
    ReadOnlyRegistry(root=tmp_path / "adapters", db_url=db_url).close()
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(AdapterStorageError, match=r"newer schema .*upgrade adapter-registry"):
        ReadOnlyRegistry(root=tmp_path / "adapters", db_url=db_url)


WRITER = """
import sqlite3, sys, os
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint = 0")
conn.execute("INSERT INTO adapter_tags VALUES (?, 'from', 'wal')", (sys.argv[2],))
print("written", flush=True)
if sys.argv[3] == "crash":
    os.kill(os.getpid(), 9)
sys.stdin.readline()
"""


@pytest.mark.parametrize("state", ["clean", "live-writer", "crashed", "crashed-no-shm"])
def test_a_wal_database_in_any_state(tmp_path: Path, state: str) -> None:
    """SQLite's WAL (PostgreSQL has no such files): rows only in the WAL are read, whether
    its writer is alive, gone cleanly, or killed, with or without its -shm index."""
    db = tmp_path / "r.db"
    with AdapterRegistry(root=tmp_path / "adapters", db_url=f"sqlite:///{db}") as registry:
        record = registry.store(
            lora_bytes(), config=lora_config(), task_type="bug-fix", source="manual",
            session_id="s",
        )  # fmt: skip
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), record.id, "crash" if "crash" in state else "x"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout is not None and writer.stdout.readline() == "written\n"
    if state == "clean":
        writer.communicate("\n", timeout=30)  # its close checkpoints and removes the WAL
        assert not Path(f"{db}-wal").exists()
    if "crash" in state:
        writer.wait(timeout=30)
        assert Path(f"{db}-wal").stat().st_size > 0  # the tag is only in the WAL
    if state == "crashed-no-shm":
        Path(f"{db}-shm").unlink()
    main_before = db.read_bytes()
    with ReadOnlyRegistry(root=tmp_path / "adapters", db_url=f"sqlite:///{db}") as reader:
        answer = TestClient(create_app(reader)).get(f"/api/adapters/{record.id}").json()
    assert answer["tags"] == {"from": "wal"}
    assert db.read_bytes() == main_before  # no checkpoint, no write into the database
    if writer.poll() is None:
        writer.communicate("\n", timeout=30)


def _chain(registry: AdapterRegistry, length: int, children: int) -> list[str]:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(length)]
    rows = [
        _raw_record(i, generation=n, parent_ids=json.dumps(ids[n - 1: n]),
                    created_at=f"2026-01-01T00:00:00.{n:06d}+00:00")
        for n, i in enumerate(ids)
    ]  # fmt: skip
    kids = [f"11111111-0000-4000-8000-{i:012d}" for i in range(children)]
    rows += [
        _raw_record(k, generation=1, parent_ids=json.dumps([ids[0]]),
                    created_at=f"2026-01-02T00:00:00.{n:06d}+00:00")
        for n, k in enumerate(kids)
    ]  # fmt: skip
    wide = "22222222-0000-4000-8000-000000000000"  # a crossover of 30 parents
    rows.append(_raw_record(wide, parent_ids=json.dumps(kids[:30]), generation=2))
    _write_rows(registry, rows)
    return ids


def test_the_lineage_is_bounded_and_links_to_more(
    registry: AdapterRegistry, client: TestClient
) -> None:
    ids = _chain(registry, 40, 60)
    tip = ids[-1]
    graph = client.get(f"/api/adapters/{tip}/lineage").json()
    assert graph["ancestors"] == ids[-2 : -2 - lineage.DEPTH : -1] and graph["deeper"]
    page = client.get(f"/adapters/{quote(tip)}").text
    svg = re.search(r"<svg.*?</svg>", page, re.S)
    assert svg is not None
    linked = re.findall(r'<a class="node-link" href="/adapters/([^"]+)"', svg.group())
    assert linked == graph["ancestors"]  # one linked node per ancestor shown
    deeper = re.findall(r'<a class="more" href="([^"]+)"', svg.group())
    assert deeper == [f"/adapters/{tip}?depth={2 * lineage.DEPTH}&amp;breadth={lineage.BREADTH}"]
    assert len(client.get(f"/api/adapters/{tip}/lineage?depth=64").json()["ancestors"]) == 39
    wide = client.get("/api/adapters/22222222-0000-4000-8000-000000000000/lineage").json()
    assert len(wide["generations"][0]) == lineage.BREADTH and wide["hidden"][0] == 30 - 12
    assert "+18 more" in client.get("/adapters/22222222-0000-4000-8000-000000000000").text
    root = client.get(f"/api/adapters/{ids[0]}").json()
    assert len(root["children"]) == 50 and root["more_children"]
    assert "all its children" in client.get(f"/adapters/{ids[0]}").text
    everything = client.get(f"/api/search?parent_id={ids[0]}&include_archived=1&limit=500")
    assert len(_ids(everything)) == 61


def test_verify_all_save_from_the_command_line(
    registry: AdapterRegistry, store_one: Any, client: TestClient, backend: str
) -> None:
    store_one(seed=1)
    store_one(seed=2)
    runner = CliRunner()
    base = ["--root", str(registry.root), "--db-url", registry.db_url]
    bad = runner.invoke(cli, [*base, "verify", "--save", registry.list_all()[0].id])
    assert bad.exit_code == 2 and "--all" in bad.output
    assert client.get("/api/integrity").json() == {"report": None}
    done = runner.invoke(cli, [*base, "verify", "--all", "--save", "--json"])
    assert done.exit_code == 0, done.output
    saved = json.loads(done.output)["saved"]
    report = client.get("/api/integrity").json()["report"]
    assert report["id"] == saved["id"] and report["ok"] and report["adapters"] == 2
    assert report["counts"] == {"ok": 2, "mismatch": 0, "missing": 0, "unreadable": 0}
    second = runner.invoke(cli, [*base, "verify", "--all", "--save"])
    assert "saved as report" in second.output
    assert client.get("/api/integrity").json()["report"]["id"] > saved["id"]
    for sql in ("UPDATE verify_reports SET adapters = 0", "DELETE FROM verify_reports"):
        with pytest.raises(Exception, match=r"append-only|write-once"):
            raw_sql(registry, sql)  # the history of reports is append-only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ui_serves_a_home_and_never_creates_one(tmp_path: Path) -> None:
    nothing = tmp_path / "nothing"
    failed = CliRunner().invoke(cli, ["--home", str(nothing), "ui"])
    assert failed.exit_code == 1 and "error: no registry at " in failed.output
    assert not nothing.exists()
    home = tmp_path / "home"
    AdapterRegistry(home / "adapters", f"sqlite:///{home / 'adapter_registry.db'}").close()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "adapter_registry.cli", "--home", str(home), "ui",
         "--port", str(port)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stderr is not None
        assert "read-only" in server.stderr.readline()
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                body = urllib.request.urlopen(f"{url}/api/overview", timeout=5).read()
                break
            except urllib.error.URLError:
                time.sleep(0.05)
        assert json.loads(body)["totals"]["adapters"] == 0
        rebinding = urllib.request.Request(f"{url}/api/overview", headers={"Host": "evil.com"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebinding, timeout=5)
        assert refused.value.code == 400
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def test_the_demo_serves_the_dashboard_and_prints_the_command_that_opens_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "demo"
    done = CliRunner().invoke(
        cli, ["demo", "--home", str(home), "-n", "1", "-k", "4", "--no-torch", "--keep", "--json"]
    )
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    board = summary["dashboard"]
    assert board["ran"] and board["url"].startswith("http://127.0.0.1:") and board["leaderboard"]
    command_line = f"adapter-registry --home {home} ui"
    assert done.stderr.rstrip().splitlines()[-1] == f"open it in the dashboard: {command_line}"
    with ReadOnlyRegistry(home=home) as reader:  # what that command opens
        assert len(reader.search(include_archived=True)) == summary["store"]["adapters"]


NO_TORCH = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "peft", "transformers", "vllm"):
            raise ImportError(f"{name} is forbidden in this test")

sys.meta_path.insert(0, Refuse())
from starlette.testclient import TestClient
from adapter_registry.cli import ui
from adapter_registry.dashboard.app import create_app
from adapter_registry.dashboard.reading import ReadOnlyRegistry
from adapter_registry.demo import dashboard

with ReadOnlyRegistry(home=sys.argv[1]) as reader:
    assert TestClient(create_app(reader)).get("/api/overview").status_code == 200
print("loaded:", sorted(m for m in sys.modules if m.startswith(("torch", "peft", "vllm"))))
"""


def test_the_dashboard_runs_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    AdapterRegistry(home=tmp_path).close()
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tmp_path)], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded: []"


NO_UI = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("starlette", "uvicorn", "jinja2"):
            raise ImportError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Refuse())
from adapter_registry.cli import main
main(sys.argv[1:])
"""


def test_without_the_ui_extra_ui_says_what_to_install_and_the_demo_skips_its_step(
    tmp_path: Path,
) -> None:
    AdapterRegistry(home=tmp_path / "home").close()
    ui = subprocess.run(
        [sys.executable, "-c", NO_UI, "--home", str(tmp_path / "home"), "ui"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ui.returncode == 1
    assert "the dashboard needs the ui extra" in ui.stderr
    assert "pip install 'adapter-registry[ui]'" in ui.stderr
    demo = subprocess.run(
        [sys.executable, "-c", NO_UI, "demo", "--home", str(tmp_path / "demo"), "-n", "1",
         "-k", "2", "--no-torch", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    skipped = json.loads(demo.stdout)["dashboard"]
    assert not skipped["ran"] and "adapter-registry[ui]" in skipped["reason"]


def test_every_leaderboard_page_is_search_s_page(
    registry: AdapterRegistry, client: TestClient
) -> None:
    """Scored, unscored and archived adapters, with ties: each page, read in its scored and
    unscored parts where that is cheaper, is exactly search()'s page at that offset."""
    rows = [
        _raw_record(
            f"00000000-0000-4000-8000-{i:012d}", agent_id=f"agent-{i % 2}",
            created_at=f"2026-01-01T00:00:00.{(i * 7) % 23:06d}+00:00",
            fitness_score=None if i % 3 == 0 else round((i % 5) / 5, 1),
            is_archived=i % 7 == 0,
        )
        for i in range(23)
    ]  # fmt: skip
    _write_rows(registry, rows)
    for query in ("", "&agent_id=agent-1", "&include_archived=1", "&order_by=created_at"):
        filters = dict(
            p.split("=") for p in query.lstrip("&").split("&") if p
        )  # the same filters, for search()
        filters["include_archived"] = bool(filters.get("include_archived"))
        filters.setdefault("order_by", "-fitness_score")
        expected = [r.id for r in registry.search(task_type="bug-fix", **filters)]
        assert len(expected) > 6  # pages of 3 run through scored and unscored ones
        pages = []
        for offset in range(0, 27, 3):
            answer = client.get(f"/api/leaderboard/bug-fix?limit=3&offset={offset}{query}")
            page = _ids(answer)
            want = registry.search(task_type="bug-fix", **filters, limit=3, offset=offset)
            assert page == [r.id for r in want], (query, offset)
            pages += page
        assert pages == expected, query

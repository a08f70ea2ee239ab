"""The console script through its real entry points: click's CliRunner on the command group,
and ``python -m adapter_registry.cli`` in a subprocess where the process itself matters (exit
status, stderr, imports, torch blocked, a terminal, a crash). Real adapters, real SQLite."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from adapter_registry import AdapterRecord, AdapterRegistry, _core
from adapter_registry._lora_files import lora_bytes, lora_config, peft_dir
from adapter_registry.cli import cli
from adapter_registry.cli.app import COMMANDS
from adapter_registry.cli.output import RECORD_KEYS

from conftest import entries, rows

README = Path(__file__).resolve().parents[1] / "README.md"
OTHER_BASE = "other/model-1b"
#: Runs the console script (arguments after -c SCRIPT) and, at exit, says on stderr which
#: modules it imported; with BLOCK_TORCH=1 it first makes torch, peft and transformers
#: unimportable, as test_no_torch does.
REPORTING = textwrap.dedent(
    """
    import atexit, json, os, sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "peft", "transformers"):
                raise ImportError(f"{name} is forbidden in this test")

    if os.environ.get("BLOCK_TORCH") == "1":
        sys.meta_path.insert(0, Refuse())
    atexit.register(lambda: print("modules:", json.dumps(sorted(sys.modules)), file=sys.stderr))
    from adapter_registry.cli import main
    main(sys.argv[1:])
    """
)


def run_reporting(
    *args: str, block_torch: bool
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The console script in a subprocess, and the modules it imported."""
    env = {**os.environ, "BLOCK_TORCH": "1" if block_torch else "0"}
    done = subprocess.run(
        [sys.executable, "-c", REPORTING, *args], capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    last = done.stderr.splitlines()[-1]
    assert last.startswith("modules: "), done.stderr
    return done, set(json.loads(last.removeprefix("modules: ")))


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in ("torch", "peft", "transformers", "numpy")}


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], env=env)


def run_json(home: Path, *args: str) -> Any:
    result = run(home, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def subprocess_cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter_registry.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


@pytest.fixture
def reg(home: Path) -> Iterator[AdapterRegistry]:
    """The registry as ``--home`` opens it."""
    registry = AdapterRegistry(
        root=home / "adapters", db_url=f"sqlite:///{home / 'adapter_registry.db'}"
    )
    yield registry
    registry.close()


def put(reg: AdapterRegistry, seed: int, task: str = "bug-fix", **kwargs: Any) -> AdapterRecord:
    base = kwargs.pop("base", None)
    config = lora_config(**({"base_model_name_or_path": base} if base else {}))
    kwargs.setdefault("source", "evolution" if kwargs.get("parent_ids") else "distillation")
    return reg.store(
        lora_bytes(seed=seed), config=config, task_type=task, session_id="cli-tests", **kwargs
    )


@pytest.fixture
def family(reg: AdapterRegistry) -> dict[str, AdapterRecord]:
    """a <- b <- c (bug-fix), d: a crossover of b and c, r: refactor of another base model,
    x: archived. Evaluated: a 0.5, b 0.9, c 0.7, r 0.6, x 0.99; d is not."""
    a = put(reg, 1, agent_id="agent-1", training_task_hash="t-1")
    b = put(reg, 2, parent_ids=[a.id])
    c = put(reg, 3, parent_ids=[b.id])
    d = put(reg, 4, parent_ids=[b.id, c.id])
    r = put(reg, 5, task="refactor", base=OTHER_BASE)
    x = put(reg, 6)
    for record, score in ((a, 0.5), (b, 0.9), (c, 0.7), (r, 0.6), (x, 0.99)):
        reg.update_fitness(record.id, fitness_score=score, pass_rate=score / 2)
    reg.archive(x.id)
    return {k: reg.retrieve_by_id(v.id) for k, v in dict(a=a, b=b, c=c, d=d, r=r, x=x).items()}


def listed_ids(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines()[1:]]


# ------------------------------------------------------------------------------- ls


def test_ls_lists_live_adapters_newest_first(home: Path, family: dict[str, AdapterRecord]) -> None:
    result = run(home, "ls")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:3] == ["ID", "TASK", "TYPE"]
    assert listed_ids(result.stdout) == [family[k].id for k in "rdcba"]
    by_id = {line.split()[0]: line for line in lines}
    size = f"{family['b'].file_size_bytes / 1000:.1f}"
    assert by_id[family["b"].id].split()[1:9] == [
        "bug-fix", "tiny/qwen2-2layer", "2", "1", "0.900", "0.45", size, "kB",
    ]  # fmt: skip
    assert by_id[family["d"].id].split()[5:7] == ["-", "-"]  # not evaluated


def test_ls_json_filters_sorts_and_limits(home: Path, family: dict[str, AdapterRecord]) -> None:
    everything = run_json(home, "ls", "--include-archived")
    assert [r["id"] for r in everything] == [family[k].id for k in "xrdcba"]
    assert all(tuple(r) == RECORD_KEYS for r in everything)
    a = next(r for r in everything if r["id"] == family["a"].id)
    assert a == {**family["a"].to_dict(), "parent_ids": [], "is_archived": False}
    d = next(r for r in everything if r["id"] == family["d"].id)
    assert d["parent_ids"] == [family["b"].id, family["c"].id] and d["fitness_score"] is None
    assert everything[0]["is_archived"] is True

    def ids(*args: str) -> list[str]:
        return [r["id"] for r in run_json(home, "ls", *args)]

    assert ids("--task-type", "refactor") == [family["r"].id]
    assert ids("--base-model", OTHER_BASE) == [family["r"].id]
    assert ids("-t", "bug-fix", "-b", OTHER_BASE) == []
    assert ids("--sort", "fitness") == [family[k].id for k in "bcrad"]
    assert ids("--sort", "fitness", "-a", "--limit", "2") == [family["x"].id, family["b"].id]
    assert ids("-t", "bug-fix", "-a", "-n", "1") == [family["x"].id]


def test_ls_on_an_empty_registry(home: Path) -> None:
    AdapterRegistry(home=home).close()  # the CLI's ls never creates one (test_cli_no_create)
    result = run(home, "ls")
    assert result.exit_code == 0 and result.stdout == "" and "no adapters" in result.stderr
    assert run_json(home, "ls") == []


# ------------------------------------------------------------------------------- show


def test_show_prints_every_field_the_files_and_the_lineage(
    home: Path, family: dict[str, AdapterRecord]
) -> None:
    c = family["c"]
    result = run(home, "show", c.id)
    assert result.exit_code == 0, result.output
    text = result.stdout
    for key in RECORD_KEYS:
        assert re.search(rf"^{key}\s", text, re.M), key
    assert re.search(rf"^file_hash\s+{c.file_hash}$", text, re.M)
    assert re.search(rf"^parent_ids\s+{family['b'].id}$", text, re.M)
    assert f"files in {Path(c.file_path).parent}" in text
    assert re.search(
        r"^adapter_model\.safetensors .* the same file as adapter\.safetensors", text, re.M
    )
    assert re.search(r"^adapter_config\.json\s+\d+ B\s+0444\s+1 link$", text, re.M)
    assert f"├── parent {family['b'].id}" in text
    assert f"└── child {family['d'].id}" in text


def test_show_json_reports_the_files_as_they_are(
    home: Path, family: dict[str, AdapterRecord]
) -> None:
    b = family["b"]
    shown = run_json(home, "show", b.id)
    assert set(shown) == {
        "record", "directory", "files", "ancestors", "children",
        "tags", "aliases", "evaluation_count", "latest_evaluations",
    }  # fmt: skip
    assert shown["record"]["id"] == b.id and shown["record"]["parent_ids"] == [family["a"].id]
    assert shown["ancestors"] == [family["a"].id]
    assert shown["children"] == [family["c"].id, family["d"].id]
    files = {f["name"]: f for f in shown["files"]}
    assert list(files) == [
        _core.WEIGHTS_FILE, _core.PEFT_WEIGHTS_FILE, _core.CONFIG_FILE, _core.RECORD_FILE,
    ]  # fmt: skip
    weights, link = files[_core.WEIGHTS_FILE], files[_core.PEFT_WEIGHTS_FILE]
    assert weights["size_bytes"] == b.file_size_bytes and weights["mode"] == "0444"
    assert weights["links"] == 2 and link["same_file_as_weights"] is True
    assert not files[_core.CONFIG_FILE]["same_file_as_weights"]

    config = Path(shown["directory"]) / _core.CONFIG_FILE
    config.unlink()
    (Path(shown["directory"]) / "stray.txt").write_text("?")
    files = {f["name"]: f for f in run_json(home, "show", b.id)["files"]}
    assert files[_core.CONFIG_FILE] == {
        "name": _core.CONFIG_FILE, "path": str(config), "exists": False, "size_bytes": None,
        "mode": None, "links": None, "same_file_as_weights": False,
    }  # fmt: skip
    assert files["stray.txt"]["exists"] and files["stray.txt"]["size_bytes"] == 1
    assert "MISSING" in run(home, "show", b.id).stdout


# ------------------------------------------------------------------------------- best


def test_best_ranks_live_evaluated_adapters(home: Path, family: dict[str, AdapterRecord]) -> None:
    assert run_json(home, "best", "bug-fix")["id"] == family["b"].id  # x (0.99) is archived
    assert run_json(home, "best", "refactor", "--base-model", OTHER_BASE)["id"] == family["r"].id
    result = run(home, "best", "bug-fix")
    assert result.exit_code == 0 and listed_ids(result.stdout) == [family["b"].id]

    result = run(home, "best", "refactor", "--base-model", "tiny/qwen2-2layer")
    assert result.exit_code == 1 and result.stdout == ""
    assert_one_error_line(result.stderr, "task type refactor", "no evaluated live adapter")
    result = run(home, "best", "docs", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout) is None


# ------------------------------------------------------------------------------- store


def test_store_a_peft_directory_and_a_file_with_its_config(
    home: Path, reg: AdapterRegistry, tmp_path: Path
) -> None:
    directory = peft_dir(tmp_path / "checkpoint", seed=11)
    result = run(
        home, "store", str(directory), "--task-type", "bug-fix", "--source", "distillation",
        "--session-id", "run-42", "--agent-id", "agent-3", "--training-task-hash", "h1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    parent = json.loads(result.stdout)
    assert reg.retrieve_by_id(parent["id"]).to_dict() == {
        **parent, "parent_ids": "[]"
    }  # fmt: skip
    assert (parent["agent_id"], parent["training_task_hash"]) == ("agent-3", "h1")
    stored = Path(parent["file_path"]).read_bytes()
    assert stored == (directory / "adapter_model.safetensors").read_bytes()

    weights = tmp_path / "child.safetensors"
    weights.write_bytes(lora_bytes(seed=12))
    (tmp_path / "config.json").write_text(json.dumps(lora_config()))
    result = run(
        home, "store", str(weights), "--config", str(tmp_path / "config.json"), "-t", "bug-fix",
        "-s", "evolution", "--session-id", "run-43", "--parent", parent["id"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    child_id = result.stdout.split()[1].rstrip(":")
    child = reg.retrieve_by_id(child_id)
    assert (child.version, child.generation, child.parents) == (2, 1, [parent["id"]])
    assert f"sha256 {child.file_hash}" in result.stdout


def test_store_errors_are_one_line_and_write_nothing(
    home: Path, reg: AdapterRegistry, tmp_path: Path
) -> None:
    base = ["-t", "bug-fix", "-s", "manual", "--session-id", "s"]
    missing = tmp_path / "nope"
    malformed = tmp_path / "bad.safetensors"
    malformed.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    config = tmp_path / "adapter_config.json"
    config.write_text(json.dumps(lora_config()))
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    cases = [
        ([str(missing), *base], 1, [f"{missing}: no such file or directory"]),
        ([str(malformed), "-c", str(config), *base], 1, [str(malformed), "not a valid"]),
        ([str(malformed), *base], 2, [str(malformed), "--config"]),
        ([str(empty_dir), *base], 1, [str(empty_dir), "holds neither"]),
        ([str(peft_dir(tmp_path / "ok")), *base, "--parent", str(uuid.uuid4())], 1, ["parent"]),
        ([str(tmp_path / "ok"), "-t", "Bug Fix", "-s", "manual", "--session-id", "s"], 1,
         ["task_type 'Bug Fix' is not kebab-case"]),
        ([str(tmp_path / "ok"), "-t", "bug-fix", "-s", "manual"], 2, ["--session-id"]),
    ]  # fmt: skip
    before = entries(reg)
    for args, status, fragments in cases:
        result = run(home, "store", *args)
        assert result.exit_code == status, (args, result.output)
        assert result.stdout == ""
        assert_one_error_line(result.stderr, *fragments)
    assert rows(reg) == 0
    assert [e for e in entries(reg) if e != ".staging"] == [e for e in before if e != ".staging"]


# ------------------------------------------------------------------------------- verify


def flip_a_byte(record: AdapterRecord) -> None:
    path = Path(record.file_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def test_verify_reports_every_adapter_and_exits_1_on_a_problem(
    home: Path, family: dict[str, AdapterRecord]
) -> None:
    result = run(home, "verify", "--all", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"verified 6 adapters \(12 files, [\d.]+ kB\) in [\d.]+ s: 6 ok\n", result.stdout
    )
    checked = run_json(home, "verify", family["a"].id, family["x"].id)
    assert set(checked) == {"ok", "adapters", "files", "bytes", "seconds", "counts", "reports"}
    assert checked["ok"] is True and checked["adapters"] == 2 and checked["files"] == 4
    assert checked["counts"] == {"ok": 2, "mismatch": 0, "missing": 0, "unreadable": 0}
    weights_bytes = family["a"].file_size_bytes + family["x"].file_size_bytes
    assert checked["bytes"] > weights_bytes  # the configs are hashed too
    assert checked["reports"] == [
        {"id": family["a"].id, "status": "ok", "problems": []},
        {"id": family["x"].id, "status": "ok", "problems": []},
    ]

    flip_a_byte(family["b"])
    Path(family["c"].file_path).with_name(_core.CONFIG_FILE).unlink()
    result = run(home, "verify", "--all")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert f"MISMATCH {family['b'].id}: adapter.safetensors does not match its record" in lines[0]
    assert lines[1].startswith(f"MISSING {family['c'].id}: adapter_config.json is missing")
    assert lines[2].endswith("4 ok, 1 mismatch, 1 missing")
    result = run(home, "verify", family["b"].id, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["reports"][0]["status"] == "mismatch"
    assert run(home, "verify", family["a"].id).exit_code == 0


def test_verify_usage_and_unknown_ids(home: Path, family: dict[str, AdapterRecord]) -> None:
    result = run(home, "verify")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "give adapter ids or --all")
    assert run(home, "verify", "--all", family["a"].id).exit_code == 2
    unknown = str(uuid.uuid4())
    result = run(home, "verify", family["a"].id, unknown)
    assert result.exit_code == 1
    assert_one_error_line(result.stderr, f"adapter {unknown} is not registered")


def test_verify_draws_a_progress_bar_over_bytes_on_a_terminal(
    home: Path, family: dict[str, AdapterRecord]
) -> None:
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    process = subprocess.Popen(
        [sys.executable, "-m", "adapter_registry.cli", "--home", str(home), "verify", "--all"],
        stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True,
    )  # fmt: skip
    os.close(terminal)
    screen = b""
    while True:
        # a limit for a hang (a bar that never ends), not a timed assert
        readable, _, _ = select.select([controller], [], [], 120)
        assert readable, f"no output for 2 minutes; so far: {screen[-500:]!r}"
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode())
    total = sum(
        r.file_size_bytes + Path(r.file_path).with_name(_core.CONFIG_FILE).stat().st_size
        for r in family.values()
    )
    assert "━" in text and "verify 12/12 files" in text
    assert f"{total / 1000:.1f}/{total / 1000:.1f} kB" in text
    assert "verified 6 adapters (12 files" in text
    assert "━" not in run(home, "verify", "--all").output  # nothing of the bar off a terminal


# ------------------------------------------------------------------------------- fitness, archive


def test_fitness_records_an_evaluation(home: Path, family: dict[str, AdapterRecord]) -> None:
    d = family["d"]
    result = run(home, "fitness", d.id, "--score", "0.95")
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.startswith(f"evaluated {d.id}: bug-fix") and "fitness 0.950" in result.stdout
    )
    record = run_json(home, "fitness", d.id, "--pass-rate", "0.25")
    assert (record["fitness_score"], record["pass_rate"]) == (0.95, 0.25)
    assert run_json(home, "best", "bug-fix")["id"] == d.id

    result = run(home, "fitness", d.id)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "give --score, --pass-rate or both")
    result = run(home, "fitness", d.id, "--pass-rate", "1.5")
    assert result.exit_code == 1
    assert_one_error_line(result.stderr, f"adapter {d.id}", "pass_rate 1.5 is outside 0..1")
    assert run(home, "fitness", d.id, "--score", "nan").exit_code == 1
    assert run_json(home, "show", d.id)["record"]["pass_rate"] == 0.25


def test_archive_takes_an_adapter_out_of_rankings(
    home: Path, family: dict[str, AdapterRecord]
) -> None:
    b = family["b"]
    result = run(home, "archive", b.id)
    assert result.exit_code == 0 and result.stdout.startswith(f"archived {b.id}:")
    assert "archived" in result.stdout.split(":", 1)[1]
    assert run_json(home, "archive", b.id)["is_archived"] is True  # twice is harmless
    assert run_json(home, "best", "bug-fix")["id"] == family["c"].id
    assert b.id not in listed_ids(run(home, "ls").stdout)
    assert Path(b.file_path).exists() and run(home, "verify", b.id).exit_code == 0


@pytest.mark.parametrize("command", ["show", "archive", "lineage", "verify", "fitness"])
def test_a_missing_id_is_one_error_line(home: Path, reg: AdapterRegistry, command: str) -> None:
    unknown = str(uuid.uuid4())
    extra = ["--score", "1"] if command == "fitness" else []
    result = run(home, command, unknown, *extra)
    assert result.exit_code == 1 and result.stdout == ""
    assert_one_error_line(result.stderr, f"error: adapter {unknown} is not registered")


# ------------------------------------------------------------------------------- lineage


def test_lineage_is_a_tree_both_ways(home: Path, family: dict[str, AdapterRecord]) -> None:
    a, b, c, d = (family[k].id for k in "abcd")
    result = run(home, "lineage", d)
    assert result.exit_code == 0, result.output
    lines = [re.sub(r"([0-9a-f-]{36}).*", r"\1", line) for line in result.stdout.splitlines()]
    assert lines == [
        d,
        f"├── parent {b}",
        f"│   └── parent {a}",
        f"└── parent {c}",
        f"    └── parent {b}",
    ]
    assert "(repeated: its branch is shown above)" in result.stdout.splitlines()[-1]

    tree = run_json(home, "lineage", b)
    assert (tree["id"], tree["version"], tree["generation"]) == (b, 2, 1)
    assert [p["id"] for p in tree["parents"]] == [a] and tree["parents"][0]["parents"] == []
    assert [ch["id"] for ch in tree["children"]] == [c, d]
    assert tree["children"][0]["children"][0] == {
        "id": d, "task_type": "bug-fix", "version": 4, "generation": 3, "fitness_score": None,
        "source": "evolution", "is_archived": False, "repeated": True, "children": [],
    }  # fmt: skip
    assert tree["children"][1]["repeated"] is False
    lonely = run_json(home, "lineage", family["r"].id)
    assert (lonely["parents"], lonely["children"]) == ([], [])


# ------------------------------------------------------------------------------- stats


def test_stats_counts_by_task_type_and_base_model(
    home: Path, family: dict[str, AdapterRecord]
) -> None:
    size = family["a"].file_size_bytes  # every adapter here has the same shapes
    counted = run_json(home, "stats")
    totals = {"adapters": 6, "live": 5, "archived": 1, "evaluated": 5, "not_evaluated": 1}
    assert counted["by_task_type"] == {
        "bug-fix": {"adapters": 5, "live": 4, "archived": 1, "evaluated": 4, "not_evaluated": 1,
                    "bytes": 5 * size, "best_fitness": 0.9},
        "refactor": {"adapters": 1, "live": 1, "archived": 0, "evaluated": 1, "not_evaluated": 0,
                     "bytes": size, "best_fitness": 0.6},
    }  # fmt: skip
    assert counted["by_base_model"] == {
        OTHER_BASE: counted["by_task_type"]["refactor"],
        "tiny/qwen2-2layer": counted["by_task_type"]["bug-fix"],
    }
    assert counted == {
        **totals, "bytes": 6 * size, "best_fitness": 0.9,
        "by_task_type": counted["by_task_type"], "by_base_model": counted["by_base_model"],
    }  # fmt: skip
    text = run(home, "stats").stdout
    assert re.search(r"│ bug-fix\s+│\s+5 │\s+4 │\s+1 │\s+4 │\s+1 │", text)
    assert re.search(r"│ total\s+│\s+6 │\s+5 │\s+1 │\s+5 │\s+1 │", text)


# ------------------------------------------------------------------------------- recover


def test_recover_registers_what_a_crashed_store_published(
    home: Path, reg: AdapterRegistry, family: dict[str, AdapterRecord], tmp_path: Path
) -> None:
    crashed = subprocess_cli(
        "--home", str(home), "store", str(peft_dir(tmp_path / "ckpt", seed=21)), "-t",
        "bug-fix", "-s", "manual", "--session-id", "crashing",
        env={**os.environ, "ADAPTER_REGISTRY_CRASH_AT": "published"},
    )  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    known = {r.id for r in family.values()}
    (orphan,) = {p.name for p in reg.root.iterdir() if not p.name.startswith(".")} - known
    assert orphan not in {r["id"] for r in run_json(home, "ls", "-a")}

    recovered = run_json(home, "recover")
    assert recovered == {
        "clean": True, "rolled_forward": [orphan], "removed_staging": [], "skipped_staging": [],
        "removed_claims": [], "unregistered": [], "missing": [],
    }  # fmt: skip
    assert reg.retrieve_by_id(orphan).session_id == "crashing"
    result = run(home, "recover")
    assert result.exit_code == 0 and result.stdout.startswith("clean: 0 registered")

    shutil.rmtree(Path(family["a"].file_path).parent)
    result = run(home, "recover")
    assert result.exit_code == 1
    assert f"MISSING {family['a'].id}" in result.stdout and "not clean" in result.stdout
    result = run(home, "recover", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["missing"] == [family["a"].id]


# ------------------------------------------------------------------------------- global options


def test_home_root_and_db_url_from_options_and_environment(
    home: Path, family: dict[str, AdapterRecord], tmp_path: Path
) -> None:
    ids = {r.id for r in family.values()}
    # RUNE_HOME as the default home, --home over it.
    result = CliRunner().invoke(cli, ["ls", "-a", "--json"], env={"RUNE_HOME": str(home)})
    assert {r["id"] for r in json.loads(result.stdout)} == ids
    AdapterRegistry(home=tmp_path / "elsewhere").close()
    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path / "elsewhere"), "ls", "--json"], env={"RUNE_HOME": str(home)}
    )
    assert json.loads(result.stdout) == []
    # --root and --db-url alone: another registry, which keeps its rows in registry.db.
    elsewhere = tmp_path / "other"
    url = f"sqlite:///{elsewhere / 'registry.db'}"
    with AdapterRegistry(root=elsewhere / "adapters", db_url=url) as registry:
        other = put(registry, 31)
    result = CliRunner().invoke(
        cli, ["--root", str(elsewhere / "adapters"), "--db-url", url, "ls", "--json"]
    )
    assert [r["id"] for r in json.loads(result.stdout)] == [other.id]
    result = CliRunner().invoke(
        cli, ["--root", str(elsewhere / "adapters"), "show", other.id, "--json"],
        env={"RUNE_DB_URL": url},
    )  # fmt: skip
    assert result.exit_code == 0 and json.loads(result.stdout)["record"]["id"] == other.id
    # --home on the command line, as the API's home=, does not read RUNE_DB_URL.
    result = CliRunner().invoke(
        cli, ["--home", str(elsewhere), "show", other.id], env={"RUNE_DB_URL": url}
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no registry at {elsewhere / 'adapter_registry.db'}")


def test_errors_are_one_line_unless_debug(home: Path, family: dict[str, AdapterRecord]) -> None:
    unknown = str(uuid.uuid4())
    done = subprocess_cli("--home", str(home), "show", unknown)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"error: adapter {unknown} is not registered\n"
    done = subprocess_cli("--home", str(home), "--debug", "show", unknown)
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("adapter_registry.errors.AdapterNotFoundError")
    done = subprocess_cli("--home", str(home), "lss")
    assert done.returncode == 2
    assert done.stderr == "error: No such command 'lss'. (see 'adapter-registry --help')\n"
    done = subprocess_cli("--home", str(home), "ls", "--sort", "size")
    assert done.returncode == 2 and done.stderr.startswith("error: Invalid value for '--sort'")
    assert len(done.stderr.splitlines()) == 1


def test_every_command_says_what_it_does_with_an_example() -> None:
    listing = CliRunner().invoke(cli, ["--help"])
    assert listing.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"^  {name}\s+\S.*[^.]\.$", listing.stdout, re.M), name  # not cut
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        usage, _, sentence, *rest = result.stdout.splitlines()
        assert usage.startswith(f"Usage: adapter-registry {name} ") and sentence.endswith(".")
        assert "Example:" in [line.strip() for line in rest], name
        assert any(line.strip().startswith(f"adapter-registry {name}") for line in rest), name


def test_the_readme_documents_every_command() -> None:
    text = README.read_text()
    section = text[text.index("## Command line") :]
    section = section[: section.index("\n## ", 4)]
    for name in COMMANDS:
        assert f"adapter-registry {name}" in section, name
    for key in RECORD_KEYS:
        assert f"`{key}`" in section, key


# ------------------------------------------------------------------------------- processes


def test_ls_imports_neither_rich_nor_torch_nor_other_commands(
    home: Path, family: dict[str, AdapterRecord]
) -> None:
    done, modules = run_reporting("--home", str(home), "ls", block_torch=False)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 6
    assert "adapter_registry.cli.read" in modules
    assert {m for m in modules if m.split(".")[0] == "rich"} == set() and heavy(modules) == set()
    others = {
        f"adapter_registry.cli.{m}"
        for m in ("write", "integrity", "stats", "demo", "promote", "evaluate")
    }
    assert modules & others == set() and "adapter_registry.demo" not in modules


def test_the_cli_and_the_demo_run_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    done, modules = run_reporting(
        "demo", "--home", str(home), "--agents", "2", "--adapters-per-agent", "3",
        "--size-mb", "0.2", "--json", block_torch=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] is True and summary["serve"]["ran"] is False
    assert summary["serve"]["reason"].startswith("torch is not installed")
    assert heavy(modules) == set()

    done, modules = run_reporting("--home", str(home), "ls", "--json", block_torch=True)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 5  # the demo archived one of its six
    assert heavy(modules) == set()


# ------------------------------------------------------------------------------- demo


def test_the_demo_plays_the_swarm_and_leaves_a_registry_that_checks_out(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "adapter_registry.demo", "--home", str(home), "--agents", "3",
         "--adapters-per-agent", "4", "--size-mb", "0.3", "--no-torch"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    assert "verified 12 adapters (24 files" in text and ": 12 ok" in text
    assert "verify: mismatch" in text and "verify: ok" in text
    table = text[text.index("what the demo did") :]
    for row in ("store", "evaluate", "verify", "tamper", "recover", "serve", "result"):
        assert re.search(rf"│ {row}\s+│", table), row
    assert re.search(r"│ store .* 12 adapters by 3 agents.*adapters/s, [\d.]+ MB/s", table)
    assert re.search(r"│ verify .* 12/12 ok, 24 files.*MB/s", table)
    assert re.search(r"│ tamper .*caught", table) and re.search(r"│ result .* ok", table)
    assert f"kept {home}" in text

    with AdapterRegistry(
        root=home / "adapters", db_url=f"sqlite:///{home / 'adapter_registry.db'}"
    ) as reg:
        stored = reg.list_all()
        assert len(stored) == 12 and all(r.fitness_score is not None for r in stored)
        assert sum(1 for r in stored if r.parents) == 3 * (4 // 2)
        assert len({r.agent_id for r in stored}) == 3 and len({r.task_type for r in stored}) == 3
        assert sum(1 for r in stored if r.is_archived) == 1
        assert all(r.ok for r in reg.verify_all())
        for record in stored:
            for parent in reg.lineage(record.id):
                assert parent.created_at <= record.created_at

    again = run(home, "demo", "--home", str(home))
    assert again.exit_code == 1
    assert_one_error_line(again.stderr, f"demo home {home} is not empty")


def test_the_demo_with_the_torch_extra_serves_the_best_adapter(tmp_path: Path) -> None:
    done = subprocess_cli(
        "demo", "--agents", "2", "--adapters-per-agent", "2", "--size-mb", "0.2", "--json",
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    serve = summary["serve"]
    assert serve["ran"] is True and serve["identical"] is True
    assert serve["logits_shape"] == [1, 8, 128] and serve["reason"] is None
    assert summary["store"]["adapters"] == 4 and summary["verify"]["ok"] == 4
    assert summary["tamper"]["caught"] and summary["tamper"]["restored"]
    assert summary["kept"] is False and not Path(summary["home"]).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("adapter-registry-demo-")]
    assert "removed " in done.stderr and "logits identical" in done.stderr

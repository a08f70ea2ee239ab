"""adapter-registry resolve (issue 15): a name to a verified adapter and the flag a server's
command line takes (vLLM's --lora-modules, SGLang's --lora-paths) or JSON; exit status 1 for
an unknown name, another base model or a failed check. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import QWEN_7B
from adapter_registry.cli import cli

KEYS = ["id", "name", "directory", "file_hash", "config_hash", "base_model_id", "rank",
        "lora_int_id"]  # fmt: skip


def run(registry: AdapterRegistry, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(registry.root), "--db-url", registry.db_url,
                                    *args])  # fmt: skip


def test_json_and_text_name_the_verified_adapter(store_one: Any, registry: AdapterRegistry) -> None:
    record = store_one(seed=1, fitness_score=0.4)
    registry.set_alias("production", record.id)
    for name in (record.id, "production", "best:bug-fix", record.id[:8]):
        shown = run(registry, "resolve", name, "--json")
        assert shown.exit_code == 0, (name, shown.output)
        out = json.loads(shown.stdout)
        assert list(out) == KEYS
        served = registry.resolve(record.id)
        expected_name = record.id if name == record.id[:8] else name  # a prefix is expanded
        assert out == {**served.to_dict(), "name": expected_name}
        assert run(registry, "resolve", name, "--format", "json").stdout == shown.stdout
    text = run(registry, "resolve", "production")
    assert text.exit_code == 0
    lines = dict(line.split(None, 1) for line in text.stdout.splitlines())
    assert lines["id"] == record.id and lines["name"] == "production"
    assert lines["directory"] == str(registry.root / record.id)
    assert lines["lora_int_id"] == str(registry.resolve(record.id).lora_int_id)
    assert lines["verified"].startswith("ok")


def test_server_flags_are_name_equals_path_quoted_for_a_shell(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one(seed=1, fitness_score=0.4)
    registry.set_alias("production", record.id)
    directory = registry.root / record.id
    for fmt, flag in (("vllm", "--lora-modules"), ("sglang", "--lora-paths")):
        for name in ("production", "best:bug-fix", record.id):
            shown = run(registry, "resolve", name, "--format", fmt, "--base-model",
                        record.base_model_id)  # fmt: skip
            assert shown.exit_code == 0, shown.output
            assert shlex.split(shown.stdout) == [flag, f"{name}={directory}"]


def test_unknown_names_other_base_models_and_tampered_files_exit_1(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record, tampered = store_one(seed=1, fitness_score=0.4), store_one(seed=2)
    registry.set_alias("canary", tampered.id)
    weights = Path(tampered.file_path)
    os.chmod(weights, 0o644)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    for args, message in (
        (["nightly"], "error: no adapter, alias or id prefix 'nightly'"),
        (["best:refactor"], "error: best:refactor: no evaluated live adapter of task refactor"),
        ([record.id, "-b", QWEN_7B], f"error: adapter {record.id}: it was trained on"),
        (["canary", "--format", "vllm"], f"error: adapter {tampered.id}: adapter.safetensors"),
    ):
        shown = run(registry, "resolve", *args)
        assert shown.exit_code == 1, shown.output
        assert shown.stdout == ""
        assert shown.stderr.startswith(message), shown.stderr
        assert len(shown.stderr.splitlines()) == 1


def test_json_and_another_format_together_is_bad_usage(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one(seed=1)
    shown = run(registry, "resolve", record.id, "--json", "--format", "vllm")
    assert shown.exit_code == 2
    assert shown.stderr.strip() == "error: give --json or --format vllm, not both"


def test_the_demo_resolves_an_id_an_alias_and_best_and_refuses_a_tampered_file(
    tmp_path: Path,
) -> None:
    home = tmp_path / "demo"
    done = CliRunner().invoke(
        cli, ["demo", "--home", str(home), "-n", "2", "-k", "3", "--no-torch", "--keep", "--json"]
    )
    assert done.exit_code == 0, done.output
    names = json.loads(done.stdout)["names"]
    assert names["tampered_refused"] is True and names["resolve_ms"] > 0
    assert "refused it:" in done.stderr and "--lora-modules best:bug-fix=" in done.stderr
    with AdapterRegistry(home=home, create=False) as registry:
        resolved = names["resolved"]
        assert list(resolved)[1:] == ["production", "best:bug-fix"]
        for name, adapter_id in resolved.items():
            served = registry.resolve(name)  # the tampered bit was put back: it verifies
            assert served.id == adapter_id
            assert names["lora_int_ids"][name] == served.lora_int_id

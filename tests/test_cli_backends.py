"""The console script on either backend (issue 7): --db-url or RUNE_DB_URL points it at SQLite
or PostgreSQL alike; and the installed `adapter-registry` script itself runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import lora_bytes, lora_config
from adapter_registry.cli import cli


def test_store_rank_and_read_back_through_db_url_and_rune_db_url(
    tmp_path: Path, db_url: str
) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(lora_bytes(seed=3))
    config = tmp_path / "adapter_config.json"
    config.write_text(json.dumps(lora_config()))
    root = str(tmp_path / "adapters")
    runner = CliRunner()
    store = ["store", str(weights), "--config", str(config), "--task-type", "bug-fix",
             "--source", "manual", "--session-id", "cli", "--json"]  # fmt: skip
    stored = runner.invoke(cli, ["--root", root, "--db-url", db_url, *store])
    assert stored.exit_code == 0, stored.output
    adapter_id = json.loads(stored.stdout)["id"]
    scored = runner.invoke(cli, ["--root", root, "--db-url", db_url, "fitness", adapter_id,
                                 "--score", "0.9"])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    env = {"RUNE_DB_URL": db_url}
    best = runner.invoke(cli, ["--root", root, "best", "bug-fix", "--json"], env=env)
    assert best.exit_code == 0, best.output
    assert json.loads(best.stdout)["id"] == adapter_id
    assert json.loads(best.stdout)["fitness_score"] == 0.9
    listed = runner.invoke(cli, ["--root", root, "ls", "--json"], env=env)
    assert [r["id"] for r in json.loads(listed.stdout)] == [adapter_id]
    verified = runner.invoke(cli, ["--root", root, "verify", "--all", "--json"], env=env)
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True


def test_the_installed_script_runs(tmp_path: Path) -> None:
    script = shutil.which("adapter-registry", path=str(Path(sys.executable).parent))
    assert script is not None, "the package installs the adapter-registry console script"
    home = tmp_path / "home"
    AdapterRegistry(home=home).close()  # stats never creates a registry (test_cli_no_create)
    env = {**os.environ, "RUNE_HOME": str(home)}
    done = subprocess.run([script, "stats", "--json"], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["adapters"] == 0
    missing = subprocess.run([script, "show", "4f1c7a52-1d2e-4c3b-9a8f-0e1d2c3b4a59"],
                             capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1
    assert (home / "adapters").is_dir()

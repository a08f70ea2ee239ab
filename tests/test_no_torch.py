"""The metadata side never needs torch: everything of the registry runs where importing torch
or peft fails, and none of it tries."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from adapter_registry import AdapterRegistry

SCRIPT = textwrap.dedent(
    """
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "peft", "transformers"):
                raise ImportError(f"{name} is forbidden in this test")

    sys.meta_path.insert(0, Refuse())
    from adapter_registry import AdapterRegistry
    from adapter_registry._lora_files import lora_bytes, lora_config

    config = lora_config()
    reg = AdapterRegistry(root=sys.argv[1] + "/adapters", db_url=f"sqlite:///{sys.argv[1]}/r.db")
    a = reg.store(lora_bytes(seed=1), config=config, task_type="bug-fix", source="manual",
                  session_id="s")
    b = reg.store(lora_bytes(seed=2), config=config, task_type="bug-fix", source="evolution",
                  session_id="s", parent_ids=[a.id])
    reg.update_fitness(b.id, fitness_score=1.0, pass_rate=0.5)
    reg.archive(a.id)
    assert reg.query_best_for_task("bug-fix").id == b.id
    assert [r.id for r in reg.lineage(b.id)] == [a.id]
    assert all(r.ok for r in reg.verify_all())
    assert reg.recover().clean
    reg.retrieve_by_id(a.id); reg.query_by_task_type("bug-fix"); reg.list_all()
    reg.find_by_training_task_hash("x")
    heavy = ("torch", "peft", "numpy", "sqlalchemy.dialects.postgresql", "alembic")
    loaded = sorted(m for m in sys.modules if m.startswith(heavy))
    print("loaded:", loaded)
    """
)


def test_every_operation_runs_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    # Made here, so the script opens an existing registry: that never needs Alembic (creating
    # one runs the migrations, which load Alembic and the dialects it knows).
    AdapterRegistry(root=tmp_path / "adapters", db_url=f"sqlite:///{tmp_path}/r.db").close()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded: []"

"""The README's quickstart runs as written, so it cannot drift from the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_quickstart_runs(tmp_path: Path) -> None:
    text = README.read_text()
    quickstart = text[text.index("## Quickstart") :]
    code = quickstart[quickstart.index("```python\n") + 10 :]
    code = code[: code.index("```")]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("/adapter.safetensors")

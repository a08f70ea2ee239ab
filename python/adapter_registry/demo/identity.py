"""The demo's identity step: a copy of the home is the same registry in a new place and checks
its own files, never the original's; a root opened with another registry's database is refused
(README: "One registry, wherever it lives")."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from .. import _core
from ..errors import RegistryMismatchError
from ..registry import AdapterRegistry
from .steps import Play


def _copy_home(home: Path, to: Path) -> None:
    """The root file by file (as rsync -a copies it: the PEFT name's hard link becomes a copy)
    and the database through SQLite's backup, a consistent copy of a live database."""
    to.mkdir()
    shutil.copytree(home / "adapters", to / "adapters", symlinks=True)
    source = sqlite3.connect(home / "adapter_registry.db")
    target = sqlite3.connect(to / "adapter_registry.db")
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def identity(play: Play) -> dict[str, Any]:
    """Copy the home, check the copy, damage the copy alone; refuse a mismatched pair."""
    say, registry = play.say, play.registry
    say.title("identity: a copied home checks its own files; a mismatched root and database")
    scratch = Path(tempfile.mkdtemp(prefix="adapter-registry-demo-identity-"))
    try:
        copied = scratch / "copied-home"
        _copy_home(registry.root.parent, copied)
        victim = play.stored[0].id
        with AdapterRegistry(home=copied, create=False) as copy:
            same = copy.registry_id == registry.registry_id
            in_copy = copy.retrieve_by_id(victim).file_path
            say.indented(
                f"copied to {copied}: registry {copy.registry_id}, "
                f"{'the same' if same else 'NOT the same'} registry in a new place"
            )
            say.indented(f"{victim}: file_path there is {in_copy}")
            reports = copy.verify_all()
            ok = sum(r.ok for r in reports)
            say.indented(f"verify in the copy: {ok} ok, each file read where the copy keeps it")
            (copied / "adapters" / victim / _core.CONFIG_FILE).unlink()
            damaged = copy.verify(victim)
        original = registry.verify(victim)
        say.indented(
            f"{_core.CONFIG_FILE} of {victim} deleted in the copy: the copy says "
            f"{damaged.status}, the original says {original.status}"
        )
        other = scratch / "other-home"
        AdapterRegistry(home=other).close()  # a second registry, new and empty
        try:
            AdapterRegistry(root=registry.root, db_url=f"sqlite:///{other}/adapter_registry.db")
            refused = ""
        except RegistryMismatchError as err:
            refused = str(err)
        say.indented(
            f"this root with another registry's database: RegistryMismatchError: {refused}"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    play.expect(same, "the copied home is not the same registry")
    play.expect(ok == len(reports), f"{ok} of {len(reports)} verified in the copy")
    play.expect(damaged.status == "missing", f"the copy's damage reported {damaged.status}")
    play.expect(original.ok, "damage to the copy was seen in the original")
    play.expect(bool(refused), "a root with another registry's database was not refused")
    return {
        "identity": {
            "copy_is_the_same_registry": same,
            "verified_in_the_copy": ok,
            "copy_damage": damaged.status,
            "original": original.status,
            "mismatch_refused": bool(refused),
        }
    }

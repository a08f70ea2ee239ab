"""The demo's bundles step: a few evolved adapters exported with their ancestors, imported into
a second, empty home that then verifies them and keeps their ids and lineage; a second import
skips every one (README: "Moving adapters between registries")."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..cli.output import human_bytes
from ..registry import AdapterRegistry
from .steps import Play


def bundles(play: Play) -> dict[str, Any]:
    """Export evolved adapters and their ancestors to a .tar, import it twice elsewhere."""
    say, registry = play.say, play.registry
    say.title("bundles: export adapters with their ancestors, import them into another home")
    chosen = [r.id for r in play.stored if r.parents][:3] or [play.stored[0].id]
    scratch = Path(tempfile.mkdtemp(prefix="adapter-registry-demo-bundles-"))
    try:
        bundle = scratch / "evolved.tar"
        exported = registry.export(bundle, ids=chosen)
        say.indented(
            f"export of {len(chosen)} evolved adapters: {len(exported.adapters)} with their "
            f"ancestors, {human_bytes(exported.bytes)} in {exported.seconds:.2f} s -> {bundle}"
        )
        with AdapterRegistry(home=scratch / "second-home") as second:
            first = second.import_bundle(bundle, with_aliases=True)
            say.indented(
                f"import into an empty home: {len(first.imported)} imported (parents first, "
                f"each file checked against the manifest) in {first.seconds:.2f} s"
            )
            verified = second.verify_all()
            ok = sum(v.ok for v in verified)
            child = chosen[0]
            lineage_kept = [a.id for a in second.lineage(child)] == [
                a.id for a in registry.lineage(child)
            ]
            say.indented(
                f"verify there: {ok} of {len(verified)} ok; {child} keeps its id, created_at "
                f"and lineage: {'yes' if lineage_kept else 'NO'}"
            )
            again = second.import_bundle(bundle)
            say.indented(
                f"the same bundle again: {len(again.imported)} imported, "
                f"{len(again.skipped)} skipped (same hashes: the target's state is left as is)"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    play.expect(first.ok and first.imported == exported.adapters, "the import was incomplete")
    play.expect(ok == len(exported.adapters), f"{ok} of {len(verified)} verified after import")
    play.expect(lineage_kept, "the imported lineage differs")
    play.expect(
        again.imported == [] and len(again.skipped) == len(exported.adapters),
        "a second import was not skipped",
    )
    return {
        "bundles": {
            "exported": len(exported.adapters),
            "bytes": exported.bytes,
            "imported": len(first.imported),
            "verified": ok,
            "skipped_again": len(again.skipped),
            "export_s": round(exported.seconds, 3),
            "import_s": round(first.seconds, 3),
        }
    }

"""What the demo tells: the numbered steps as they run, and the closing table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class DemoResult:
    """What the demo did; ``summary`` is its --json output."""

    problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


class Say:
    """The narrative: numbered steps and indented lines on one stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.step = 0

    def __call__(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def title(self, text: str) -> None:
        self.step += 1
        self(f"\n{self.step}. {text}")

    def indented(self, text: str) -> None:
        self("\n".join(f"   {line}" for line in text.splitlines()))


def table(result: DemoResult, stream: TextIO) -> None:
    """The closing table: what the demo did and how fast; then every unexpected result."""
    from rich.console import Console
    from rich.table import Table

    out = Table(title="what the demo did", title_justify="left")
    for name, justify in (("step", "left"), ("what", "left"), ("time", "right"), ("rate", "right")):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in _rows(result.summary):
        out.add_row(*row)
    verdict = "ok" if result.ok else f"{len(result.problems)} unexpected"
    out.add_row("result", "", "", verdict, end_section=True)
    console = Console(file=stream, highlight=False, width=None if stream.isatty() else 120)
    print(file=stream)
    console.print(out)
    for problem in result.problems:
        print(f"UNEXPECTED: {problem}", file=stream, flush=True)


def _rows(s: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(step, what, time, rate) for each step of the summary ``s``."""
    from rich.markup import escape

    from ..cli.output import human_bytes

    st, ev, ve, ta, se = s["store"], s["evaluate"], s["verify"], s["tamper"], s["serve"]
    rows = [
        (
            "store",
            f"{st['adapters']} adapters by {s['agents']} agents, {human_bytes(st['bytes'])}, "
            f"{st['evolved']} evolved",
            f"{st['seconds']:.2f} s",
            f"{st['adapters_per_s']:.1f} adapters/s, {st['mb_per_s']:.1f} MB/s",
        ),
        (
            "evaluate",
            f"{ev['adapters']} adapters by {ev['evaluators']} evaluators",
            f"{ev['seconds']:.2f} s",
            f"{ev['adapters'] / ev['seconds']:.0f} adapters/s" if ev["seconds"] else "-",
        ),
        (
            "rank",
            f"best of {len(s['best'])} task types, 1 archived",
            "",
            f"{s['query_best_us']:.0f} us per query",
        ),
        (
            "verify",
            f"{ve['ok']}/{ve['adapters']} ok, {ve['files']} files, {human_bytes(ve['bytes'])}",
            f"{ve['seconds']:.2f} s",
            f"{ve['adapters_per_s']:.0f} adapters/s, {ve['mb_per_s']:.0f} MB/s",
        ),
        (
            "promote",
            f"search, alias moved {s['promote']['alias_moves']} times, tags, "
            f"{s['promote']['evaluations']} evaluations",
            "",
            "rolled back" if s["promote"]["production"] else "skipped: too few adapters",
        ),
        ("tamper", "1 bit flipped in 1 file", "", "caught" if ta["caught"] else "MISSED"),
        ("recover", "after-crash check", "", "clean" if s["recover"]["clean"] else "NOT CLEAN"),
        (
            "refuse",
            f"{s['refuse']['inputs_refused']} bad inputs, 1 planted record",
            "",
            "nothing written" if s["refuse"]["planted_refused"] else "REGISTERED",
        ),
    ]
    bound = s.get("identity")
    if bound is not None:
        same = bound["copy_is_the_same_registry"]
        copied = "checks its own files" if same else "NOT ONE REGISTRY"
        rows.append((
            "identity", f"home copied: {bound['verified_in_the_copy']} verified there, {copied}",
            "", "mismatch refused" if bound["mismatch_refused"] else "mismatch ACCEPTED",
        ))  # fmt: skip
    moved = s.get("bundles")
    if moved is not None:
        rows.append((
            "bundles", f"{moved['exported']} adapters exported with ancestors, imported, "
            f"{moved['verified']} verified, {moved['skipped_again']} skipped again",
            f"{moved['export_s'] + moved['import_s']:.2f} s", f"{human_bytes(moved['bytes'])}",
        ))  # fmt: skip
    served = s.get("names")
    if served is not None:
        verdict = "tampered refused" if served["tampered_refused"] else "tampered SERVED"
        rows.append((
            "names", f"{len(served['resolved'])} names resolved (id, alias, best:), verified",
            "", f"{served['resolve_ms']:.2f} ms per resolve, {verdict}",
        ))  # fmt: skip
    board = s.get("dashboard")
    if board is not None:
        shown = f"{board['seconds']:.2f} s" if board["ran"] else ""
        what = "overview + leaderboard JSON over HTTP" if board["ran"] else "skipped"
        verdict = "answered" if board["ran"] else escape(str(board["reason"]))
        rows.append(("dashboard", what, shown, verdict))
    if se["ran"]:
        logits = "logits identical" if se["identical"] else "logits DIFFER"
        rows.append(("serve", "load_peft + forward, tiny Qwen2", f"{se['seconds']:.2f} s", logits))
    else:
        rows.append(("serve", escape(f"skipped: {se['reason']}"), "", ""))  # keeps "[torch]"
    return rows

"""What the commands print: records as JSON, aligned columns, rich tables and progress bars.

Listings are plain aligned columns (a rich table of 10,000 rows takes seconds to lay out, and
plain columns suit grep and awk); rich draws the small tables and the progress bars, and is
imported only by the commands that draw with it. Sizes are decimal (1 MB = 10^6 bytes).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

import click

from ..record import COLUMNS, AdapterRecord

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from ..tables import Evaluation

__all__ = [
    "EVALUATION_HEADERS",
    "EVALUATION_KEYS",
    "LIST_HEADERS",
    "LIST_NUMERIC",
    "RECORD_KEYS",
    "ByteProgress",
    "console",
    "emit_json",
    "emit_json_lines",
    "emit_list",
    "evaluation_json",
    "evaluation_line",
    "human_bytes",
    "json_option",
    "jsonl_option",
    "list_format",
    "number",
    "plain_table",
    "record_json",
    "record_line",
    "shown",
]

#: The keys of a record in --json output: the table's columns, in table order.
RECORD_KEYS = COLUMNS
_KEYS = frozenset(RECORD_KEYS)


#: The --json flag every command takes.
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (stable keys).")
#: The --jsonl flag of every command whose --json is a list.
jsonl_option = click.option(
    "--jsonl", "as_jsonl", is_flag=True, help="Print one JSON object per line (the --json keys)."
)


def _values(record: AdapterRecord) -> dict[str, Any]:
    """The record's values as loaded: read from its ``__dict__`` they cost a tenth of the ORM's
    attribute access, which matters for a listing of many thousands."""
    values = vars(record)
    return values if values.keys() >= _KEYS else record.to_dict()


def record_json(record: AdapterRecord) -> dict[str, Any]:
    """Every column by name; ``parent_ids`` as a list of ids rather than its JSON text."""
    values = _values(record)
    out = {key: values[key] for key in RECORD_KEYS}
    out["parent_ids"] = json.loads(out["parent_ids"]) if out["parent_ids"] else []
    out["is_archived"] = bool(out["is_archived"])
    for key in ("pass_rate", "fitness_score"):  # NaN and Infinity are not JSON
        if out[key] is not None and not math.isfinite(out[key]):
            out[key] = None
    return out


#: C0 and C1 control characters and DEL: what a terminal may act on rather than print.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(value: Any) -> str:
    """A value as text for a terminal: control characters written as escapes (``\\x1b``), so
    metadata written by hand into the database can never drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def emit_json_lines(values: Iterable[Any]) -> None:
    """A JSON array, one compact element per line: fast for thousands, easy to grep."""
    lines = ",\n".join(json.dumps(v, ensure_ascii=False) for v in values)
    click.echo(f"[\n{lines}\n]" if lines else "[]")


def list_format(as_json: bool, as_jsonl: bool) -> str:
    """``json``, ``jsonl`` or ``text``: how a listing is printed (both flags: bad usage)."""
    if as_json and as_jsonl:
        raise click.UsageError("give --json or --jsonl, not both")
    return "json" if as_json else "jsonl" if as_jsonl else "text"


def emit_list(values: Iterable[Any], fmt: str) -> None:
    """A list as --json prints it (an array, one element per line) or as --jsonl does (one
    object per line, nothing at all for none)."""
    if fmt == "json":
        emit_json_lines(values)
        return
    for value in values:
        click.echo(json.dumps(value, ensure_ascii=False))


def human_bytes(size: float | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plain_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()
) -> str:
    """Aligned columns under a header, two spaces apart; ``right`` columns align right."""
    body = [list(headers), *(list(r) for r in rows)]
    widths = [max(len(row[i]) for row in body) for i in range(len(headers))]
    flush = set(right)
    last = len(headers) - 1
    lines = []
    for row in body:
        cells = [
            cell.rjust(w) if i in flush else (cell if i == last else cell.ljust(w))
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


LIST_HEADERS = ("ID", "TASK TYPE", "BASE MODEL", "VER", "GEN", "FITNESS", "PASS", "SIZE", "CREATED")
#: The columns of a listing that align right: version, generation, fitness, pass rate, size.
LIST_NUMERIC = (3, 4, 5, 6, 7)


def record_line(record: AdapterRecord) -> list[str]:
    """One adapter as a listing row (see LIST_HEADERS); an archived one says so."""
    v = _values(record)
    created = v["created_at"][:19].replace("T", " ")
    cells = [
        v["id"],
        v["task_type"],
        v["base_model_id"],
        str(v["version"]),
        str(v["generation"] or 0),
        number(v["fitness_score"]),
        number(v["pass_rate"], 2),
        human_bytes(v["file_size_bytes"]),
        created + (" (archived)" if v["is_archived"] else ""),
    ]
    return [shown(cell) for cell in cells]


#: The keys of an evaluation in --json output.
EVALUATION_KEYS = (
    "id", "adapter_id", "metric", "value", "evaluator", "eval_set_hash", "details", "recorded_at",
)  # fmt: skip
EVALUATION_HEADERS = ("RECORDED", "METRIC", "VALUE", "EVALUATOR", "EVAL SET", "DETAILS")
#: The longest details shown in a table (--json has them whole).
_DETAILS_SHOWN = 60


def evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
    """One row of the evaluation history; ``details`` as an object (or None), not its text."""
    out = {key: getattr(evaluation, key) for key in EVALUATION_KEYS}
    out["details"] = evaluation.details_dict()
    if out["value"] is not None and not math.isfinite(out["value"]):  # written by hand
        out["value"] = None
    return out


def evaluation_line(evaluation: Evaluation) -> list[str]:
    """One evaluation as a table row (see EVALUATION_HEADERS)."""
    details = "" if evaluation.details is None else evaluation.details
    if len(details) > _DETAILS_SHOWN:
        details = details[: _DETAILS_SHOWN - 3] + "..."
    cells = [
        evaluation.recorded_at[:19].replace("T", " "),
        evaluation.metric,
        f"{evaluation.value:.6g}",
        evaluation.evaluator or "-",
        evaluation.eval_set_hash or "-",
        details or "-",
    ]
    return [shown(cell) for cell in cells]


def console(err: bool = False) -> Console:
    """A rich console on stdout or stderr as they are now (click's test runner swaps them).

    Off a terminal it does not wrap at 80 columns: lines stay whole for grep and logs.
    """
    from rich.console import Console

    stream: TextIO = sys.stderr if err else sys.stdout
    terminal = stream.isatty()
    return Console(
        file=stream, highlight=False, width=None if terminal else 200, soft_wrap=not terminal
    )


class ByteProgress:
    """A ``verify_all`` progress callback: a bar over bytes on a terminal (stderr), else silent.

    It keeps the latest ``files_done``, ``files_total`` and ``bytes_done`` either way.
    ``total_bytes`` may be a function, called only when the bar shows: the bar's total then
    costs nothing where nobody sees it (a script, a pipe).
    """

    def __init__(
        self, total_bytes: int | Callable[[], int], description: str, show: bool | None = None
    ) -> None:
        self.total_bytes = total_bytes
        self.description = description
        self.files_done = self.files_total = self.bytes_done = 0
        self._show = sys.stderr.isatty() if show is None else show
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ByteProgress:
        if self._show:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console(err=True),
                transient=True,
            )
            self._progress.start()
            total = self.total_bytes() if callable(self.total_bytes) else self.total_bytes
            self._task = self._progress.add_task(self.description, total=total)
        return self

    def __call__(self, files_done: int, files_total: int, bytes_done: int) -> None:
        self.files_done, self.files_total, self.bytes_done = files_done, files_total, bytes_done
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=bytes_done,
                description=f"{self.description} {files_done}/{files_total} files",
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

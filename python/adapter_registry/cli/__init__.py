"""The ``adapter-registry`` console script: the registry from a shell, without torch.

One module per job: ``app`` (the root command, global options, one-line errors), ``output``
(tables, JSON, progress bars), ``options`` (search filters, times, KEY=VALUE pairs), ``read``
(ls, show, best), ``write`` (store, fitness, archive, unarchive), ``promote`` (alias, tag),
``evaluate`` (eval), ``integrity`` (verify, recover), ``lineage``, ``stats`` and ``demo``.
A command's module is imported only when that command runs, and rich only where a command
draws with it, so that ``adapter-registry ls`` costs little more than importing the package.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from .app import PROG, cli

__all__ = ["PROG", "cli", "main"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(args: list[str] | None = None) -> None:
    """Run the console script (``args`` default to the command line); exits with its status.

    SIGTERM is taken as SIGINT is, as a KeyboardInterrupt: a store stops cleanly or finishes
    (the library installs no handler of its own; the console script owns the process)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    cli.main(args=args, prog_name=PROG)

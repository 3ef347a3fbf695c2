"""The ``unitsync`` cyclopts application.

Commands are registered lazily (``"cli._serve:serve"``) so ``unitsync --help`` imports neither
Trio nor capnp; each command module imports what it needs when it runs.
"""

from __future__ import annotations

import sys

from cyclopts import App

from coordinator._version import __version__

__all__ = ["app", "main"]

EXIT_CODES = """\
Exit codes: 0 ok, 1 error, 2 usage, 3 timeout, 4 dependency failed, 5 cycle refused,
69 coordinator unreachable."""

app = App(
    name="unitsync",
    help=(
        "Order independent processes on one machine: `unitsync want claude git`, "
        "`unitsync start claude` (waits until git has completed), `unitsync complete git`.\n\n"
        + EXIT_CODES
    ),
    version=__version__,
)

app.command(
    "cli._serve:serve",
    name="serve",
    help="Run the coordinator in the foreground, serving on the socket until SIGINT/SIGTERM.",
)


def main() -> None:
    """Console-script entry point."""
    result = app()
    sys.exit(result if isinstance(result, int) else 0)

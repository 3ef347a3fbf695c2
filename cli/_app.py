"""The ``unitsync`` cyclopts application."""

from __future__ import annotations

import sys

from cyclopts import App

from coordinator._version import __version__

__all__ = ["app", "main"]

app = App(
    name="unitsync",
    help=(
        "Order independent processes on one machine: `unitsync want claude git`, "
        "`unitsync start claude` (waits until git has completed), `unitsync complete git`."
    ),
    version=__version__,
)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())

"""unitsync's command line (cyclopts). Thin: parse, call the client, print.

Importing this package must stay cheap: ``unitsync --help`` imports neither Trio nor capnp, and
a plain ``unitsync up`` not cyclopts either (``_main.py``).
"""

import gc as _gc

#: The collector's thresholds of a command (Python's: 700, 10, 10): starting, a command makes
#: ~37,000 objects (the imports of cyclopts, asyncio, capnp and ours), nearly all living as long
#: as the process, and the default had the collector run 46 times meanwhile (~6 ms of CPU per
#: command). A young collection per 50,000 objects instead; ``serve`` sets its own.
COMMAND_GC_THRESHOLDS = (50_000, 10, 10)
_gc.set_threshold(*COMMAND_GC_THRESHOLDS)

from ._main import main as main


def __getattr__(name: str) -> object:
    """``cli.app``, the cyclopts application, imported when first asked for: a plain ``up``
    runs without it (``_main.py``)."""
    if name == "app":
        from ._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""``python -m stress <scenario>``: the scenarios land with the stress-suite issue.

Available now: ``chain [--units N]`` — build an N-unit chain in-process, then propagate
completion from the leaf to the root; ``rpc [--seconds S] [--quick]`` — calls/s of ``ping`` and
``info`` against our server and a plain pycapnp server, same run; ``cli [--runs N] [--quick]`` —
whole-process wall time of ``unitsync --help``/``ping``/``complete x`` against ``python -c pass``
and ``python -c "import capnp"``, interleaved. ``--json``: last line is JSON.
"""

from __future__ import annotations

import sys

from .chain import main as chain_main
from .cli import main as cli_main
from .rpc import main as rpc_main

SCENARIOS = {"chain": chain_main, "cli": cli_main, "rpc": rpc_main}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SCENARIOS:
        print(f"usage: python -m stress {{{'|'.join(SCENARIOS)}}} [options]", file=sys.stderr)
        return 2
    return SCENARIOS[argv[0]](argv[1:])


sys.exit(main(sys.argv[1:]))

"""``unitsync serve``: the coordinator and its RPC server, in the foreground."""

from __future__ import annotations

import signal
import sys

from ._options import Common

__all__ = ["serve"]


def serve(*, common: Common = Common()) -> int:
    """Run the coordinator in the foreground, serving on the socket until SIGINT or SIGTERM.

    Prints one line to stderr when clients can connect. Exits 0 on SIGINT/SIGTERM (the socket
    file is removed), 1 if the socket is in use by a live coordinator or cannot be bound.
    """
    import trio

    from coordinator import UnitsyncError, open_coordinator
    from coordinator import serve as serve_rpc

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_coordinator() as coord, trio.open_nursery() as nursery:
                path = await nursery.start(serve_rpc, coord, common.socket)
                print(f"unitsync: serving on {path}", file=sys.stderr, flush=True)
                async for signum in signals:
                    print(f"unitsync: {signal.Signals(signum).name}, stopping", file=sys.stderr)
                    nursery.cancel_scope.cancel()
                    break

    failed = False
    try:
        trio.run(main)
    except* (UnitsyncError, OSError) as group:  # binding failed: say why, exit 1
        for exc in group.exceptions:
            print(f"unitsync: cannot serve: {exc}", file=sys.stderr)
        failed = True
    return 1 if failed else 0

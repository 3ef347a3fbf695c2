"""Park in ``ready()`` and stay there: ``python park.py SOCKET UNIT``.

Prints ``connected`` once connected, then ``parked`` just before calling ``ready()`` (a process
cannot know when the server has parked it: the test watches the server's statistics for that).
Exits 0 printing ``ready`` if ``ready()`` ever returns. Used by tests/test_rpc.py, which kills it.
"""

from __future__ import annotations

import sys

import trio

from coordinator import connect


async def main(path: str, unit: str) -> None:
    async with connect(path) as coord:
        print("connected", flush=True)
        print("parked", flush=True)
        await coord.unit(unit).ready()
        print("ready", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])

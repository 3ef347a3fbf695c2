"""Hold a unit's lease and never release it: ``python hold.py SOCKET UNIT``.

Prints ``held`` once ``hold()`` has returned (the unit is started and bound to this process's
connection), then sleeps until killed. Used by tests/test_rpc.py.
"""

from __future__ import annotations

import sys

import trio

from coordinator import connect


async def main(path: str, unit: str) -> None:
    async with connect(path) as coord:
        async with coord.unit(unit).hold():
            print("held", flush=True)
            await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])

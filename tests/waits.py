"""How long a test waits for anything, and how it knows a coordinator has caught up."""

from __future__ import annotations

import trio
import trio.testing

from coordinator import Coordinator

#: Upper bound for any single wait in a test (they all finish in milliseconds when correct).
WAIT = 5.0


async def settle(coord: Coordinator, unit: str = "~settle") -> None:
    """Wait until what was sent to ``unit`` before has been handled: a round trip to it (over
    RPC, calls to a unit reach its actor in order), then until every Trio task is blocked."""
    with trio.fail_after(WAIT):
        await coord.unit(unit).info()
        await trio.testing.wait_all_tasks_blocked()

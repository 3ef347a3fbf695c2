"""``cli/_when_ready.py``'s wait-then-begin across a coordinator's restart, on a scripted connection:
the one case a real restart hits only by chance (the begin answered, the ``info`` sent with
it lost with the coordinator; ``test_cli_shared.py`` met it about one run in four)."""

from __future__ import annotations

import asyncio

from coordinator import AlreadyInStatus, CoordinatorClosed, Status
from cli._when_ready import _when_ready


class Restarting:
    """A connection whose coordinator dies after answering the first begin and before the
    ``info`` sent with it; once reconnected, the unit is started (that begin took effect)."""

    path = "/run/unitsync.sock"

    def __init__(self) -> None:
        self.reconnects = 0

    async def info(self, unit: str) -> object:
        if not self.reconnects:
            raise CoordinatorClosed("connection to the coordinator lost: Peer disconnected.")
        return "build's info"

    async def reconnect(self) -> None:
        self.reconnects += 1


def test_a_begin_answered_before_its_info_was_lost_is_taken_over_after_the_restart() -> None:
    core = Restarting()
    begins: list[int] = []

    async def begin() -> str:
        begins.append(core.reconnects)
        if core.reconnects:
            raise AlreadyInStatus("build", Status.STARTED)  # ours: it took effect
        return "lease on the lost connection"

    async def taken() -> str:
        return "lease taken over"

    async def main() -> object:
        return await asyncio.wait_for(_when_ready(
            core, "build", begin, 5.0, waiting=lambda unmet: None, taken=taken,  # type: ignore[arg-type]
            look=True,
        ), 5)

    result, info, _ = asyncio.run(main())
    assert (result, info) == ("lease taken over", "build's info")
    assert begins == [0, 1] and core.reconnects == 1

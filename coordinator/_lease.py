"""A lease: a unit started by a holder, to be completed or failed by it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["HOLDER_GONE", "HOLD_GRACE", "Lease"]

#: The reason a held unit fails with when the holder goes away without completing or failing it.
HOLDER_GONE = "holder disconnected"

#: Seconds a coordinator restarted from its journal waits for the holders of held units (a
#: ``run`` whose command outlived the old coordinator) to take their holds over with
#: ``hold(resume=True)``; a hold nobody took over then fails with :data:`HOLDER_GONE`. A ``run``
#: retries its connection at least once a second, so it needs far less.
HOLD_GRACE = 10.0


class Lease:
    """What ``async with unit.hold() as lease`` gives: the unit is started, and it is this
    holder's to finish. Leave the block without :meth:`complete`/:meth:`fail` (an exception, a
    cancellation, a dead process) and the unit fails with :data:`HOLDER_GONE`, waking its
    dependents at once."""

    __slots__ = ("_complete", "_fail", "released")

    def __init__(
        self, complete: Callable[[], Awaitable[None]], fail: Callable[[str], Awaitable[None]]
    ) -> None:
        self._complete = complete
        self._fail = fail
        self.released = False

    async def complete(self) -> None:
        await self._complete()
        self.released = True

    async def fail(self, reason: str = "") -> None:
        await self._fail(reason)
        self.released = True

"""A coordinator inside this process, for ``unitsync up`` when none answers on the socket.

The library in a Trio thread of its own — ``open_coordinator()`` and ``serve()`` on the socket,
so that outside scripts can still report — while the command line goes on as a client of
that socket on its own asyncio loop. Memory only: it lives and dies with the process (an
external ``unitsync serve`` is the durable choice).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

__all__ = ["InProcessCoordinator"]

#: Seconds to wait for the thread to serve, or to stop.
STARTUP_SECONDS = 10.0


class InProcessCoordinator:
    """Start with :meth:`start` (returns once clients can connect); :meth:`stop` at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._serving = threading.Event()
        self._error: BaseException | None = None
        self._token: Any = None
        self._stop: Any = None  # a trio.Event, set from another thread through the token
        self._thread = threading.Thread(target=self._run, name="unitsync-up-coordinator",
                                        daemon=True)

    def start(self) -> None:
        """Serve on :attr:`path`; raises what stopped it (``AddressInUse``: another process
        serves there now — a race with another ``up``, say)."""
        self._thread.start()
        if not self._serving.wait(STARTUP_SECONDS) and self._error is None:
            raise TimeoutError(f"the coordinator did not start serving on {self.path}")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stop serving (waiting clients are told it is shutting down) and wait for it."""
        token, stop = self._token, self._stop
        if token is not None and stop is not None:
            try:
                token.run_sync_soon(stop.set)
            except RuntimeError:  # the Trio run has ended already
                pass
        self._thread.join(STARTUP_SECONDS)

    def _run(self) -> None:
        import trio

        try:
            trio.run(self._main)
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._error = exc
            self._serving.set()

    async def _main(self) -> None:
        import trio

        from coordinator import open_coordinator, serve

        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with open_coordinator() as coord, trio.open_nursery() as nursery:
            await nursery.start(serve, coord, self.path)
            self._serving.set()
            await self._stop.wait()
            await coord.aclose()  # answers waiting callers, then serve stops by itself
            nursery.cancel_scope.deadline = trio.current_time() + 2.0

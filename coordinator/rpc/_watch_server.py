"""A remote watch: events from the coordinator streamed to a client's ``Watcher``."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Final

import capnp
import trio

from .._api import Event
from .._coordinator import LocalCoordinator
from .._errors import Lagged, UnitsyncError
from ._convert import fill_event
from ._error_codec import error_to_wire
from ._bridge import TrioPortal
from ._schema import schema
from ._unit_server import Peer

__all__ = ["REMOTE_WATCH_BUFFER", "RemoteWatch", "SubscriptionServer"]

#: Events queued for one remote watcher before it is cut off as lagged.
REMOTE_WATCH_BUFFER: Final = 1024

S = schema()


class SubscriptionServer(S.Subscription.Server):  # type: ignore[name-defined,misc]
    """Dropping it ends the watch."""

    def __init__(self, stop: Any) -> None:
        weakref.finalize(self, stop)


class RemoteWatch:
    """Events from a Trio subscription, streamed to a client's ``Watcher`` (``-> stream``).

    The Trio side reads its subscription and hands each event to the KJ thread; the KJ side
    sends them in order, one ``event`` call at a time under capnp stream flow control. A watcher
    more than :data:`REMOTE_WATCH_BUFFER` events behind is cut off: it gets one last event with
    ``seq == 0`` whose reason starts ``unitsync.lagged:``, and the watch ends.
    """

    def __init__(
        self, coord: LocalCoordinator, portal: TrioPortal, watcher: Any, peer: Peer,
        after: int | None = None,
    ) -> None:
        self._coord = coord
        self._after = after  # replay the kept history after this seq first (None: live only)
        self._peer = peer
        self._portal = portal
        self._watcher = watcher
        self._queue: asyncio.Queue[Any] = asyncio.Queue()  # bounded by _deliver
        self._last_queued = 0
        self._scope: trio.CancelScope | None = None
        self._sender: asyncio.Task[None] | None = None
        self._closed = False
        self._stopped = False  # Trio side: set once the reader must not (or no longer) run

    async def start(self) -> None:
        """Subscribe (in Trio) and start sending; returns once subscribed."""
        loop = asyncio.get_running_loop()
        subscribed: asyncio.Future[None] = loop.create_future()
        portal, coord, after = self._portal, self._coord, self._after
        edges = self._peer.revision >= 3  # older peers know status changes only

        def set_subscribed(error: BaseException | None) -> None:  # KJ thread
            if not subscribed.done():
                subscribed.set_exception(error) if error else subscribed.set_result(None)

        async def reader() -> None:  # Trio
            with trio.CancelScope() as scope:
                self._scope = scope
                if self._stopped:  # the caller went away before we got here
                    return
                try:
                    async with coord.watch(after=after) as events:
                        portal.to_loop(set_subscribed, None)
                        async for event in events:
                            if edges or not event.depends_on:
                                portal.to_loop(self._deliver, event)
                except UnitsyncError as exc:  # CoordinatorClosed; Lagged: replay from too old
                    # (a live one cannot happen: we drain)
                    portal.to_loop(set_subscribed, exc)
                    portal.to_loop(self._end, exc)

        portal.call_soon(lambda: portal.spawn(reader))
        await subscribed
        self._sender = asyncio.create_task(self._send_events())

    def _deliver(self, event: Event) -> None:  # KJ thread
        if self._closed:
            return
        if self._queue.qsize() >= REMOTE_WATCH_BUFFER:
            self._cut_off()
            return
        self._queue.put_nowait(event)
        self._last_queued = event.seq

    def _cut_off(self) -> None:
        self._end(Lagged(self._last_queued, REMOTE_WATCH_BUFFER))

    def _end(self, error: UnitsyncError) -> None:  # KJ thread
        """After what is queued, one last event (seq 0) whose reason is the error's wire text
        (code, message and data line); stop reading."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(("end", error_to_wire(error)))
        self._stop_reader()

    async def _send_events(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                request = self._watcher.event_request()
                if isinstance(item, tuple):
                    request.event.seq = 0
                    request.event.reason = item[1]
                    await request.send()
                    return
                fill_event(request.event, item, self._peer.revision)
                await request.send()
        except (capnp.KjException, asyncio.CancelledError):
            pass
        finally:
            self._closed = True
            self._watcher = None
            self._stop_reader()

    def _stop_reader(self) -> None:
        def in_trio() -> None:
            self._stopped = True  # a reader not started yet will not subscribe
            if self._scope is not None:
                self._scope.cancel()

        self._portal.call_soon(in_trio)

    def stop(self) -> None:
        self._closed = True
        self._stop_reader()
        if self._sender is not None:
            self._sender.cancel()

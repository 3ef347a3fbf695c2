"""The ordered stream of status changes, and its subscribers (``watch``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Final

import trio

from ._api import Event
from ._errors import CoordinatorClosed, Lagged
from ._status import Status

__all__ = ["EventHub", "Subscription", "WATCH_BUFFER"]

#: Events a watcher may fall behind by before it is cut off with :class:`Lagged`.
WATCH_BUFFER: Final = 1024


class Subscription:
    """One watcher: a bounded channel the hub fills without ever waiting.

    Iterate it for events. When the watcher is more than ``buffer`` events behind, the hub closes
    the channel instead of dropping an event or waiting, and iteration raises :class:`Lagged`
    once the buffered events have been read. When the coordinator closes, iteration raises
    :class:`CoordinatorClosed`.
    """

    __slots__ = ("_send", "_receive", "buffer", "delivered", "_ended_by")

    def __init__(self, buffer: int) -> None:
        self._send, self._receive = trio.open_memory_channel[Event](buffer)
        self.buffer = buffer
        self.delivered = 0  # seq of the last event handed to the hub's channel
        self._ended_by: type[Exception] | None = None

    def offer(self, event: Event) -> bool:
        """Hand ``event`` over without waiting; False if the subscriber lagged and was cut off."""
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.end(Lagged)
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False  # the watcher went away, or was already cut off
        self.delivered = event.seq
        return True

    def end(self, why: type[Exception]) -> None:
        if self._ended_by is None:
            self._ended_by = why
        self._send.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._ended_by is Lagged:
                raise Lagged(self.delivered, self.buffer) from None
            raise CoordinatorClosed() from None

    def close(self) -> None:
        self._receive.close()


class EventHub:
    """Numbers status changes and fans them out to subscribers, synchronously and without waiting.

    Unit actors call :meth:`publish` when their status changes; since every actor runs in the
    same Trio thread and a publish has no checkpoint, ``seq`` order is the order the changes
    happened in.
    """

    __slots__ = ("_seq", "_subscribers", "_closed")

    def __init__(self) -> None:
        self._seq = 0
        self._subscribers: dict[Subscription, None] = {}
        self._closed = False

    @property
    def seq(self) -> int:
        """The seq of the last event published (0 before the first)."""
        return self._seq

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    def publish(self, unit: str, old: Status, new: Status, reason: str) -> None:
        self._seq += 1
        if not self._subscribers:
            return
        event = Event(seq=self._seq, time=time.time(), unit=unit, old=old, new=new, reason=reason)
        for subscription in list(self._subscribers):
            if not subscription.offer(event):
                del self._subscribers[subscription]

    def subscribe(self, buffer: int = WATCH_BUFFER) -> Subscription:
        """A new subscription that receives every event published from now on."""
        if self._closed:
            raise CoordinatorClosed()
        if buffer < 1:
            raise ValueError("a watch buffer holds at least one event")
        subscription = Subscription(buffer)
        self._subscribers[subscription] = None
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.pop(subscription, None)
        subscription.close()

    def close(self) -> None:
        """The coordinator is stopping: end every subscription with CoordinatorClosed."""
        self._closed = True
        for subscription in self._subscribers:
            subscription.end(CoordinatorClosed)
        self._subscribers.clear()

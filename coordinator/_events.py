"""The ordered stream of events (status changes, edges added), and its subscribers (``watch``)."""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

import trio

from ._api import Event
from ._errors import CoordinatorClosed, Lagged
from ._history import History
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

    Made with ``after`` (a seq), it first replays the kept history after that seq, a page at a
    time, and goes live (subscribes to the hub) in the same step as it reads the last kept
    event: no gap, no duplicate. Events dropped from the history before it read them end it
    with :class:`Lagged` naming the oldest kept seq.
    """

    __slots__ = ("_send", "_receive", "buffer", "delivered", "_ended_by", "_hub", "_backlog")

    def __init__(self, buffer: int, hub: EventHub | None = None, after: int = 0) -> None:
        self._send, self._receive = trio.open_memory_channel[Event](buffer)
        self.buffer = buffer
        self.delivered = after  # seq of the last event handed over (replayed or live)
        self._ended_by: type[Exception] | Exception | None = None
        self._hub = hub  # set until the replay of the history has caught up
        self._backlog: collections.deque[Event] = collections.deque()

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

    def end(self, why: type[Exception] | Exception) -> None:
        """Close the channel: iteration raises ``why`` (an error, or a class of them: Lagged
        or CoordinatorClosed, made here) after the buffered events."""
        if self._ended_by is None:
            self._ended_by = why
        self._send.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._hub is not None or self._backlog:
            await trio.lowlevel.checkpoint()
            if not self._backlog and self._hub is not None:
                self._fill(self._hub)
            if self._backlog:
                return self._backlog.popleft()
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if isinstance(self._ended_by, Exception):
                raise self._ended_by from None
            if self._ended_by is Lagged:
                raise Lagged(self.delivered, self.buffer) from None
            raise CoordinatorClosed() from None

    def _fill(self, hub: EventHub) -> None:
        """Take the next page of kept events after :attr:`delivered`; subscribe to the hub
        (live) with the last page, synchronously: nothing is published in between."""
        history = hub.history
        after = self.delivered
        if history.last > after and not 0 < history.oldest <= after + 1:
            self._hub = None
            raise Lagged(after, self.buffer, history.oldest or history.last + 1)
        page = history.page(after=after, limit=self.buffer)
        self._backlog.extend(page.events)
        if page.events:
            self.delivered = page.events[-1].seq
        if not page.more:
            self._hub = None
            hub.attach(self)

    def close(self) -> None:
        self._receive.close()


class EventHub:
    """Numbers the coordinator's events, keeps them (:class:`History`), hands each to the
    journal (``record``) and fans it out to subscribers: synchronously and without waiting.

    Unit actors call :meth:`publish` when their status changes and :meth:`publish_edges` when
    they take a new requirement; since every actor runs in the same Trio thread and a publish
    has no checkpoint, ``seq`` order is the order the changes happened in.
    """

    __slots__ = ("history", "_subscribers", "_closed", "_clock", "_record")

    def __init__(
        self,
        history: History | None = None,
        *,
        clock: Callable[[], float] = time.time,
        record: Callable[[Event], object] | None = None,
    ) -> None:
        self.history = history if history is not None else History()
        self._subscribers: dict[Subscription, None] = {}
        self._closed = False
        self._clock = clock
        self._record = record

    @property
    def seq(self) -> int:
        """The seq of the last event published (0 before the first)."""
        return self.history.last

    @property
    def watchers(self) -> int:
        return len(self._subscribers)

    def now(self) -> float:
        """The wall clock events are stamped with."""
        return self._clock()

    def publish(self, unit: str, old: Status, new: Status, reason: str) -> None:
        """``unit``'s status changed from ``old`` to ``new``."""
        history = self.history
        if self._taken_beyond_history():
            self._emit(Event(
                seq=history.last + 1, time=self._clock(), unit=unit, old=old, new=new,
                reason=reason,
            ))
        else:  # only kept: as columns, no Event made
            history.append_change(history.last + 1, self._clock(), unit, old, new, reason)

    def publish_edges(
        self, unit: str, status: Status, edges: list[tuple[str, Status]]
    ) -> None:
        """``unit`` (in ``status``) now requires each ``depends_on`` of ``edges`` to reach its
        ``requires``: an event per edge, in order, as one step (one change of ``unit``'s: one
        time for all); when only the history takes them, kept as columns, no Event made."""
        if not edges:
            return
        history = self.history
        first, now = history.last + 1, self._clock()
        if self._taken_beyond_history():
            for offset, (depends_on, requires) in enumerate(edges):
                self._emit(Event(
                    seq=first + offset, time=now, unit=unit, old=status, new=status,
                    depends_on=depends_on, requires=requires,
                ))
        else:
            history.append_edges(first, now, unit, status, edges)

    def emit(self, event: Event) -> None:
        """An event its maker numbered (a shared store's revision, ``_shared.py``): kept and
        fanned out if its seq is above the last one's, else dropped (already had)."""
        if event.seq > self.history.last:
            self._emit(event)

    def _taken_beyond_history(self) -> bool:
        """Whether an event goes anywhere but the history (a watcher, the journal — which
        records only what the history keeps): else it is kept as columns, no Event made."""
        return bool(self._subscribers) or (self._record is not None and bool(self.history.limit))

    def _emit(self, event: Event) -> None:
        self.history.append(event)
        if self._record is not None and self.history.limit:
            self._record(event)
        if self._subscribers:
            for subscription in list(self._subscribers):
                if not subscription.offer(event):
                    del self._subscribers[subscription]

    def subscribe(self, buffer: int = WATCH_BUFFER, *, after: int | None = None) -> Subscription:
        """A new subscription that receives every event published from now on; with ``after``
        (a seq), first the kept events after it (see :class:`Subscription`)."""
        if self._closed:
            raise CoordinatorClosed()
        if buffer < 1:
            raise ValueError("a watch buffer holds at least one event")
        if after is not None:
            return Subscription(buffer, self, after)
        subscription = Subscription(buffer, after=self.seq)
        self._subscribers[subscription] = None
        return subscription

    def attach(self, subscription: Subscription) -> None:
        """A replaying subscription caught up: from now on it gets live events."""
        if self._closed:
            subscription.end(CoordinatorClosed)
        else:
            self._subscribers[subscription] = None

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.pop(subscription, None)
        subscription.close()

    def close(self) -> None:
        """The coordinator is stopping: end every subscription with CoordinatorClosed."""
        self._closed = True
        for subscription in self._subscribers:
            subscription.end(CoordinatorClosed)
        self._subscribers.clear()

"""The coordinator's kept history: the newest events, by seq and by unit (``history``).

Pure bookkeeping in the Trio thread: :class:`~coordinator._events.EventHub` appends every event
it publishes; reads (a page of it, a watch replaying from a seq) take what is kept at the
moment they run. Retention is bounded: past ``limit`` events the oldest is dropped, so a
coordinator that runs for months holds at most ``limit`` events (memory per event: see
stress/README.md).
"""

from __future__ import annotations

import bisect
from operator import attrgetter
from typing import Final

from ._api import Event, HistoryPage

__all__ = ["DEFAULT_HISTORY", "History", "MAX_HISTORY_PAGE"]

#: Events a coordinator keeps unless told otherwise (``serve --history N``).
DEFAULT_HISTORY: Final = 100_000

#: At most this many events in one page (a request for more, or for 0 = "all", gets this many).
MAX_HISTORY_PAGE: Final = 10_000

_seq = attrgetter("seq")


class _Run:
    """A list whose first ``start`` entries were dropped (dropping is O(1); the list is cut
    down now and then)."""

    __slots__ = ("items", "start")

    def __init__(self) -> None:
        self.items: list[Event] = []
        self.start = 0

    def __len__(self) -> int:
        return len(self.items) - self.start

    def drop_first(self) -> None:
        self.start += 1
        if self.start > 1024 and self.start * 2 > len(self.items):
            del self.items[: self.start]
            self.start = 0

    def page(self, after: int, limit: int, newest: bool) -> tuple[list[Event], bool]:
        items = self.items
        first = bisect.bisect_right(items, after, lo=self.start, key=_seq)
        if newest:
            begin = max(first, len(items) - limit)
            return items[begin:], begin > first
        return items[first:first + limit], first + limit < len(items)


class History:
    """The newest ``limit`` events (0: none kept), with an index by unit.

    :attr:`last` is the seq of the last event appended (kept or not); a restored
    coordinator continues from the journal's.
    """

    __slots__ = ("limit", "last", "_all", "_by_unit")

    def __init__(self, limit: int = DEFAULT_HISTORY, *, last: int = 0) -> None:
        if limit < 0:
            raise ValueError(f"a history keeps 0 or more events, not {limit}")
        self.limit = limit
        self.last = last
        self._all = _Run()
        self._by_unit: dict[str, _Run] = {}

    def __len__(self) -> int:
        return len(self._all)

    @property
    def oldest(self) -> int:
        """The seq of the oldest event kept, 0 if none is."""
        run = self._all
        return run.items[run.start].seq if len(run) else 0

    def append(self, event: Event) -> None:
        """Keep ``event`` (its seq is above every kept one's), dropping the oldest past the
        limit. An event at or below :attr:`last` is ignored (a replay overlapping)."""
        if event.seq <= self.last:
            return
        self.last = event.seq
        if not self.limit:
            return
        self._all.items.append(event)
        run = self._by_unit.get(event.unit)
        if run is None:
            run = self._by_unit[event.unit] = _Run()
        run.items.append(event)
        if len(self._all) > self.limit:
            dropped = self._all.items[self._all.start]
            self._all.drop_first()
            unit_run = self._by_unit[dropped.unit]
            unit_run.drop_first()
            if not unit_run:
                del self._by_unit[dropped.unit]

    def page(
        self, *, after: int = 0, limit: int = 0, unit: str = "", newest: bool = False
    ) -> HistoryPage:
        """Kept events with seq above ``after`` (of ``unit`` only, if given), in seq order: the
        first ``limit`` of them, or with ``newest`` the last ``limit`` (at most and 0 meaning
        :data:`MAX_HISTORY_PAGE`)."""
        limit = min(limit or MAX_HISTORY_PAGE, MAX_HISTORY_PAGE)
        run = self._by_unit.get(unit) if unit else self._all
        events, more = run.page(after, limit, newest) if run is not None else ([], False)
        return HistoryPage(events=tuple(events), more=more, oldest=self.oldest, last=self.last)

    def events(self) -> list[Event]:
        """Every kept event, oldest first (a copy: for a snapshot)."""
        return self._all.items[self._all.start:]

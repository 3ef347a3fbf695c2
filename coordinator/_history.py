"""The coordinator's kept history: the newest events, by seq and by unit (``history``).

Pure bookkeeping in the Trio thread: :class:`~coordinator._events.EventHub` appends every event
it publishes; reads (a page of it, a watch replaying from a seq) take what is kept at the
moment they run. Retention is bounded: past ``limit`` events the oldest is dropped, so a
coordinator that runs for months holds at most ``limit`` events.

Stored as columns — arrays of numbers, lists of strings that are already the actors' — and
made into :class:`Event` objects only when read: a kept event is no object of its own, so
100,000 of them give Python's garbage collector nothing to track (one object per event made
it run full collections of 100-200 ms during large builds; stress/README.md "History").
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterator
from typing import Final

from ._api import Event, HistoryPage
from ._status import Status

__all__ = ["DEFAULT_HISTORY", "History", "MAX_HISTORY_PAGE"]

#: Events a coordinator keeps unless told otherwise (``serve --history N``).
DEFAULT_HISTORY: Final = 100_000

#: At most this many events in one page (a request for more, or for 0 = "all", gets this many).
#: The RPC server fills a page on its network thread, where 10,000 events held other
#: clients' calls ~50 ms (stress/README.md "History"); 2,000 cost the same in all, in shorter
#: turns.
MAX_HISTORY_PAGE: Final = 2_000

_STATUSES: Final = tuple(Status)
_CODE: Final = {status: code for code, status in enumerate(_STATUSES)}


class _Positions:
    """The absolute positions (0 = the first event ever kept) of one unit's kept events, in
    order; the first ``start`` were dropped. Cut down once more than half is dropped, so it
    holds at most twice what it keeps."""

    __slots__ = ("items", "start")

    def __init__(self) -> None:
        self.items = array("q")
        self.start = 0

    def __len__(self) -> int:
        return len(self.items) - self.start

    def drop_first(self) -> None:
        self.start += 1
        if self.start * 2 > len(self.items):
            del self.items[: self.start]
            self.start = 0


class History:
    """The newest ``limit`` events (0: none kept), with an index by unit.

    :attr:`last` is the seq of the last event appended (kept or not); a restored
    coordinator continues from the journal's.
    """

    __slots__ = ("limit", "last", "_base", "_start", "_seq", "_time", "_unit", "_old", "_new",
                 "_reason", "_dep", "_req", "_by_unit")

    def __init__(self, limit: int = DEFAULT_HISTORY, *, last: int = 0) -> None:
        if limit < 0:
            raise ValueError(f"a history keeps 0 or more events, not {limit}")
        self.limit = limit
        self.last = last
        self._base = 0  # the absolute position of the columns' first entry
        self._start = 0  # the columns' first kept entry (those before it were dropped)
        self._seq = array("q")
        self._time = array("d")
        self._unit: list[str] = []
        self._old = array("b")
        self._new = array("b")
        self._reason: list[str] = []
        self._dep: list[str] = []
        self._req = array("b")
        self._by_unit: dict[str, _Positions] = {}

    def __len__(self) -> int:
        return len(self._seq) - self._start

    @property
    def oldest(self) -> int:
        """The seq of the oldest event kept, 0 if none is."""
        return self._seq[self._start] if len(self) else 0

    def append(self, event: Event) -> None:
        """Keep ``event`` (its seq is above every kept one's), dropping the oldest past the
        limit. An event at or below :attr:`last` is ignored (a replay overlapping)."""
        if event.seq <= self.last:
            return
        self.append_change(event.seq, event.time, event.unit, event.old, event.new,
                           event.reason, event.depends_on, event.requires)

    def append_change(
        self, seq: int, time: float, unit: str, old: Status, new: Status, reason: str = "",
        depends_on: str = "", requires: Status = Status.NOT_REGISTERED,
    ) -> None:
        """:meth:`append` of an event given by its fields, with no Event made (the hub's way
        when nothing but the history takes it); ``seq`` is above :attr:`last`."""
        self.last = seq
        if not self.limit:
            return
        position = self._base + len(self._seq)
        self._seq.append(seq)
        self._time.append(time)
        self._unit.append(unit)
        self._old.append(_CODE[old])
        self._new.append(_CODE[new])
        self._reason.append(reason)
        self._dep.append(depends_on)
        self._req.append(_CODE[requires])
        self._positions(unit).items.append(position)
        if len(self) > self.limit:
            self._drop_oldest()

    def append_edges(
        self, seq: int, time: float, unit: str, status: Status,
        edges: list[tuple[str, Status]],
    ) -> None:
        """The edge events ``seq``, ``seq + 1``, ... (above :attr:`last`), one per
        ``(depends_on, requires)`` of ``edges``, of ``unit`` in ``status``, all at ``time``:
        :meth:`append_change` of each, a column at a time."""
        count = len(edges)
        if not count:
            return
        self.last = seq + count - 1
        if not self.limit:
            return
        position = self._base + len(self._seq)
        code = _CODE[status]
        self._seq.extend(range(seq, seq + count))
        self._time.extend([time] * count)
        self._unit.extend([unit] * count)
        self._old.extend([code] * count)
        self._new.extend([code] * count)
        self._reason.extend([""] * count)
        self._dep.extend([dependency for dependency, _ in edges])
        self._req.extend([_CODE[required] for _, required in edges])
        self._positions(unit).items.extend(range(position, position + count))
        while len(self) > self.limit:
            self._drop_oldest()

    def _positions(self, unit: str) -> _Positions:
        """Where ``unit``'s kept events are (made on its first)."""
        positions = self._by_unit.get(unit)
        if positions is None:
            positions = self._by_unit[unit] = _Positions()
        return positions

    def _drop_oldest(self) -> None:
        """Drop the oldest kept event; cut the columns down once more than half of them is
        dropped (O(1) per event on average; at most twice the kept events in memory)."""
        unit = self._unit[self._start]
        positions = self._by_unit[unit]
        positions.drop_first()
        if not positions:
            del self._by_unit[unit]
        self._start += 1
        if self._start * 2 > len(self._seq):
            cut = self._start
            for column in (self._seq, self._time, self._unit, self._old, self._new,
                           self._reason, self._dep, self._req):
                del column[:cut]
            self._base += cut
            self._start = 0

    def _event(self, index: int) -> Event:
        return Event(
            seq=self._seq[index], time=self._time[index], unit=self._unit[index],
            old=_STATUSES[self._old[index]], new=_STATUSES[self._new[index]],
            reason=self._reason[index], depends_on=self._dep[index],
            requires=_STATUSES[self._req[index]],
        )

    def page(
        self, *, after: int = 0, limit: int = 0, unit: str = "", newest: bool = False
    ) -> HistoryPage:
        """Kept events with seq above ``after`` (of ``unit`` only, if given), in seq order: the
        first ``limit`` of them, or with ``newest`` the last ``limit`` (at most and 0 meaning
        :data:`MAX_HISTORY_PAGE`)."""
        limit = min(limit or MAX_HISTORY_PAGE, MAX_HISTORY_PAGE)
        first = bisect.bisect_right(self._seq, after, lo=self._start)  # first index after it
        if unit:
            positions = self._by_unit.get(unit)
            if positions is None:
                indexes: list[int] = []
            else:
                wanted = positions.items[positions.start:]
                skip = bisect.bisect_left(wanted, self._base + first)
                indexes = [p - self._base for p in wanted[skip:]]
            chosen, more = (indexes[-limit:], len(indexes) > limit) if newest else (
                indexes[:limit], len(indexes) > limit)
        else:
            end = len(self._seq)
            begin = max(first, end - limit) if newest else first
            stop = end if newest else min(end, first + limit)
            chosen = list(range(begin, stop))
            more = begin > first if newest else stop < end
        return HistoryPage(events=tuple(self._event(i) for i in chosen), more=more,
                           oldest=self.oldest, last=self.last)

    def events(self) -> list[Event]:
        """Every kept event, oldest first (made now)."""
        return list(self.frozen())

    def frozen(self) -> History:
        """A copy of what is kept now (the columns copied: about a millisecond for 100,000
        events), to iterate elsewhere — a worker thread writing a snapshot — while this one
        goes on. Only for iterating: its index by unit is not copied."""
        copy = History(self.limit, last=self.last)
        for name in ("_seq", "_time", "_unit", "_old", "_new", "_reason", "_dep", "_req"):
            setattr(copy, name, getattr(self, name)[self._start:])
        copy._base = self._base + self._start
        return copy

    def __iter__(self) -> Iterator[Event]:
        """The kept events, oldest first, made as they are taken."""
        return (self._event(i) for i in range(self._start, len(self._seq)))

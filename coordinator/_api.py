"""The public data types and the protocol shared by the in-process coordinator and the RPC client.

Code written against :class:`Coordinator` / :class:`UnitHandle` runs unchanged against
``open_coordinator()`` (in this process) and ``connect(path)`` (over the Unix socket).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ._status import Status

if TYPE_CHECKING:
    from ._lease import Lease

__all__ = ["Coordinator", "Dependency", "Event", "HistoryPage", "UnitHandle", "UnitInfo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dependency:
    """One edge as seen from the dependent: what it needs and what it has."""

    depends_on: str
    required: Status
    current: Status
    satisfied: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitInfo:
    """A snapshot of one unit.

    ``ready``: every requirement is met (an unregistered unit is ready). ``blocked_by``: the name
    of the failed unit that keeps this one from becoming ready ("" when none); ``reason``: the
    unit's own failure reason ("" unless failed). ``dependencies`` are sorted by name.
    """

    name: str
    status: Status
    ready: bool
    reason: str = ""
    blocked_by: str = ""
    dependencies: tuple[Dependency, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One change in the coordinator's history: a status change, or an edge added.

    ``seq`` increases with every event, coordinator-wide, and survives a restart with the
    journal; with a shared store it is the store's revision that made the change, scaled
    (``_shared.SEQ_PER_REVISION``), the same on every coordinator. ``time`` is the wall-clock
    time of the change in seconds since the epoch.

    A status change: ``unit`` went from ``old`` to ``new`` (``reason``: the new status's
    reason). An edge added (:attr:`is_edge`): ``unit`` now requires ``depends_on`` to reach
    ``requires``; ``old`` and ``new`` are both the unit's status at that moment.
    """

    seq: int
    time: float
    unit: str
    old: Status
    new: Status
    reason: str = ""
    depends_on: str = ""
    requires: Status = Status.NOT_REGISTERED

    @property
    def is_edge(self) -> bool:
        """True for an edge added (``unit`` requires ``depends_on``), False for a status change."""
        return bool(self.depends_on)


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryPage:
    """A page of kept events, in seq order.

    ``more``: events of the request remain beyond this page (after its last event; with
    ``newest``, before its first). ``oldest``: the seq of the oldest event kept (0: none kept),
    so a reader can tell whether events it wants were dropped. ``last``: the seq of the newest
    event published (kept or not), where a watch that replays from it would go live.
    """

    events: tuple[Event, ...]
    more: bool
    oldest: int
    last: int


class UnitHandle(Protocol):
    """A unit, by name. Creating a handle registers nothing."""

    @property
    def name(self) -> str: ...

    async def register(self) -> None: ...

    async def want(self, *dependencies: str, requires: Status = Status.COMPLETED) -> None: ...

    async def start(self) -> None: ...

    async def complete(self) -> None: ...

    async def fail(self, reason: str = "") -> None: ...

    async def skip(self, reason: str = "") -> None: ...

    async def ready(self) -> UnitInfo: ...

    async def reached(self, status: Status) -> None: ...

    async def info(self) -> UnitInfo: ...

    def hold(self, *, resume: bool = False) -> AbstractAsyncContextManager[Lease]:
        """Start the unit bound to this holder for the block: leaving it without
        ``lease.complete()``/``lease.fail()`` fails the unit with "holder disconnected"."""
        ...


class Coordinator(Protocol):
    """The coordinator: ``open_coordinator()`` in this process, ``connect(path)`` over RPC."""

    def unit(self, name: str) -> UnitHandle: ...

    async def ping(self) -> str: ...

    async def list(self) -> list[UnitInfo]: ...

    async def graph(self) -> str: ...

    async def apply(self, graph: Mapping[str, Mapping[str, Status]]) -> None: ...

    async def history(
        self, *, after: int = 0, limit: int = 0, unit: str = "", newest: bool = False
    ) -> HistoryPage: ...

    def watch(
        self, *, after: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]: ...

"""The in-process coordinator: ``open_coordinator()`` and its unit handles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import trio

from ._api import UnitInfo
from ._errors import CoordinatorClosed, InvalidArgument
from ._events import WATCH_BUFFER, EventHub, Subscription
from ._graph import to_dot
from ._messages import (
    Complete,
    Fail,
    Info,
    Inspect,
    Ping,
    Reached,
    Ready,
    Register,
    RegistryMessage,
    RegistrySnapshot,
    Snapshot,
    Start,
    ToUnit,
    UnitStatistics,
    Want,
)
from ._names import validate_name
from ._registry import REGISTRY_INBOX_SIZE, RegistryActor
from ._reply import Reply
from ._status import REQUIREMENTS, Status
from ._version import __version__

__all__ = ["CoordinatorStatistics", "LocalCoordinator", "LocalUnit", "open_coordinator"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinatorStatistics:
    """Counts for tests and the stress suite (``await coord.statistics()``)."""

    actors: int  #: unit actors alive (every unit ever mentioned, registered or not)
    units: int  #: registered units
    edges: int
    ready_waiters: int
    reached_waiters: int
    pending_wants: int
    watchers: int
    events: int  #: seq of the last event


class LocalCoordinator:
    """The coordinator running in this process. Get one from :func:`open_coordinator`."""

    __slots__ = ("_send", "_events")

    def __init__(self, send: trio.MemorySendChannel[RegistryMessage], events: EventHub) -> None:
        self._send = send
        self._events = events

    def unit(self, name: str) -> LocalUnit:
        """A handle for unit ``name`` (validated here: :class:`InvalidName`); registers nothing."""
        return LocalUnit(self, validate_name(name))

    async def ping(self) -> str:
        """A round trip through the registry actor; returns the unitsync version."""
        await self._request(Ping)
        return __version__

    async def list(self) -> list[UnitInfo]:
        """Every registered unit, sorted by name."""
        snapshot = await self._request(lambda reply: Snapshot(False, reply))
        infos = await _gather(snapshot, Info)
        return [info for info in infos if info.status is not Status.NOT_REGISTERED]

    async def graph(self) -> str:
        """The dependency graph as Graphviz DOT: units (registered, or mentioned as a
        dependency) labelled by status, edges labelled by requirement."""
        snapshot = await self._request(lambda reply: Snapshot(True, reply))
        infos = await _gather(snapshot, Info)
        return to_dot({info.name: info.status for info in infos}, snapshot.edges)

    @asynccontextmanager
    async def watch(self, *, buffer: int = WATCH_BUFFER) -> AsyncIterator[Subscription]:
        """Subscribe to status changes: ``async with coord.watch() as events: async for e in events``.

        Every change published after entering is delivered, in order. The coordinator never waits
        for a watcher: one more than ``buffer`` events behind is cut off, and iterating then
        raises :class:`Lagged` (after the buffered events). Leaving the block unsubscribes.
        """
        subscription = self._events.subscribe(buffer)
        try:
            yield subscription
        finally:
            self._events.unsubscribe(subscription)

    async def statistics(self) -> CoordinatorStatistics:
        snapshot = await self._request(lambda reply: Snapshot(True, reply))
        stats: list[UnitStatistics] = await _gather(snapshot, Inspect)
        return CoordinatorStatistics(
            actors=len(stats),
            units=sum(s.status is not Status.NOT_REGISTERED for s in stats),
            edges=len(snapshot.edges),
            ready_waiters=sum(s.ready_waiters for s in stats),
            reached_waiters=sum(s.reached_waiters for s in stats),
            pending_wants=sum(s.pending_wants for s in stats),
            watchers=self._events.watchers,
            events=self._events.seq,
        )

    async def _request(self, make: Callable[[Reply[T]], RegistryMessage]) -> T:
        """Send the message ``make(reply)`` to the registry and await the reply."""
        reply: Reply[T] = Reply()
        try:
            await self._send.send(make(reply))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise CoordinatorClosed() from None
        return await reply.receive()

    def _close(self) -> None:
        self._send.close()
        self._events.close()


async def _gather(snapshot: RegistrySnapshot, make: Callable[[Reply[T]], object]) -> list[T]:
    """Ask every unit actor in ``snapshot`` the same question; answers sorted by unit name.

    The caller sends directly to each inbox (it is not an actor, so it may wait) and collects
    every reply before awaiting any: the questions are answered concurrently.
    """
    replies: list[Reply[T]] = []
    for name in sorted(snapshot.inboxes):
        reply: Reply[T] = Reply()
        await snapshot.inboxes[name].send(make(reply))  # type: ignore[arg-type]
        replies.append(reply)
    return [await reply.receive() for reply in replies]


class LocalUnit:
    """A handle for one unit of a :class:`LocalCoordinator`. Cheap; holds no resources."""

    __slots__ = ("_coord", "name")

    def __init__(self, coord: LocalCoordinator, name: str) -> None:
        self._coord = coord
        self.name = name

    def __repr__(self) -> str:
        return f"<unit {self.name!r}>"

    async def _ask(self, make: Callable[[Reply[T]], object]) -> T:
        return await self._coord._request(lambda reply: ToUnit(self.name, make(reply)))  # type: ignore[arg-type]

    async def register(self) -> None:
        """Register as pending. :class:`AlreadyRegistered` if it is registered."""
        await self._ask(Register)

    async def want(self, *dependencies: str, requires: Status = Status.COMPLETED) -> None:
        """Declare that this unit needs each dependency to reach ``requires`` (``STARTED`` or
        ``COMPLETED``). Registers this unit if needed; dependencies need not be registered.

        All dependencies are linked atomically: if one would close a cycle (or is this unit),
        :class:`CycleError` names the whole cycle and nothing changes. Re-declaring an edge
        replaces its requirement. When this returns, ``info``/``ready`` reflect the new edges.
        """
        if requires not in REQUIREMENTS:
            raise InvalidArgument(f"a requirement is started or completed, not {requires.label}")
        requirements = tuple((validate_name(d), requires) for d in dict.fromkeys(dependencies))
        await self._coord._request(lambda reply: Want(self.name, requirements, reply))

    async def start(self) -> None:
        """Mark started (registering if needed). :class:`NotReady` (with ``unmet``) if a
        requirement is not met; :class:`AlreadyInStatus` if started. Completed or failed units
        may start again (a re-run)."""
        await self._ask(Start)

    async def complete(self) -> None:
        """Mark completed. :class:`UnitNotFound` if not registered; :class:`AlreadyInStatus` if
        completed. Allowed from pending (as coder allows)."""
        await self._ask(Complete)

    async def fail(self, reason: str = "") -> None:
        """Mark failed with ``reason``. Every unit that needed this one — transitively — becomes
        blocked: its ``ready()`` waiters get :class:`DependencyFailed` at once. A later ``start``
        (a re-run) unblocks them."""
        await self._ask(lambda reply: Fail(reason, reply))

    async def ready(self) -> UnitInfo:
        """Wait until every requirement is met and return the unit's info then.

        Returns at once if ready (an unregistered unit is ready). Raises
        :class:`DependencyFailed` as soon as the unit is blocked by a failure. Pushed, never
        polled; cancelling the wait removes the waiter.
        """
        return await self._ask(Ready)

    async def reached(self, status: Status) -> None:
        """Wait until the unit's status reaches ``status`` (see :meth:`Status.reaches`).

        Raises :class:`DependencyFailed` if the unit fails (``path == (unit,)``) or is blocked
        by a failed dependency before reaching it.
        """
        if not isinstance(status, Status):
            raise InvalidArgument(f"not a status: {status!r}")
        await self._ask(lambda reply: Reached(status, reply))

    async def info(self) -> UnitInfo:
        """A snapshot: status, readiness, reason, blocker and dependencies (sorted)."""
        return await self._ask(Info)


@asynccontextmanager
async def open_coordinator() -> AsyncIterator[LocalCoordinator]:
    """Run a coordinator in a nursery nested in the caller's task, for the ``async with`` block.

    On leaving the block — normally, by an exception, or by cancellation — every actor stops and
    every caller still waiting (``ready()`` from a task outside the block, say) gets
    :class:`CoordinatorClosed`. An exception raised in the body propagates **unchanged** (not
    wrapped in an ExceptionGroup: the coordinator's own tasks end cleanly when cancelled, so the
    body's exception is the only one). A crash of the coordinator's own tasks (a bug) propagates
    as the ExceptionGroup the nursery raises, and cancels the body.
    """
    events = EventHub()
    send, receive = trio.open_memory_channel[RegistryMessage](REGISTRY_INBOX_SIZE)
    coord = LocalCoordinator(send, events)
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(RegistryActor(receive, events).run)
        try:
            yield coord
        except BaseException as exc:
            body_error = exc
        finally:
            coord._close()
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error

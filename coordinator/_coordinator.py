"""The in-process coordinator: ``open_coordinator()`` and its unit handles."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
import contextlib
import functools
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import outcome
import trio

from ._api import HistoryPage, UnitInfo
from ._errors import (
    CoordinatorClosed,
    InvalidArgument,
    NotReady,
    Overloaded,
    StoreUnavailable,
    UnitsyncError,
)
from ._events import WATCH_BUFFER, EventHub, Subscription
from ._graph import units_to_dot
from ._history import DEFAULT_HISTORY, History
from ._inbox import Inbox
from ._lease import HOLD_GRACE, HOLDER_GONE, Lease
from ._nursery import open_service_nursery
from ._messages import (
    Fail,
    Info,
    Reached,
    Ready,
    ToUnit,
    Inspect,
    Ping,
    RegistryMessage,
    SleepIdle,
    Snapshot,
    UnitStatistics,
    answer_closed,
)
from ._names import validate_name
from . import _operations as operations
from ._operations import Operation
from ._journal_writer import JournalWriter, open_journal
from ._registry import MAX_UNITS, REGISTRY_INBOX_SIZE, RegistryActor
from ._reads import published_info, read_now
from ._reply import Reply
from ._shared import SharedStore
from ._status import Status
from ._version import __version__

__all__ = ["CoordinatorStatistics", "LocalCoordinator", "LocalUnit", "open_coordinator"]

T = TypeVar("T")

#: Seconds between attempts to store the end of a hold that a shared store did not take.
RELEASE_RETRY: Final = 1.0

#: Requests :meth:`LocalCoordinator.submit` may queue beyond the registry's inbox before it refuses
#: with :class:`Overloaded` (callers that cannot wait, like the RPC bridge, queue here in order).
OVERFLOW_LIMIT: Final = 65_536


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinatorStatistics:
    """Counts for tests and the stress suite (``await coord.statistics()``)."""

    actors: int  #: unit actors (every unit ever mentioned, registered or not)
    awake: int  #: unit actors with a running task (the others sleep: idle, state kept)
    units: int  #: registered units
    edges: int
    ready_waiters: int
    reached_waiters: int
    overflow: int  #: submitted requests queued beyond the registry's inbox
    watchers: int
    events: int  #: seq of the last event


class LocalCoordinator:
    """The coordinator running in this process. Get one from :func:`open_coordinator`."""

    __slots__ = (
        "_inbox", "_registry", "_events", "_nursery", "_overflow", "_unfinished", "_store",
    )

    def __init__(
        self,
        inbox: Inbox[RegistryMessage],
        registry: RegistryActor,
        events: EventHub,
        nursery: trio.Nursery,
        store: SharedStore | None = None,
    ) -> None:
        #: A store shared with other coordinators: reads first wait for its mirror to reach
        #: the store's revision (no older than the call), so none is answered at once.
        self._store = store
        self._inbox = inbox
        self._registry = registry
        self._events = events
        self._nursery = nursery
        self._overflow: deque[RegistryMessage] = deque()
        self._unfinished: tuple[int, int] | None = None  # (events seq, count) of the last read

    def unit(self, name: str) -> LocalUnit:
        """A handle for unit ``name`` (validated here: :class:`InvalidName`); registers nothing."""
        return LocalUnit(self, validate_name(name))

    async def ping(self) -> str:
        """A round trip through the registry actor; returns the unitsync version."""
        await self._request(Ping)
        return __version__

    async def list(self, *, after: str = "", limit: int = 0) -> list[UnitInfo]:
        """Every registered unit, sorted by name. A page of them: only names after ``after``,
        at most ``limit`` (0: no limit); only the page's actors are asked. (Pages are read one
        after the other: a listing of several is not one snapshot.)"""
        if self._store is not None:
            await self._store.synced()
        snapshot = await self._request(lambda reply: Snapshot(False, reply))
        names = sorted(name for name in snapshot.inboxes if name > after)
        limit = limit or len(names)
        found: list[UnitInfo] = []
        start = 0
        while start < len(names) and len(found) < limit:
            # a unit only mentioned (not registered) has an actor too: ask on until enough
            chunk = names[start:start + limit - len(found)]
            start += len(chunk)
            infos: list[UnitInfo] = await _gather(snapshot.inboxes, chunk, Info)
            found.extend(info for info in infos if info.status is not Status.NOT_REGISTERED)
        return found

    async def unfinished(self) -> int:
        """How many registered units are pending or started (not at an outcome yet): what
        ``serve``'s idle exit asks before it stops a coordinator. Read as :meth:`list` reads
        (quiet reads: sleeping actors stay asleep), and only when an event (a status change,
        an edge) has been published since the last read: every status change is one, so the
        count cannot have changed without it. Cheap when nothing happens."""
        seq = self._events.seq
        if self._unfinished is None or self._unfinished[0] != seq:
            busy = (Status.PENDING, Status.STARTED)
            count = sum(info.status in busy for info in await self.list())
            self._unfinished = (seq, count)
        return self._unfinished[1]

    async def apply(self, graph: Mapping[str, Mapping[str, Status]]) -> None:
        """Declare several units and their edges as one step: ``{"claude": {"git":
        Status.COMPLETED}, "git": {}}`` registers claude and git (as pending, if they are not
        registered) and links claude to git. All or nothing: an edge that would close a cycle
        (with the graph or with each other) raises :class:`CycleError` and nothing changes.
        Applying the same graph again changes nothing. At most 10,000 units per call."""
        await self.call(operations.apply(graph))

    async def graph(self) -> str:
        """The dependency graph as Graphviz DOT: units (registered, or mentioned as a
        dependency) labelled by status, edges labelled by requirement."""
        return units_to_dot(await self.list())

    @asynccontextmanager
    async def watch(
        self, *, after: int | None = None, buffer: int = WATCH_BUFFER
    ) -> AsyncIterator[Subscription]:
        """Subscribe to events (status changes, edges added):
        ``async with coord.watch() as events: async for e in events``.

        Every event published after entering is delivered, in order. With ``after`` (a seq),
        first every kept event after it, then live ones: no gap, no duplicate (events no longer
        kept: :class:`Lagged` with ``oldest``). The coordinator never waits for a watcher: one
        more than ``buffer`` events behind is cut off, and iterating then raises
        :class:`Lagged` (after the buffered events). Leaving the block unsubscribes.
        """
        subscription = self._events.subscribe(buffer, after=after)
        try:
            yield subscription
        finally:
            self._events.unsubscribe(subscription)

    async def history(
        self, *, after: int = 0, limit: int = 0, unit: str = "", newest: bool = False
    ) -> HistoryPage:
        """A page of the kept history, in seq order: the events after seq ``after`` (of
        ``unit`` only, if given), the first ``limit`` of them or with ``newest`` the last
        (0 or more than :data:`MAX_HISTORY_PAGE`: that many). Page on with the last event's
        seq as ``after`` while ``more``. Read in this task, at once: it includes every
        change acknowledged before the call."""
        if unit:
            validate_name(unit)
        if limit < 0 or after < 0:
            raise InvalidArgument(f"history: after and limit are 0 or more, not {after}, {limit}")
        if self._store is not None:  # the events come from the store's changes: up to now,
            await self._store.synced()  # handed to the registry, and made by it (in order)
            await self._request(Ping)
        return self._events.history.page(after=after, limit=limit, unit=unit, newest=newest)

    async def statistics(self) -> CoordinatorStatistics:
        snapshot = await self._request(lambda reply: Snapshot(True, reply))
        stats: list[UnitStatistics] = await _gather(
            snapshot.inboxes, sorted(snapshot.inboxes), Inspect
        )
        return CoordinatorStatistics(
            actors=len(stats),
            awake=sum(not inbox.asleep for inbox in snapshot.inboxes.values()),
            units=sum(s.status is not Status.NOT_REGISTERED for s in stats),
            edges=len(snapshot.edges),
            ready_waiters=sum(s.ready_waiters for s in stats),
            reached_waiters=sum(s.reached_waiters for s in stats),
            overflow=len(self._overflow),
            watchers=self._events.watchers,
            events=self._events.seq,
        )

    async def sleep_idle(self) -> None:
        """Put every idle unit actor to sleep now instead of at the next idle sweep (tests and
        benchmarks use it; nothing observable changes). The actors act on it when they next
        run: ``trio.testing.wait_all_tasks_blocked()`` after this sees them asleep."""
        await self._request(SleepIdle)

    async def _request(self, make: Callable[[Reply[T]], RegistryMessage]) -> T:
        """Send the message ``make(reply)`` to the registry and await the reply."""
        reply: Reply[T] = Reply()
        await self._inbox.send(make(reply))
        return await reply.receive()

    async def call(self, operation: Operation[T]) -> T:
        """Run ``operation`` and return its answer (raise its error) in this task. Waits while
        the registry's inbox is full; cancelling abandons the request (a parked waiter goes)."""
        reply: Reply[T] = Reply()
        message = operation.message(reply)
        if self._store is not None and _reads_state(message):
            await self._store.synced()
        if not self._read_now(message):
            await self._inbox.send(message)
        if self._store is None:
            return await reply.receive()
        try:
            return await reply.receive()
        except NotReady:
            # decided on a copy that may not have a dependency's change yet: once more, on
            # one no older than the call (an actor cannot wait for the mirror; we can)
            await self._store.synced()
            reply = Reply()
            await self._inbox.send(operation.message(reply))
            return await reply.receive()

    def submit(
        self, operation: Operation[T], on_answer: Callable[[outcome.Outcome[T]], object]
    ) -> Reply[T]:
        """Start ``operation`` without waiting, in the order of submission; ``on_answer(outcome)``
        is called in the answering actor's task and must not block. For callers that are not
        Trio tasks (the RPC bridge); call it in the Trio thread, give up with
        ``reply.abandon()``. :class:`Overloaded` when too much is queued, CoordinatorClosed
        once closed. The same path as :meth:`call` but for the wait: a full inbox queues the
        message in order behind it instead."""
        if self._store is not None:  # NotReady once more on a copy no older (see call)
            on_answer = functools.partial(self._not_ready_again, operation, on_answer)
        reply: Reply[T] = Reply(on_answer)
        message = operation.message(reply)
        if self._store is not None and _releases(message):
            # the end of a hold must reach the store, or the unit stays started for good:
            # while the store does not take it, it is tried again
            reply = Reply(functools.partial(self._release_again, operation, on_answer))
            message = operation.message(reply)
        if self._store is not None and _reads_state(message):
            self._nursery.start_soon(self._synced_post, message)
        elif not self._read_now(message):
            self._post(message)
        return reply

    def _release_again(
        self, operation: Operation[T], on_answer: Callable[[outcome.Outcome[T]], object],
        result: outcome.Outcome[T],
    ) -> None:
        if isinstance(result, outcome.Error) and isinstance(result.error, StoreUnavailable):
            self._nursery.start_soon(self._post_later, operation, on_answer)
        else:
            on_answer(result)

    async def _post_later(
        self, operation: Operation[T], on_answer: Callable[[outcome.Outcome[T]], object]
    ) -> None:
        await trio.sleep(RELEASE_RETRY)
        reply: Reply[T] = Reply(functools.partial(self._release_again, operation, on_answer))
        message = operation.message(reply)
        try:
            self._post(message)
        except UnitsyncError as error:  # closed: nothing more to try
            on_answer(outcome.Error(error))

    def _not_ready_again(
        self, operation: Operation[T], on_answer: Callable[[outcome.Outcome[T]], object],
        result: outcome.Outcome[T],
    ) -> None:
        if isinstance(result, outcome.Error) and isinstance(result.error, NotReady):
            self._nursery.start_soon(self._synced_post, operation.message(Reply(on_answer)))
        else:
            on_answer(result)

    async def _synced_post(self, message: RegistryMessage) -> None:
        """A submitted read (or a NotReady asked again) with a shared store: posted once the
        mirror is no older than the call."""
        assert self._store is not None
        try:
            await self._store.synced()
            self._post(message)
        except UnitsyncError as error:
            message.request.reply.error(error)  # type: ignore[union-attr]
        except BaseException:
            answer_closed(message)  # cancelled: the coordinator is closing
            raise

    def published_info(self, name: str) -> UnitInfo | None:
        """From ANY thread (the RPC server's KJ thread): ``name``'s current info if its actor
        has published one, else None — then ask through the actors. Serves repeated ``info``
        calls without entering Trio. When that is correct: ``_reads.py``. (With a shared
        store, never: a read waits for the store's revision first.)"""
        if self._store is not None:
            return None
        return published_info(self._registry, name)

    def _read_now(self, message: RegistryMessage) -> bool:
        """Answer a request for a unit at once if it only reads state and nothing is queued
        ahead of it anywhere on its way; the answer is the one the actors would give, without
        two task switches. When that is correct: ``_reads.py``. (With a shared store, only
        the reads, after ``synced``: a mutation of a unit this copy does not have yet is the
        actors' to decide, with the store.)"""
        if self._store is not None and not _reads_state(message):
            return False
        return read_now(self._inbox, self._overflow, self._registry, message)

    def _post(self, message: RegistryMessage) -> None:
        """Queue ``message`` for the registry without waiting, keeping the order of posts.

        When the registry's inbox is full, posts wait in an ordered overflow queue that one pump
        task drains; past :data:`OVERFLOW_LIMIT` they are refused with :class:`Overloaded`.
        """
        if not self._overflow:
            try:
                self._inbox.send_nowait(message)
                return
            except trio.WouldBlock:
                self._nursery.start_soon(self._pump_overflow)
        elif len(self._overflow) >= OVERFLOW_LIMIT:
            raise Overloaded(f"{len(self._overflow)} requests queued")
        self._overflow.append(message)

    async def _pump_overflow(self) -> None:
        try:
            while self._overflow:
                await self._inbox.send(self._overflow[0])
                self._overflow.popleft()
        except CoordinatorClosed:
            pass
        finally:
            for message in self._overflow:
                answer_closed(message)  # only reached when closing (or cancelled)
            self._overflow.clear()

    async def aclose(self) -> None:
        """Shut down now, without leaving the ``open_coordinator()`` block: refuse new
        requests, answer every waiting caller with :class:`CoordinatorClosed` ("the
        coordinator is shutting down"), and return once every actor has stopped. An RPC
        server serving this coordinator sends those answers, then stops by itself."""
        self._close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Return once the coordinator has shut down (every actor stopped, waiters answered)."""
        await self._registry.finished.wait()

    def _close(self) -> None:
        self._inbox.close()
        self._events.close()


def _releases(message: RegistryMessage) -> bool:
    """Whether ``message`` ends a hold (``release``: a fail in the name of its holder)."""
    return (isinstance(message, ToUnit) and isinstance(message.request, Fail)
            and message.request.holder is not None)


def _reads_state(message: RegistryMessage) -> bool:
    """Whether ``message`` reads state that must be no older than the call (``info``, and the
    waits ``ready``/``reached``, which must not answer at once from a copy that has not seen
    a requirement added elsewhere)."""
    return isinstance(message, ToUnit) and isinstance(message.request, Info | Ready | Reached)


async def _gather(
    inboxes: Mapping[str, Inbox[Any]], names: Sequence[str], make: Callable[[Reply[T]], object]
) -> list[T]:
    """Ask the unit actors of ``names`` (keys of ``inboxes``) the same question; the answers
    in the order of ``names``.

    The caller sends directly to each inbox (it is not an actor, so it may wait) and collects
    every reply before awaiting any: the questions are answered concurrently.
    """
    replies: list[Reply[T]] = []
    for name in names:
        reply: Reply[T] = Reply()
        await inboxes[name].send(make(reply))  # type: ignore[arg-type]
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

    async def register(self) -> None:
        """Register as pending. :class:`AlreadyRegistered` if it is registered."""
        await self._coord.call(operations.register(self.name))

    async def want(self, *dependencies: str, requires: Status = Status.COMPLETED) -> None:
        """Declare that this unit needs each dependency to reach ``requires`` (``STARTED`` or
        ``COMPLETED``). Registers this unit if needed; dependencies need not be registered.

        All dependencies are linked atomically: if one would close a cycle (or is this unit),
        :class:`CycleError` names the whole cycle and nothing changes. Re-declaring an edge
        replaces its requirement. When this returns, ``info``/``ready`` reflect the new edges.
        """
        await self._coord.call(operations.want(self.name, dependencies, requires))

    async def start(self) -> None:
        """Mark started (registering if needed). :class:`NotReady` (with ``unmet``) if a
        requirement is not met; :class:`AlreadyInStatus` if started. Completed or failed units
        may start again (a re-run)."""
        await self._coord.call(operations.start(self.name))

    async def complete(self) -> None:
        """Mark completed. :class:`UnitNotFound` if not registered; :class:`AlreadyInStatus` if
        completed. Allowed from pending (as coder allows)."""
        await self._coord.call(operations.complete(self.name))

    async def fail(self, reason: str = "") -> None:
        """Mark failed with ``reason``. Every unit that needed this one — transitively — becomes
        blocked: its ``ready()`` waiters get :class:`DependencyFailed` at once. A later ``start``
        (a re-run) unblocks them."""
        await self._coord.call(operations.fail(self.name, reason))

    async def skip(self, reason: str = "") -> None:
        """Mark skipped with ``reason``: the unit did not run (a dependency it needed failed or
        was skipped, say). Only a unit that has not started (:class:`AlreadyInStatus`
        otherwise; :class:`UnitNotFound` if not registered). Like a failed unit, it meets only
        ``finished`` requirements, blocks the others, and may be re-run with :meth:`start`."""
        await self._coord.call(operations.skip(self.name, reason))

    async def ready(self) -> UnitInfo:
        """Wait until every requirement is met and return the unit's info then.

        Returns at once if ready (an unregistered unit is ready). Raises
        :class:`DependencyFailed` as soon as the unit is blocked by a failure. Pushed, never
        polled; cancelling the wait removes the waiter.
        """
        return await self._coord.call(operations.ready(self.name))

    async def reached(self, status: Status) -> None:
        """Wait until the unit's status reaches ``status`` (see :meth:`Status.reaches`).

        Raises :class:`DependencyFailed` if the unit fails (``path == (unit,)``) or is blocked
        by a failed dependency before reaching it.
        """
        await self._coord.call(operations.reached(self.name, status))

    async def info(self) -> UnitInfo:
        """A snapshot: status, readiness, reason, blocker and dependencies (sorted)."""
        return await self._coord.call(operations.info(self.name))

    @asynccontextmanager
    async def hold(self, *, resume: bool = False) -> AsyncIterator[Lease]:
        """Start the unit (as :meth:`start`) and hold it for the block:
        ``async with unit.hold() as lease: ...; await lease.complete()``.

        Leaving the block without ``lease.complete()``/``lease.fail()`` — an exception, a
        cancellation — fails the unit with ``"holder disconnected"`` (unless its status changed
        since: then this hold has ended), so its dependents are told at once instead of waiting
        for a timeout.

        The hold is journaled. ``resume=True`` takes over a hold restored from the journal
        whose holder has not come back (the status stays started): :class:`NotHeld` if there
        is none (its grace period ran out, say), :class:`AlreadyInStatus` if someone holds it.
        """
        coord = self._coord
        holder = await coord.call(operations.hold(self.name, resume=resume))
        lease = Lease(complete=self.complete, fail=self.fail)
        try:
            yield lease
        finally:
            if not lease.released:
                # synchronous and non-blocking: no shield needed, even when cancelled
                with contextlib.suppress(UnitsyncError):
                    coord.submit(operations.release(self.name, holder, HOLDER_GONE), _ignore)


def _ignore(_result: object) -> None:
    """``on_answer`` of a submitted operation whose answer nobody needs."""


@asynccontextmanager
async def open_coordinator(
    *,
    max_units: int = MAX_UNITS,
    state: str | os.PathLike[str] | None = None,
    store: str | None = None,
    member: str | None = None,
    hold_grace: float = HOLD_GRACE,
    history: int = DEFAULT_HISTORY,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[LocalCoordinator]:
    """Run a coordinator in a nursery nested in the caller's task, for the ``async with`` block.

    ``max_units`` bounds the units (every name mentioned, registered or only depended on): a
    request that would create more is refused with :class:`Overloaded` and changes nothing.

    ``state``: a journal file (see ``_journal.py``). The coordinator starts from what it holds
    and records every accepted mutation there; a mutation is acknowledged (the call returns)
    only once it is durable (group commit: one ``fdatasync`` per batch). None: in memory only.
    Units that were held (``hold()``) when the journal was last written stay started for
    ``hold_grace`` seconds, for their holders to take over (``hold(resume=True)``); the others
    then fail with ``"holder disconnected"``.

    ``store``: ``"etcd://HOST:PORT[,HOST:PORT...]/WORKSPACE"`` instead of a journal: the
    units, edges, statuses and holds are shared with every coordinator of that workspace
    (README "Several machines"; needs the ``etcd`` extra). ``StoreUnreachable`` if no
    endpoint answers; a mutation the store did not confirm raises :class:`StoreUnavailable`.
    ``member``: this coordinator's id among them (default: host and process id). A
    coordinator started again with the same id finds the holds it had, if its old lease has
    not expired yet (its TTL, 5 s), and their holders can take them back (``serve`` uses
    the host and its socket).

    ``history``: the events to keep (status changes and edges added, see :meth:`~LocalCoordinator.history`):
    the newest ``history`` of them, in memory and in the journal (0: none; ``watch`` still
    works). ``clock``: the wall clock the events are stamped with (tests pass a fake one).

    On leaving the block — normally, by an exception, or by cancellation — every actor stops and
    every caller still waiting (``ready()`` from a task outside the block, say) gets
    :class:`CoordinatorClosed`. An exception raised in the body propagates **unchanged** (not
    wrapped in an ExceptionGroup: the coordinator's own tasks end cleanly when cancelled, so the
    body's exception is the only one). A crash of the coordinator's own tasks (a bug) propagates
    as the ExceptionGroup the nursery raises, and cancels the body.
    """
    if state is not None and store is not None:
        raise InvalidArgument("a coordinator keeps its state in a journal or a store, not both")
    if store is not None:
        from .store._address import parse_store

        address = parse_store(store)
        try:
            from .store._etcd_store import open_etcd_store
        except ImportError as missing:
            raise InvalidArgument(f"a store needs the etcd extra: pip install 'unitsync[etcd]' "
                                  f"({missing})") from None

        async with open_etcd_store(address, member_id=member) as (shared, loaded):
            kept = History(history)
            if history:  # the workspace's past, as the store still has it
                for event in await shared.past_events(loaded, clock):
                    kept.append(event)
            remote = frozenset(n for n, holder in loaded.holds.items() if holder != shared.member_id)
            registry_options: dict[str, Any] = dict(
                restored=loaded.state, store=shared, revisions=loaded.revisions,
                graph_revision=loaded.graph_revision, remote_holds=remote,
            )
            async with _running(max_units, None, registry_options, hold_grace, kept,
                                clock, shared, loaded.revision) as coord:
                yield coord
        return
    kept = History(history)
    writer, restored = None, None
    if state is not None:
        journal, restored = await open_journal(Path(state))
        for event in journal.history:
            kept.append(event)
        kept.last = max(kept.last, journal.last_seq)
        journal.history = []
        writer = JournalWriter(journal, dict(restored), kept)
    async with _running(max_units, writer, {"restored": restored}, hold_grace, kept,
                        clock) as coord:
        yield coord


@asynccontextmanager
async def _running(
    max_units: int, writer: JournalWriter | None, registry_options: dict[str, Any],
    hold_grace: float, kept: History, clock: Callable[[], float], store: Any = None,
    revision: int = 0,
) -> AsyncIterator[LocalCoordinator]:
    """The actors (and the journal's writer, or the store's mirror) in a service nursery."""
    inbox: Inbox[RegistryMessage] = Inbox(REGISTRY_INBOX_SIZE)
    events = EventHub(kept, clock=clock, record=writer.record_event if writer else None)
    async with open_service_nursery() as nursery:
        if writer is not None:
            nursery.start_soon(writer.run, name="unitsync:journal")
        registry = RegistryActor(
            inbox, events, max_units=max_units, writer=writer, hold_grace=hold_grace,
            **registry_options,
        )
        coord = LocalCoordinator(inbox, registry, events, nursery, store)
        await nursery.start(registry.run)
        if store is not None:
            await nursery.start(store.mirror, inbox, revision)
            nursery.start_soon(_stop_when_lost, store, name="unitsync:membership")
        try:
            yield coord
        finally:
            coord._close()


async def _stop_when_lost(store: Any) -> None:
    """A shared store's membership lease ended: this coordinator stops (``StoreLost``)."""
    from .store._address import StoreLost

    await store.member.lost.wait()
    raise StoreLost(store.member.reason or "its lease is gone")

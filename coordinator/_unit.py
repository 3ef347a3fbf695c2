"""UnitActor: the Trio task that owns one unit.

What a unit is and decides lives in its :class:`~._unit_state.UnitState`; the actor runs it:
it takes one message at a time from its inbox, applies it to the state, and does the I/O —
journal records, events, the new state posted to dependents and the registry, the answers to
callers and waiters. It also sleeps when idle and wakes on its next message. Between messages
(its task waiting, or asleep) it is handed some of them in the sender's turn instead: its
dependencies' new states (``_settling.py``) and, asleep, the registry's link messages
(:meth:`UnitActor.takes_now`) — handled exactly as its task would handle them.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import trio

from ._api import UnitInfo
from ._errors import CoordinatorClosed
from ._events import EventHub
from ._journal_writer import JournalWriter
from ._journal import StatusRecord, UnitRecord, WantRecord
from ._inbox import IDLE_CHECK, POKE, UNIT_INBOX_SIZE, Inbox
from ._messages import (
    MUTATIONS,
    NOT_REGISTERED,
    AddRequirements,
    Adopt,
    Complete,
    Fail,
    Hold,
    Info,
    Inspect,
    Published,
    Reached,
    Ready,
    Register,
    Skip,
    Start,
    Subscribe,
    UnitRequest,
    UnitStatistics,
    answer_closed,
)
from ._errors import NotReady, StoreUnavailable
from ._reply import Reply
from ._settling import Settling
from ._shared import CONFLICT_RETRIES, SharedStore, StoreConflict
from ._status import Status
from ._unit_state import REFUSALS, Change, UnitState

__all__ = ["IDLE_SECONDS", "SHUTTING_DOWN", "UnitActor"]

#: What a caller still waiting (``ready``, ``reached``) is told when the coordinator stops.
SHUTTING_DOWN: Final = "the coordinator is shutting down"

#: How often the registry looks for idle unit actors (ARCHITECTURE §2). One with no waiter that
#: handled no message since the previous look (so idle for one to two periods) goes to sleep:
#: its task ends and its channel is dropped, its state stays, and its next message wakes it. A
#: unit in use keeps its task; thousands of idle units do not hold thousands of tasks. The
#: period is long enough that a long burst of work (a large graph built one ``want`` at a time)
#: does not put actors to sleep between their messages, each wake-up making a new task and
#: channel for the garbage collector; and it is a sweep, not a deadline per message, which
#: would charge every message Trio's deadline bookkeeping. Figures: stress/README.md,
#: "Measured history".
IDLE_SECONDS: Final = 5.0

#: What an asleep actor handles in the sender's turn (:meth:`UnitActor.takes_now`).
_TAKEN_ASLEEP: Final = frozenset({AddRequirements, Subscribe})


class UnitActor:
    """Runs one unit's :class:`UnitState`; owns its subscribers (the dependents' inboxes).

    It handles one message at a time from its :class:`~._inbox.Inbox` and never awaits another
    actor: dependents are told of a change with :meth:`Inbox.post_state`, which never blocks.
    After each message it settles the state: the new state goes to dependents and the
    registry, then waiters are answered, then the caller of a mutation (once durable, with a
    journal) — so a caller told "done" never finds a dependent that has not been told.
    """

    __slots__ = (
        "name", "state", "_inbox", "_events", "_registry", "_subscribers", "_nursery",
        "_candidates", "snapshot", "_writer", "_ack", "_store", "stored", "revision",
        "_settling", "_receiving",
    )

    def __init__(
        self,
        name: str,
        registry: Inbox[object],
        events: EventHub,
        nursery: trio.Nursery,
        candidates: set[Inbox[UnitRequest]],
        settling: Settling,
        writer: JournalWriter | None = None,
        store: SharedStore | None = None,
    ) -> None:
        self.name = name
        #: The unit itself; waiters parked in it are replies.
        self.state: UnitState[Reply[Any]] = UnitState(name)
        #: The registry's idle-sweep candidates: inboxes of awake actors without a waiter (this
        #: one is in it while its task runs and it holds no waiter).
        self._candidates = candidates
        #: This actor's address. It starts asleep: the first message starts the task.
        self._inbox: Inbox[UnitRequest] = Inbox(UNIT_INBOX_SIZE, sleeper=self)
        self._nursery = nursery
        self._registry = registry
        self._events = events
        self._subscribers: dict[str, Inbox] = {}
        #: The last info answered while quiet, until the next message: an immutable value any
        #: thread may read (see ``_reads.py``). None when it may be stale.
        self.snapshot: UnitInfo | None = None
        #: Where accepted mutations go before they are acknowledged (None: no journal).
        self._writer = writer
        #: The reply of the mutation this message applied and its value: answered once the
        #: message is settled (dependents told), and with a journal once durable.
        self._ack: tuple[Reply[Any], object] | None = None
        #: A store shared with other coordinators (None: journal or memory): mutations are
        #: committed there before they are applied (``_shared.py``). ``stored`` is the unit's
        #: record as the store has it at ``revision`` (None, 0: the store has none).
        self._store = store
        self.stored: UnitRecord | None = None
        self.revision = 0
        #: Where posted states are settled in the poster's turn (``_settling.py``: one queue
        #: for all the coordinator's units); and whether the task waits for its next message
        #: (then it is between messages).
        self._settling = settling
        self._receiving = False

    @property
    def inbox(self) -> Inbox[UnitRequest]:
        return self._inbox

    def wake(self) -> None:
        """Start the actor's task (the inbox calls this when a message reaches it asleep)."""
        try:
            self._nursery.start_soon(self.run, name=f"unit:{self.name}")
        except RuntimeError:  # the registry's nursery is closed: the coordinator has stopped
            raise CoordinatorClosed() from None
        self._inbox.touched = True
        self._candidates.add(self._inbox)

    def moved_by(self, unit: str, state: Published) -> bool:
        """For the inbox: whether ``unit``'s new state could change this unit (see
        :meth:`UnitState.moved_by`)."""
        return self.state.moved_by(unit, state)

    def settles_now(self) -> bool:
        """For the inbox: between messages (waiting to receive, or asleep), queue this actor to
        settle its posted states in the poster's turn (``_settling.py``)."""
        if self._receiving or self._inbox.asleep:
            self._settling.add(self)
            return True
        return False

    def takes_now(self, request: object) -> bool:
        """For the inbox, asleep: the registry's link messages (``AddRequirements``,
        ``Subscribe``: they never park a waiter nor await) are handled in its turn, exactly as
        the task would handle them first thing, and the actor sleeps on — an apply of N new
        units makes no task for them (ARCHITECTURE §2)."""
        if type(request) not in _TAKEN_ASLEEP:
            return False
        self.snapshot = None  # before anything changes: see _reads.py
        self._take(request)
        return True

    def settle_posted(self) -> None:
        """What the task does with a POKE, done by :class:`Settling` while it is between
        messages: read the posted states and settle them."""
        self.snapshot = None  # before anything changes: see _reads.py
        self._inbox.touched = True
        self._take(POKE)

    def poke(self) -> None:
        """For :class:`Settling`, if it cannot settle this actor: wake its task instead."""
        self._inbox.poke()

    async def run(self) -> None:
        """The actor loop. Ends when the inbox is closed (answering everyone on the way out), or
        asleep: when an :data:`IDLE_CHECK` finds it idle (no waiter, nothing queued)."""
        inbox = self._inbox
        receiver = inbox.receiver
        assert receiver is not None
        state = self.state
        try:
            while True:
                # what is queued is taken without a checkpoint per message (a receive is one:
                # a task switch per message); cancellation is still seen before each
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    request = receiver.receive_nowait()
                except trio.WouldBlock:
                    self._receiving = True
                    try:
                        request = await receiver.receive()
                    except trio.EndOfChannel:
                        break
                    finally:
                        self._receiving = False
                except trio.EndOfChannel:
                    break
                self.snapshot = None  # before anything changes: see _reads.py
                if request is IDLE_CHECK:
                    if inbox.states:  # posted without waking us (see moved_by): read them, so
                        # that we can sleep; whatever must be settled has its POKE queued
                        self._take_posted(request)
                    if not state.parked and inbox.sleep():
                        self._candidates.discard(inbox)
                        return
                    continue
                inbox.touched = True
                if self._store is not None and isinstance(request, MUTATIONS):
                    self._take_posted(request)
                    await self._commit(request)
                    self._settle()
                    self._answer_caller()
                else:
                    self._take(request)
        finally:
            if not inbox.asleep:
                self._candidates.discard(inbox)
                self._close()

    def _take(self, request: object) -> None:
        """One message, synchronously: the states posted before it, the message (a
        :data:`POKE` carries none), the settle, then the caller's answer."""
        self._take_posted(request)
        if request is not POKE:
            self._handle(request)  # type: ignore[arg-type]
        self._settle()
        self._answer_caller()

    def _take_posted(self, request: object) -> None:
        """Read the states the dependencies posted since the last message."""
        state = self.state
        for dependency, posted in self._inbox.take_states(request).items():
            state.dependency_changed(dependency, posted)

    def _settle(self) -> None:
        """After each message: publish the new state, answer the waiters it lets go."""
        if self.state.settle(self._publish, Reply.ok, Reply.error):  # the last waiter went
            self._candidates.add(self._inbox)

    def _answer_caller(self) -> None:
        """After settling (dependents hear before the caller): the mutation's answer."""
        if self._ack is not None:
            (reply, value), self._ack = self._ack, None
            self._acknowledge(reply, value)

    # --- messages -----------------------------------------------------------------------------

    def _handle(self, request: UnitRequest) -> None:
        state = self.state
        try:
            match request:
                case Info(reply):
                    reply.ok(state.info())
                case Ready(reply):
                    if not reply.answered:  # else the caller gave up before we got here
                        state.wait_ready(reply)
                        self._parked(reply)
                case Reached(target, reply):
                    if not reply.answered:
                        state.wait_reached(reply, target)
                        self._parked(reply)
                case Register() | Start() | Hold() | Complete() | Fail() | Skip():
                    change, value = self._decide(request)
                    if change is None:  # a resumed hold, a stale lease's fail: nothing to journal
                        request.reply.ok(value)
                    else:
                        self._apply(request.reply, change, value)
                case AddRequirements(requirements, reply, dependents):
                    for subscribe in dependents:
                        self._subscribe(subscribe)
                    had = dict(state.requirements)
                    self._apply(reply, state.add_requirements(requirements))
                    self._publish_edges(had, requirements)
                    if self._writer is not None:
                        self._writer.record(
                            WantRecord(self.name, tuple((d, r) for d, r, _ in requirements))
                        )
                case Adopt(record, revision, requirements, reply):
                    self._adopt(record, revision, requirements)
                    if reply is not None:
                        self._ack = (reply, None)
                case Subscribe():
                    self._subscribe(request)
                case Inspect(reply):
                    reply.ok(self.statistics())
        except REFUSALS as refused:  # the state refused the mutation: nothing changed
            request.reply.error(refused)  # type: ignore[union-attr]

    def _subscribe(self, subscribe: Subscribe) -> None:
        """A new dependent: it gets every change from now on, and the state now unless it was
        given that one with its requirement (the registry's copy; a change this message makes
        reaches it when the message settles)."""
        self._subscribers[subscribe.dependent] = subscribe.inbox
        published, known = self.state.published, subscribe.known
        if known is None or known != published:
            subscribe.inbox.post_state(self.name, published)

    def _decide(self, request: Any) -> tuple[Change | None, object]:
        """The state's decision on a mutation: its Change (None: the status stays) and the
        caller's answer; raises the refusal with nothing changed."""
        state = self.state
        match request:
            case Start():
                return state.start(), None
            case Hold(False):
                change = state.start(held=True)
                return change, state.holder  # answered with the hold's token
            case Hold(True):
                return None, state.resume()
            case Complete():
                return state.complete(), None
            case Fail(reason, _, holder):
                # None when completed, failed or re-run since: the lease has no say
                return state.fail(reason, holder=holder), None
            case Skip(reason):
                return state.skip(reason), None
            case Register():
                return state.register(), None
        raise AssertionError(f"not a mutation: {request!r}")

    def _publish_edges(
        self, had: dict[str, Status], requirements: tuple[tuple[str, Status, Any], ...]
    ) -> None:
        """An edge event for each requirement that is new (or changed) since ``had``."""
        self._events.publish_edges(self.name, self.state.status, [
            (dependency, required) for dependency, required, _ in requirements
            if had.get(dependency) is not required
        ])

    # --- a shared store (``_shared.py``): decide, commit, then keep or roll back ---------------

    async def _commit(self, request: Any) -> None:
        """A mutation with a shared store: decided as always, committed with a compare on the
        revision the state came from, kept only if the store took it. Refused, the state goes
        back, the store's record is read and taken, and the mutation is decided again."""
        state, store = self.state, self._store
        assert store is not None
        reply = request.reply
        for _ in range(CONFLICT_RETRIES):
            saved = state.checkpoint()
            try:
                change, value = self._decide(request)
            except NotReady as refused:  # a waiting caller parks; the change will come to it
                reply.error(refused)
                return
            except REFUSALS as refused:  # decided on our copy: refuse only if it is the store's
                try:
                    newer = await self._newer_in_store()
                except StoreUnavailable as error:
                    reply.error(error)
                    return
                if not newer:
                    reply.error(refused)
                    return
                continue
            if change is None and not isinstance(request, Hold):
                reply.ok(value)  # a stale lease's fail: nothing to store
                return
            held = state.holder is not None
            requirements = self.stored.requirements if self.stored is not None else {}
            now = self._events.now()
            record = UnitRecord(state.status, state.reason, dict(requirements), held, now)
            try:
                revision = await store.commit_unit(self.name, record, self.revision, hold=held)
            except StoreConflict:
                state.rollback(saved)
            except BaseException as error:
                state.rollback(saved)
                if isinstance(error, StoreUnavailable):
                    reply.error(error)
                    return
                raise
            else:
                self.stored, self.revision = record, revision
                self._ack = (reply, value)  # (its event comes back with the store's change)
                return
            try:
                await self._newer_in_store()
            except StoreUnavailable as error:
                reply.error(error)
                return
        reply.error(StoreUnavailable(
            f"unit {self.name!r} changed {CONFLICT_RETRIES} times while this change was decided"
        ))

    async def _newer_in_store(self) -> bool:
        """Read the unit's record from the store; if it is newer than ours, take it and
        return True (decide again). ``StoreUnavailable`` if the store cannot be read."""
        assert self._store is not None
        stored, revision = await self._store.read_unit(self.name)
        if stored is None or revision <= self.revision:
            return False
        state = self.state
        unknown = tuple(
            (d, r, NOT_REGISTERED) for d, r in stored.requirements.items()
            if d not in state.requirements
        )  # the registry brings their states (and the subscriptions) with the change
        self._adopt(stored, revision, unknown)
        return True

    def _adopt(
        self, record: UnitRecord, revision: int, requirements: tuple[tuple[str, Status, Any], ...]
    ) -> None:
        """Take the store's ``record`` at ``revision`` if it is newer than ours (an echo of
        our own commit is not), and the requirements it adds."""
        state = self.state
        if requirements:
            state.add_requirements(requirements)
        if revision > self.revision:
            self.stored, self.revision = record, revision
            state.adopt(record.status, record.reason, held=record.held)
        # (the events are the registry's, from the store's changes in revision order)

    def _apply(self, reply: Reply[Any], change: Change | None, value: object = None) -> None:
        """A mutation the state made: journal and publish its status change, if any, and
        acknowledge it (with ``value``) once the message is settled."""
        if change is not None:
            if self._writer is not None:
                self._writer.record(StatusRecord(self.name, change.new, change.reason, change.held))
            self._events.publish(self.name, change.old, change.new, change.reason)
        self._ack = (reply, value)

    def _parked(self, reply: Reply[Any]) -> None:
        """``reply`` waits in the state now: the actor stays awake, and its caller giving up
        removes it (at once, directly: removing a waiter cannot break an invariant)."""
        self._candidates.discard(self._inbox)  # an actor with a waiter never sleeps
        reply.on_abandon(functools.partial(self._unpark, reply))

    def _unpark(self, reply: Reply[Any]) -> None:
        self.state.forget(reply)
        if not self.state.parked:  # without waiters, a candidate for the idle sweep again
            self._candidates.add(self._inbox)

    def _acknowledge(self, reply: Reply[Any], value: object) -> None:
        """At once, or once the mutation is durable when there is a journal."""
        if self._writer is None:
            reply.ok(value)
        else:
            self._writer.then(functools.partial(reply.ok, value))

    def _publish(self, published: Published) -> None:
        """Push the unit's new state to its dependents and the registry (never blocks); those
        between messages settle it once it has reached them all (``_settling.py``)."""
        settling = self._settling
        outermost = settling.posting()
        try:
            self._registry.post_state(self.name, published)
            for inbox in self._subscribers.values():
                inbox.post_state(self.name, published)
        finally:
            if outermost:
                settling.drain()

    # --- restoring from the journal -----------------------------------------------------------

    def restore(self, record: UnitRecord) -> None:
        """Before any message (the registry, starting from a journal): take the stored
        status, reason and requirements. Dependencies' states come with :meth:`restore_link`."""
        self.state.restore(record.status, record.reason, record.requirements, held=record.held)

    def restore_link(self, dependency: UnitActor) -> None:
        """Learn ``dependency``'s restored state (restored in dependency order) and subscribe."""
        self.state.dependency_changed(dependency.name, dependency.state.publish_now())
        dependency._subscribers[self.name] = self._inbox

    # --- reads and shutdown -------------------------------------------------------------------

    def statistics(self) -> UnitStatistics:
        state = self.state
        ready_waiters, reached_waiters = state.waiting()
        return UnitStatistics(
            name=self.name,
            status=state.status,
            requirements=len(state.requirements),
            subscribers=len(self._subscribers),
            ready_waiters=ready_waiters,
            reached_waiters=reached_waiters,
        )

    def _close(self) -> None:
        """Shutting down: answer every waiter and every queued request with CoordinatorClosed."""
        for reply in self.state.drop_waiters():
            reply.error(CoordinatorClosed(SHUTTING_DOWN))
        self._inbox.drain_and_close(answer_closed)


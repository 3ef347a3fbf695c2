"""UnitActor: the Trio task that owns one unit."""

from __future__ import annotations

import functools
from typing import Any, Final

import trio

from ._api import Dependency, UnitInfo
from ._errors import (
    AlreadyInStatus,
    AlreadyRegistered,
    CoordinatorClosed,
    DependencyFailed,
    NotHeld,
    NotReady,
    UnitNotFound,
)
from ._events import EventHub
from ._durable import JournalWriter
from ._journal import StatusRecord, UnitRecord, WantRecord
from ._inbox import IDLE_CHECK, POKE, UNIT_INBOX_SIZE, Inbox
from ._messages import (
    NOT_REGISTERED,
    AddRequirements,
    Blocker,
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
from ._reply import Reply
from ._status import Status

__all__ = ["IDLE_SECONDS", "ORPHAN", "SHUTTING_DOWN", "UnitActor", "answer_absent"]

#: What a caller still waiting (``ready``, ``reached``) is told when the coordinator stops.
SHUTTING_DOWN: Final = "the coordinator is shutting down"

#: How often the registry looks for idle unit actors. One with no waiter that handled no
#: message since the previous look (so idle for one to two periods) goes to sleep: its task
#: ends, its state stays (about 2 KB instead of ~7 KB with a task and a channel), and its next
#: message wakes it. A unit in use keeps its task; thousands of idle units do not hold
#: thousands of tasks. 5 s, not 1 s: with 1 s, a random 50,000-edge build over 10,000 units
#: (8 s) woke a sleeping actor on 46,524 of its 50,000 wants, and the new tasks and channels
#: set off full garbage-collector passes (2.6 s of the 8 s). (A per-message idle deadline was
#: measured first: it cost ~50 µs per ``want`` in Trio's deadline bookkeeping.)
IDLE_SECONDS: Final = 5.0

#: The outcomes that meet no requirement but ``finished``, and block the others.
_FAILURES: Final = (Status.FAILED, Status.SKIPPED)

#: The holder token of a hold restored from the journal: its holder (a ``run`` of the old
#: coordinator) may come back and take it over (``Hold(resume=True)``) until the registry's
#: grace period ends it (``Fail(holder=ORPHAN)``). Live holders get tokens 1, 2, ...
ORPHAN: Final = 0


class UnitActor:
    """Owns one unit: its status and reason, its requirements with the last known state of each
    dependency, its waiters (``ready`` / ``reached`` promises) and its subscribers (dependents).

    It handles one message at a time from its :class:`~._inbox.Inbox` and never awaits another
    actor: dependents are told of a change with :meth:`Inbox.post_state`, which never blocks.

    Derived state, kept incrementally so that a unit with thousands of dependencies pays O(1) per
    dependency update:

    * ``ready`` — no requirement is unmet (``_unmet`` is empty).
    * blocked — the unit is not running (pending, failed or unregistered) and an unmet
      requirement's dependency has failed or is itself blocked (``_blocking``). Blocking is
      derived, never stored: re-running the failed unit unblocks everything downstream.
    """

    __slots__ = (
        "name",
        "_inbox",
        "_events",
        "_status",
        "_reason",
        "_requirements",
        "_known",
        "_unmet",
        "_blocking",
        "_registry",
        "_ready_waiters",
        "_reached_waiters",
        "_subscribers",
        "_published",
        "_nursery",
        "_candidates",
        "snapshot",
        "_writer",
        "_ack",
        "_holder",
        "_holds",
    )

    def __init__(
        self,
        name: str,
        registry: Inbox[object],
        events: EventHub,
        nursery: trio.Nursery,
        candidates: set[Inbox[UnitRequest]],
        writer: JournalWriter | None = None,
    ) -> None:
        self.name = name
        #: The registry's idle-sweep candidates: inboxes of awake actors without a waiter (this
        #: one is in it while its task runs and it holds no waiter).
        self._candidates = candidates
        #: This actor's address. It starts asleep: the first message starts the task.
        self._inbox: Inbox[UnitRequest] = Inbox(UNIT_INBOX_SIZE, sleeper=self)
        self._nursery = nursery
        self._registry = registry
        self._events = events
        self._status = Status.NOT_REGISTERED
        self._reason = ""
        self._requirements: dict[str, Status] = {}
        self._known: dict[str, Published] = {}
        self._unmet: set[str] = set()
        self._blocking: set[str] = set()
        self._ready_waiters: dict[Reply[UnitInfo], None] = {}
        self._reached_waiters: dict[Reply[None], Status] = {}
        self._subscribers: dict[str, Inbox] = {}
        self._published = NOT_REGISTERED
        #: The last info answered while quiet, until the next message: an immutable value any
        #: thread may read (see ``Inbox.published_info``). None when it may be stale.
        self.snapshot: UnitInfo | None = None
        #: Where accepted mutations go before they are acknowledged (None: no journal).
        self._writer = writer
        #: The reply of the mutation this message applied and its value, answered after
        #: ``_settle``.
        self._ack: tuple[Reply[Any], object] | None = None
        #: Who holds the started unit: a token (see :data:`ORPHAN`), None if nobody. Any status
        #: change ends a hold; a dropped lease fails the unit only if its token still holds it.
        self._holder: int | None = None
        self._holds = 0  # tokens given so far

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

    def answer_read(self, request: object) -> bool:
        """Answer a request that only reads state, synchronously; the inbox calls this when
        the actor is quiet (``info`` costs no task switch; ``list()`` of thousands of sleeping
        units wakes none)."""
        match request:
            case Info(reply):
                self.snapshot = info = self._info()
                reply.ok(info)
            case Inspect(reply):
                reply.ok(self._statistics())
            case Ready(reply) if not self._unmet:  # ready now: nothing to park
                reply.ok(self._info())
            case _:
                return False
        return True

    async def run(self) -> None:
        """The actor loop. Ends when the inbox is closed (answering everyone on the way out), or
        asleep: when an :data:`IDLE_CHECK` finds it idle (no waiter, nothing queued)."""
        inbox = self._inbox
        receiver = inbox.receiver
        assert receiver is not None
        try:
            async for request in receiver:
                self.snapshot = None  # whatever this message does, the snapshot may be stale
                if request is IDLE_CHECK:
                    if not (self._ready_waiters or self._reached_waiters) and inbox.sleep():
                        self._candidates.discard(inbox)
                        return
                    continue
                inbox.touched = True
                states = inbox.take_states(request)
                for dependency, state in states.items():
                    self._dependency_changed(dependency, state)
                if request is not POKE:
                    self._handle(request)  # type: ignore[arg-type]
                self._settle()
                if self._ack is not None:  # after _settle: dependents hear before the caller
                    (reply, value), self._ack = self._ack, None
                    self._acknowledge(reply, value)
        finally:
            if not inbox.asleep:
                self._candidates.discard(inbox)
                self._close()

    # --- messages -----------------------------------------------------------------------------

    def _handle(self, request: UnitRequest) -> None:
        match request:
            case Info(reply):
                reply.ok(self._info())
            case Ready(reply):
                self._park(reply, self._ready_waiters, None)
            case Reached(status, reply):
                self._park(reply, self._reached_waiters, status)
            case Start(reply):
                self._start(reply, held=False)
            case Hold(False, reply):
                self._start(reply, held=True)
            case Hold(True, reply):
                self._resume(reply)
            case Complete(reply):
                if self._status is Status.NOT_REGISTERED:
                    reply.error(UnitNotFound(self.name))
                elif self._status is Status.COMPLETED:
                    reply.error(AlreadyInStatus(self.name, self._status))
                else:
                    self._set_status(Status.COMPLETED)
                    self._done(reply)
            case Fail(reason, reply, holder):
                if holder is not None and holder != self._holder:
                    reply.ok(None)  # completed, failed or re-run since: the lease has no say
                elif self._status is Status.NOT_REGISTERED:
                    reply.error(UnitNotFound(self.name))
                elif self._status is Status.FAILED:
                    reply.error(AlreadyInStatus(self.name, self._status))
                else:
                    self._set_status(Status.FAILED, reason)
                    self._done(reply)
            case Skip(reason, reply):
                if self._status is Status.NOT_REGISTERED:
                    reply.error(UnitNotFound(self.name))
                elif self._status is not Status.PENDING:  # only what has not run is skipped
                    reply.error(AlreadyInStatus(self.name, self._status))
                else:
                    self._set_status(Status.SKIPPED, reason)
                    self._done(reply)
            case Register(reply):
                if self._status is Status.NOT_REGISTERED:
                    self._set_status(Status.PENDING)
                    self._done(reply)
                else:
                    reply.error(AlreadyRegistered(self.name))
            case AddRequirements(requirements, reply):
                if self._status is Status.NOT_REGISTERED:
                    self._set_status(Status.PENDING)
                for dependency, required, state in requirements:
                    # what we already know of it is at least as fresh as the registry's copy
                    self._known.setdefault(dependency, state)
                    self._requirements[dependency] = required
                    self._classify(dependency)
                if self._writer is not None:
                    self._writer.record(
                        WantRecord(self.name, tuple((d, r) for d, r, _ in requirements))
                    )
                self._done(reply)
            case Subscribe(dependent, inbox):
                self._subscribers[dependent] = inbox
                inbox.post_state(self.name, self._published)
            case Inspect(reply):
                reply.ok(self._statistics())

    def _start(self, reply: Reply[Any], *, held: bool) -> None:
        """Start (a re-run from completed or failed too); ``held``: bound to a new holder
        token, which is the answer (a plain start answers None)."""
        if self._status is Status.STARTED:
            reply.error(AlreadyInStatus(self.name, self._status))
        elif self._unmet:
            reply.error(NotReady(self.name, sorted(self._unmet)))
        else:
            self._set_status(Status.STARTED, held=held)
            if held:
                self._holds += 1
                self._holder = self._holds
            self._done(reply, self._holder)

    def _resume(self, reply: Reply[int]) -> None:
        """Give a hold restored from the journal, whose holder has not come back, a new holder
        token. The status stays, so nothing is journaled."""
        if self._holder != ORPHAN:
            status = self._status
            reply.error(
                AlreadyInStatus(self.name, status) if status is Status.STARTED
                else NotHeld(self.name, status)
            )
            return
        self._holds += 1
        self._holder = self._holds
        reply.ok(self._holder)

    @property
    def orphaned(self) -> bool:
        """A hold restored from the journal that no holder has taken over (yet)."""
        return self._holder == ORPHAN

    def _park(self, reply: Reply[object], waiters: dict[object, object], value: object) -> None:
        if reply.answered:
            return  # the caller gave up before we got here
        waiters[reply] = value
        self._candidates.discard(self._inbox)  # an actor with a waiter never sleeps
        # Removing a waiter cannot break an invariant, so the caller may do it directly, at once.
        reply.on_abandon(functools.partial(self._unpark, waiters, reply))

    def _done(self, reply: Reply[Any], value: object = None) -> None:
        """A mutation was applied: acknowledge it (with ``value``) once this message is settled
        — dependents have been told (so a caller told "done" never reads an older published
        info of one)."""
        self._ack = (reply, value)

    def _acknowledge(self, reply: Reply[Any], value: object) -> None:
        """At once, or once the mutation is durable when there is a journal."""
        if self._writer is None:
            reply.ok(value)
        else:
            self._writer.then(functools.partial(reply.ok, value))

    def restore(self, record: UnitRecord) -> None:
        """Before any message (the registry, starting from a journal): take the stored
        status, reason and requirements. Dependencies' states come with :meth:`restore_link`."""
        self._status, self._reason = record.status, record.reason
        self._requirements = dict(record.requirements)
        if record.held and record.status is Status.STARTED:
            self._holder = ORPHAN

    def restore_link(self, dependency: UnitActor) -> None:
        """Learn ``dependency``'s restored state (restored in dependency order) and subscribe."""
        self._known[dependency.name] = dependency.published_now()
        self._classify(dependency.name)
        dependency._subscribers[self.name] = self._inbox

    def published_now(self) -> Published:
        """The state this actor publishes, recomputed (used while restoring)."""
        self._published = Published(self._status, self._reason, self._blocker())
        return self._published

    def _unpark(self, waiters: dict[object, object], reply: Reply[object]) -> None:
        waiters.pop(reply, None)
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        """Without waiters, the actor is a candidate for the idle sweep again."""
        if not self._ready_waiters and not self._reached_waiters:
            self._candidates.add(self._inbox)

    def _dependency_changed(self, dependency: str, state: Published) -> None:
        self._known[dependency] = state
        if dependency in self._requirements:
            self._classify(dependency)

    def _classify(self, dependency: str) -> None:
        state = self._known[dependency]
        if state.status.reaches(self._requirements[dependency]):
            self._unmet.discard(dependency)
            self._blocking.discard(dependency)
            return
        self._unmet.add(dependency)
        if self._requirements[dependency] is Status.FINISHED:
            self._blocking.discard(dependency)  # any outcome meets it: it waits, never blocks
        elif state.status in _FAILURES or state.blocker is not None:
            self._blocking.add(dependency)
        else:
            self._blocking.discard(dependency)

    # --- derived state and notification -------------------------------------------------------

    def _blocker(self) -> Blocker | None:
        if not self._blocking or self._status in (Status.STARTED, Status.COMPLETED):
            return None
        dependency = min(self._blocking)
        state = self._known[dependency]
        # the root of the chain: a failed unit, or a skipped one that nothing blocks (a unit
        # skipped because its own dependency failed leads on to that one)
        if state.status is Status.FAILED or (state.status is Status.SKIPPED and not state.blocker):
            return Blocker(dependency, state.reason, (self.name, dependency), state.status)
        assert state.blocker is not None
        blocker = state.blocker
        return Blocker(blocker.unit, blocker.reason, (self.name, *blocker.path), blocker.status)

    def _settle(self) -> None:
        """After each message: push a changed state to dependents, answer waiters that can be."""
        blocker = self._blocker()
        published = Published(self._status, self._reason, blocker)
        if published != self._published:
            self._published = published
            self._registry.post_state(self.name, published)
            for inbox in self._subscribers.values():
                inbox.post_state(self.name, published)
        if self._ready_waiters and (blocker is not None or not self._unmet):
            waiters, self._ready_waiters = self._ready_waiters, {}
            if blocker is None:
                info = self._info()
                for reply in waiters:
                    reply.ok(info)
            else:
                for reply in waiters:
                    reply.error(blocker.error())
            self._maybe_idle()
        if self._reached_waiters:
            for reply, target in list(self._reached_waiters.items()):
                if self._status.reaches(target):
                    del self._reached_waiters[reply]
                    reply.ok(None)
                elif self._status in _FAILURES:
                    del self._reached_waiters[reply]
                    reply.error(
                        DependencyFailed(self.name, self._reason, (self.name,), self._status)
                    )
                elif blocker is not None and target is not Status.FINISHED:
                    # (a blocked unit will still have an outcome: skipped, when its waiter
                    # gives up; a wait for any outcome goes on)
                    del self._reached_waiters[reply]
                    reply.error(blocker.error())
            self._maybe_idle()

    def _set_status(self, status: Status, reason: str = "", *, held: bool = False) -> None:
        """Change status (ending any hold; ``held``: the caller takes the new one)."""
        old = self._status
        self._status = status
        self._reason = reason
        self._holder = None
        if self._writer is not None:
            self._writer.record(StatusRecord(self.name, status, reason, held))
        self._events.publish(self.name, old, status, reason)

    def _info(self) -> UnitInfo:
        blocker = self._blocker()
        return UnitInfo(
            name=self.name,
            status=self._status,
            ready=not self._unmet,
            reason=self._reason,
            blocked_by=blocker.unit if blocker else "",
            dependencies=tuple(
                Dependency(
                    depends_on=dependency,
                    required=required,
                    current=self._known[dependency].status,
                    satisfied=dependency not in self._unmet,
                )
                for dependency, required in sorted(self._requirements.items())
            ),
        )

    def _statistics(self) -> UnitStatistics:
        return UnitStatistics(
            name=self.name,
            status=self._status,
            requirements=len(self._requirements),
            subscribers=len(self._subscribers),
            ready_waiters=len(self._ready_waiters),
            reached_waiters=len(self._reached_waiters),
        )

    def _close(self) -> None:
        """Shutting down: answer every waiter and every queued request with CoordinatorClosed."""
        for reply in (*self._ready_waiters, *self._reached_waiters):
            reply.error(CoordinatorClosed(SHUTTING_DOWN))
        self._ready_waiters.clear()
        self._reached_waiters.clear()
        self._inbox.drain_and_close(answer_closed)


def answer_absent(name: str, request: UnitRequest) -> bool:
    """Answer ``request`` for a unit that has no actor (never mentioned) if that needs no actor.

    Returns False when the request needs an actor (it registers, parks a waiter or links).
    """
    match request:
        case Info(reply) | Ready(reply):
            reply.ok(UnitInfo(name=name, status=Status.NOT_REGISTERED, ready=True))
        case Complete(reply) | Fail(_, reply, _) | Skip(_, reply):
            reply.error(UnitNotFound(name))
        case Hold(True, reply):
            reply.error(NotHeld(name, Status.NOT_REGISTERED))
        case Inspect(reply):
            reply.ok(
                UnitStatistics(
                    name=name, status=Status.NOT_REGISTERED, requirements=0, subscribers=0,
                    ready_waiters=0, reached_waiters=0,
                )
            )
        case Reached(status, reply) if Status.NOT_REGISTERED.reaches(status):
            reply.ok(None)
        case _:
            return False
    return True

"""An actor's inbox: a bounded FIFO of requests plus one latest-state slot per unit that posts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar

import trio

from ._errors import CoordinatorClosed
from ._reads import read_quietly

if TYPE_CHECKING:
    from ._messages import Published

__all__ = ["IDLE_CHECK", "POKE", "Inbox", "Sleeper", "UNIT_INBOX_SIZE"]

M = TypeVar("M")

#: Requests buffered per unit before senders wait (senders are the registry and callers, never
#: another unit, so waiting cannot deadlock).
UNIT_INBOX_SIZE: Final = 64


class _Poke:
    """Wakes the actor to read the state slots; carries nothing."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "POKE"


POKE: Final = _Poke()


class _IdleCheck:
    """From the registry's sweep: sleep if you are idle."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "IDLE_CHECK"


IDLE_CHECK: Final = _IdleCheck()


class Sleeper(Protocol):
    """An actor that may sleep: its task ends when idle, its state stays, and its inbox wakes
    it (starts a new task) when a message arrives. (A :class:`~._unit.UnitActor`: the fast
    reads of ``_reads.py`` read it through :attr:`Inbox.sleeper`.)"""

    def wake(self) -> None:
        """Start the actor's task (synchronously: ``nursery.start_soon``). Raises
        :class:`CoordinatorClosed` if the coordinator has stopped."""
        ...

    def moved_by(self, unit: str, state: Published) -> bool:
        """Whether ``unit``'s newly posted ``state`` could change what the actor answers or
        publishes; when not, :meth:`Inbox.post_state` keeps it without waking the actor."""
        ...

    def takes_now(self, request: object) -> bool:
        """Asleep (nothing queued, no task), handle ``request`` at once in the sender's turn,
        as the task would first thing, and stay asleep: True if it did; False to be woken
        with it as usual."""
        ...

    def settles_now(self) -> bool:
        """Whether the actor, between messages (its task waiting to receive, or asleep), takes
        posted states in the poster's turn (``_settling.py``): True if it has queued itself to;
        False to be woken with a :data:`POKE` as usual."""
        ...


class Inbox(Generic[M]):
    """The address of an actor: a :class:`~._unit.UnitActor` or the
    :class:`~._registry.RegistryActor` (which keeps every unit's latest state this way).

    Two ways in:

    * :meth:`send` / :meth:`send_nowait` — requests, in order, through a bounded memory channel.
    * :meth:`post_state` — a unit pushing its new state (to its dependents and the registry). Status is state, so each
      dependency has one slot that keeps only the latest value (coalescing); posting never
      blocks and never fails, which is what lets a unit notify any number of dependents without
      ever awaiting another actor. The actor is woken by a single queued :data:`POKE`; if the
      channel is full the poke is skipped — the actor reads the slots before every message. An
      actor between messages settles the state in the poster's turn instead
      (:meth:`Sleeper.settles_now`).

    Asleep (unit actors only, see :meth:`sleep`): the actor has no task and no channel;
    anything sent or posted wakes it first. Nobody else can tell it slept.

    Reads: a request that only reads state is answered at once, in the sender's task, when the
    actor is :attr:`quiet` (``_reads.read_quietly``: the rules are in ``_reads.py``).
    """

    __slots__ = (
        "_size", "_send", "receiver", "states", "_poked", "sleeper", "_closed", "touched",
    )

    def __init__(self, size: int = UNIT_INBOX_SIZE, sleeper: Sleeper | None = None) -> None:
        self._size = size
        #: The actor behind this inbox if it may sleep (None: the registry's, always awake).
        self.sleeper = sleeper
        self._closed = False
        self._send: trio.MemorySendChannel[M | _Poke] | None = None
        self.receiver: trio.MemoryReceiveChannel[M | _Poke] | None = None
        if sleeper is None:
            self._open()
        #: Latest state posted by each dependency, not yet read by the actor.
        self.states: dict[str, Published] = {}
        self._poked = False
        #: Set by the actor on each message; the registry's idle sweep clears it.
        self.touched = False

    def _open(self) -> trio.MemorySendChannel[M | _Poke]:
        self._send, self.receiver = trio.open_memory_channel["M | _Poke"](self._size)
        return self._send

    def _awake(self) -> trio.MemorySendChannel[M | _Poke]:
        """The send channel, waking the actor first if it sleeps."""
        send = self._send
        if send is not None:
            return send
        if self._closed or self.sleeper is None:
            raise CoordinatorClosed()
        send = self._open()
        try:
            self.sleeper.wake()
        except CoordinatorClosed:
            self._send = self.receiver = None
            self._closed = True
            raise
        return send

    @property
    def asleep(self) -> bool:
        return self._send is None and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def quiet(self) -> bool:
        """True when the actor has handled everything sent or posted to it: asleep, or awake
        with nothing queued and its task waiting to receive (a value handed straight to a
        waiting receiver leaves the buffer empty but the receiver no longer waiting). What a
        quiet read may rely on: see ``_reads.py``."""
        if self._closed or self.states:
            return False
        receiver = self.receiver
        if receiver is None:
            return True
        stats = receiver.statistics()
        return stats.current_buffer_used == 0 and stats.tasks_waiting_receive > 0

    async def send(self, request: M) -> None:
        """Queue ``request``, waiting while the inbox is full; ``CoordinatorClosed`` if the
        actor has stopped."""
        if read_quietly(self, request):
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._awake().send(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise CoordinatorClosed() from None

    async def hand(self, request: M) -> None:
        """:meth:`send` for an actor handing on several messages in one step (the registry
        linking a want's or an apply's units): queued at once while there is room, no checkpoint
        between one and the next (a send is one, which lets every other task run in between
        and wake the actors one message at a time); waits, as :meth:`send`, only when full.
        An actor asleep takes it at once instead, in the sender's turn, without waking
        (:meth:`Sleeper.takes_now`)."""
        sleeper = self.sleeper
        if sleeper is not None and self.asleep and sleeper.takes_now(request):
            return
        try:
            self.send_nowait(request)
        except trio.WouldBlock:
            await self.send(request)

    def send_nowait(self, request: M) -> None:
        """Queue ``request`` if there is room: ``trio.WouldBlock`` if full, ``CoordinatorClosed``
        if the actor has stopped."""
        if read_quietly(self, request):
            return
        try:
            self._awake().send_nowait(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise CoordinatorClosed() from None

    def close(self) -> None:
        """No more requests: the actor's loop ends once it has read what is queued."""
        if self._send is None:
            self._closed = True
        else:
            self._send.close()

    def post_state(self, unit: str, state: Published) -> None:
        """Record ``state`` as the latest of ``unit`` and wake the actor — or let it settle the
        state in the poster's turn if it is between messages (:meth:`Sleeper.settles_now`) —,
        unless the actor says the state changes nothing it answers or publishes
        (:meth:`Sleeper.moved_by`): then it reads the state before its next message, and until
        then no read skips it (``states`` is not empty: see ``_reads.py``). Never blocks."""
        self.states[unit] = state
        if self._poked:
            return
        sleeper = self.sleeper
        if sleeper is None:
            self.poke()
            return
        moved = sleeper.moved_by(unit, state)
        # asleep, it reads even a state that moves nothing at once (it has no idle check to
        # read it at, and an unread state would send every read of it through a new task)
        if (moved or self.asleep) and sleeper.settles_now():
            self._poked = True  # (until it takes the states: as for a POKE)
        elif moved:
            self.poke()

    def poke(self) -> None:
        """Wake the actor to read its posted states (once: until it takes them)."""
        try:
            self._awake().send_nowait(POKE)
        except trio.WouldBlock:
            return  # the actor is busy with a full inbox and reads the slots before each message
        except (trio.BrokenResourceError, trio.ClosedResourceError, CoordinatorClosed):
            return  # the actor has stopped (or is stopping); nothing to tell
        self._poked = True

    def check_idle(self) -> None:
        """For the registry's sweep: ask the actor to sleep if it is idle (skipped if full)."""
        try:
            self._awake().send_nowait(IDLE_CHECK)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError,
                CoordinatorClosed):
            pass

    def sleep(self) -> bool:
        """For the actor, idle: drop the channel if nothing is queued or posted, and return True
        (its task should then end). False if something is waiting to be read."""
        receiver = self.receiver
        if receiver is None or self.states or receiver.statistics().current_buffer_used:
            return False
        assert self._send is not None
        self._send.close()
        receiver.close()
        self._send = self.receiver = None
        return True

    def drain_and_close(self, answer: Callable[[object], None]) -> None:
        """For the actor, stopping: hand each queued request to ``answer`` (so no caller is left
        waiting), then close; later sends raise :class:`CoordinatorClosed`. Synchronous, so
        nothing can slip in between."""
        receiver = self.receiver
        self._closed = True
        if receiver is None:
            return
        while True:
            try:
                answer(receiver.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        receiver.close()

    def take_states(self, request: object) -> dict[str, Published]:
        """For the actor, on each message: the states posted since the last call (and clears them)."""
        if request is POKE:
            self._poked = False
        states = self.states
        if states:
            self.states = {}
        return states

"""An actor's inbox: a bounded FIFO of requests plus one latest-state slot per unit that posts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Generic, TypeVar

import trio

from ._errors import CoordinatorClosed

if TYPE_CHECKING:
    from ._messages import Published

__all__ = ["POKE", "Inbox", "UNIT_INBOX_SIZE"]

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


class Inbox(Generic[M]):
    """The address of an actor: a :class:`~._unit.UnitActor` or the
    :class:`~._registry.RegistryActor` (which keeps every unit's latest state this way).

    Two ways in:

    * :meth:`send` / :meth:`send_nowait` — requests, in order, through a bounded memory channel.
    * :meth:`post_state` — a unit pushing its new state (to its dependents and the registry). Status is state, so each
      dependency has one slot that keeps only the latest value (coalescing); posting never
      blocks and never fails, which is what lets a unit notify any number of dependents without
      ever awaiting another actor. The actor is woken by a single queued :data:`POKE`; if the
      channel is full the poke is skipped — the actor reads the slots before every message.
    """

    __slots__ = ("_send", "receiver", "states", "_poked")

    def __init__(self, size: int = UNIT_INBOX_SIZE) -> None:
        self._send, self.receiver = trio.open_memory_channel["M | _Poke"](size)
        #: Latest state posted by each dependency, not yet read by the actor.
        self.states: dict[str, Published] = {}
        self._poked = False

    async def send(self, request: M) -> None:
        """Queue ``request``, waiting while the inbox is full; ``CoordinatorClosed`` if the
        actor has stopped."""
        try:
            await self._send.send(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise CoordinatorClosed() from None

    def send_nowait(self, request: M) -> None:
        """Queue ``request`` if there is room: ``trio.WouldBlock`` if full, ``CoordinatorClosed``
        if the actor has stopped."""
        try:
            self._send.send_nowait(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise CoordinatorClosed() from None

    def close(self) -> None:
        """No more requests: the actor's loop ends once it has read what is queued."""
        self._send.close()

    def post_state(self, unit: str, state: Published) -> None:
        """Record ``state`` as the latest of ``unit`` and wake the actor. Never blocks."""
        self.states[unit] = state
        if not self._poked:
            try:
                self._send.send_nowait(POKE)
            except trio.WouldBlock:
                return  # the actor is busy with a full inbox and reads the slots before each message
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the actor has stopped (or is stopping); nothing to tell
            self._poked = True

    def drain_and_close(self, answer: Callable[[object], None]) -> None:
        """For the actor, stopping: hand each queued request to ``answer`` (so no caller is left
        waiting), then close; later sends raise :class:`CoordinatorClosed`. Synchronous, so
        nothing can slip in between."""
        while True:
            try:
                answer(self.receiver.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        self.receiver.close()

    def take_states(self, request: object) -> dict[str, Published]:
        """For the actor, on each message: the states posted since the last call (and clears them)."""
        if request is POKE:
            self._poked = False
        states = self.states
        if states:
            self.states = {}
        return states

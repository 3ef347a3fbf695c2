"""A unit actor's inbox: a bounded FIFO of requests plus one latest-state slot per dependency."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

from ._errors import CoordinatorClosed

if TYPE_CHECKING:
    from ._messages import Published, UnitRequest

__all__ = ["POKE", "Inbox", "UNIT_INBOX_SIZE"]

#: Requests buffered per unit before senders wait (senders are the registry and callers, never
#: another unit, so waiting cannot deadlock).
UNIT_INBOX_SIZE: Final = 64


class _Poke:
    """Wakes the actor to read the state slots; carries nothing."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "POKE"


POKE: Final = _Poke()


class Inbox:
    """The address of one :class:`~._unit.UnitActor`.

    Two ways in:

    * :meth:`send` / :meth:`send_nowait` — requests, in order, through a bounded memory channel.
    * :meth:`post_state` — a dependency pushing its new state. Status is state, so each
      dependency has one slot that keeps only the latest value (coalescing); posting never
      blocks and never fails, which is what lets a unit notify any number of dependents without
      ever awaiting another actor. The actor is woken by a single queued :data:`POKE`; if the
      channel is full the poke is skipped — the actor reads the slots before every message.
    """

    __slots__ = ("_send", "receiver", "states", "_poked")

    def __init__(self, size: int = UNIT_INBOX_SIZE) -> None:
        self._send, self.receiver = trio.open_memory_channel["UnitRequest | _Poke"](size)
        #: Latest state posted by each dependency, not yet read by the actor.
        self.states: dict[str, Published] = {}
        self._poked = False

    async def send(self, request: UnitRequest) -> None:
        """Queue ``request``, waiting while the inbox is full; ``CoordinatorClosed`` if the
        actor has stopped."""
        try:
            await self._send.send(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise CoordinatorClosed() from None

    def post_state(self, dependency: str, state: Published) -> None:
        """Record ``state`` as the latest of ``dependency`` and wake the actor. Never blocks."""
        self.states[dependency] = state
        if not self._poked:
            try:
                self._send.send_nowait(POKE)
            except trio.WouldBlock:
                return  # the actor is busy with a full inbox and reads the slots before each message
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the actor has stopped; nothing to tell
            self._poked = True

    def take_states(self, request: object) -> dict[str, Published]:
        """For the actor, on each message: the states posted since the last call (and clears them)."""
        if request is POKE:
            self._poked = False
        states = self.states
        if states:
            self.states = {}
        return states

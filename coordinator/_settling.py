"""Posted states settled in the poster's turn, not by waking each dependent's task.

A unit that settles a new state posts it to every dependent (``Inbox.post_state``). A dependent
whose task waits for its next message, or that is asleep, is between messages: nothing of it
runs, nothing is half done. Reading the posted state and settling it then, synchronously in
the poster's turn, is what its own task would do with the POKE first thing when it ran — the
state, the answers and the posts are the same — without a task switch (or, asleep, a new
task) per dependent. A completion that releases 5,000 waiters is then one turn of Trio, not
5,000.

:class:`Settling` keeps the order ARCHITECTURE §3 promises: a unit posts its new state to
*all* its dependents before any of them settles (they are queued while it posts, and settled
when its outermost post ends), and each of those does the same in turn; so nobody answered
for a change finds a dependent that was not told of it. The queue is a worklist, not
recursion: a chain of 10,000 units is settled one after the other at one stack depth.
"""

from __future__ import annotations

import collections
from typing import Protocol

__all__ = ["Settling"]


class _Settles(Protocol):
    def settle_posted(self) -> None:
        """Read the states posted to it and settle them (it is between messages)."""
        ...

    def poke(self) -> None:
        """Have its task read them instead (the fallback: see :meth:`Settling.drain`)."""
        ...


class Settling:
    """The coordinator's queue of actors to settle in the current turn (one per coordinator;
    Trio thread only)."""

    __slots__ = ("_busy", "_queue")

    def __init__(self) -> None:
        self._queue: collections.deque[_Settles] = collections.deque()
        #: True while a post is being made or the queue drained: what is added waits its turn.
        self._busy = False

    def add(self, actor: _Settles) -> None:
        """``actor`` has states to settle: now if nothing is posting or settling, else once
        that is done (see :meth:`posting`)."""
        self._queue.append(actor)
        if not self._busy:
            self._busy = True
            self.drain()

    def posting(self) -> bool:
        """Before a unit posts to its dependents: True if it is the outermost post, which then
        calls :meth:`drain` when done; False inside one (its dependents wait their turn)."""
        if self._busy:
            return False
        self._busy = True
        return True

    def drain(self) -> None:
        """Settle everything queued, and what that queues, in order. If one raises, the rest are
        left to their tasks (poked), so that no posted state is stranded."""
        queue = self._queue
        try:
            while queue:
                queue.popleft().settle_posted()
        except BaseException:
            while queue:
                queue.popleft().poke()
            raise
        finally:
            self._busy = False

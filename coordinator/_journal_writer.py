"""Durable acknowledgements: the Trio side of the journal (``_journal.py`` is the storage).

Actors hand every accepted mutation to :meth:`JournalWriter.record` (synchronous, no I/O) and
their caller's answer to :meth:`JournalWriter.then` instead of answering at once. One writer
task flushes what has accumulated with one ``fdatasync`` in a worker thread (group commit), then
releases the answers of everything that batch made durable, in order. A caller is therefore
told "done" only once its mutation would survive ``kill -9`` or a power cut.

What is *not* delayed: the state change itself and what follows from it (dependents are told,
``ready()`` waiters woken, ``info`` shows it). A reader may see a mutation a moment before it is
durable; if the coordinator dies in that moment, the mutation is lost — and so is its
acknowledgement, which was never sent.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import trio

from ._api import Event
from ._history import History
from ._journal import Journal, Record, UnitRecord, apply

__all__ = ["JournalWriter", "open_journal"]


async def open_journal(path: Path) -> tuple[Journal, dict[str, UnitRecord]]:
    """Open (create, repair) the journal at ``path`` in a worker thread: it and the state."""
    return await trio.to_thread.run_sync(Journal.open, str(path))


class JournalWriter:
    """Group commit for one :class:`Journal`; run :meth:`run` as a task, use the rest from
    actors (all in the Trio thread)."""

    __slots__ = ("_journal", "_state", "_history", "_waiting", "_work", "_limiter")

    def __init__(
        self, journal: Journal, state: dict[str, UnitRecord], history: History | None = None
    ) -> None:
        self._journal = journal
        #: The journaled state, kept up to date record by record, and the kept history (the
        #: hub appends to it as it hands us each event): what compaction writes.
        self._state = state
        self._history = history
        self._waiting: collections.deque[tuple[int, Callable[[], object]]] = collections.deque()
        self._work = trio.Event()
        self._limiter = trio.CapacityLimiter(1)

    def record(self, record: Record) -> None:
        """An accepted mutation, in the order it was applied (synchronous, no I/O)."""
        self._journal.append(record)
        apply(self._state, record)
        self._work.set()

    def record_event(self, event: Event) -> None:
        """An event of the history, in seq order (synchronous, no I/O). Nobody waits for it:
        it becomes durable with the next flush, with the mutation that made it."""
        self._journal.append(event)
        self._work.set()

    def then(self, answer: Callable[[], object]) -> None:
        """Call ``answer()`` once everything recorded so far is durable."""
        self._waiting.append((self._journal.appended, answer))
        self._work.set()

    async def run(self) -> None:
        """Flush, answer, compact; until cancelled. On the way out, one last flush (shielded,
        bounded) so that answers already given stay true and the next start replays fast."""
        journal = self._journal
        try:
            while True:
                await self._work.wait()
                self._work = trio.Event()
                if journal.pending:
                    await trio.to_thread.run_sync(journal.flush, limiter=self._limiter)
                self._answer_durable()
                if journal.should_compact():
                    snapshot, through = dict(self._state), journal.appended
                    history = self._history
                    # copied here (fast), made into events in the worker thread: building
                    # 100,000 Events took 164 ms, which the actors would have waited for
                    events, last = (history.frozen(), history.last) if history else ((), 0)
                    await trio.to_thread.run_sync(
                        journal.compact, snapshot, through, events, last, limiter=self._limiter
                    )
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                if journal.pending:
                    await trio.to_thread.run_sync(journal.flush, limiter=self._limiter)
                self._answer_durable()
            journal.close()

    def _answer_durable(self) -> None:
        durable = self._journal.durable
        waiting = self._waiting
        while waiting and waiting[0][0] <= durable:
            waiting.popleft()[1]()

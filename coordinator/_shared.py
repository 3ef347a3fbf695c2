"""The seam between the actors and a store shared by several coordinators (etcd; issue 15).

With the local journal, an actor applies a mutation, then records it (write-behind: one writer,
nothing can refuse it) and answers once durable. With a shared store other coordinators write
too, so the order is **decide, commit, apply**: the actor decides on its state as always
(``UnitState`` is the one copy of the semantics), commits the unit's new record with a compare
on the revision its copy came from, and keeps the change only if the store took it; refused
(:class:`StoreConflict`), it rolls back, reads the record the store has, takes it, and decides
again. Edges are committed by the registry (the cycle check runs on its graph, and the commit
compares the graph's revision: two coordinators adding the two halves of a cycle at once cannot
both succeed). Every coordinator's mirror feeds the store's changes back to the registry, which
routes them to the actors (:class:`~._messages.RemoteChange`, :class:`~._messages.Adopt`).

:class:`SharedStore` is what the core needs; ``coordinator/store/_etcd_store.py`` implements it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, Protocol

from ._api import Event
from ._journal import UnitRecord
from ._status import Status

__all__ = ["CONFLICT_RETRIES", "SEQ_PER_REVISION", "Numbering", "SharedStore", "StoreConflict",
           "record_events"]

#: With a shared store an event's ``seq`` is the store's revision that made it times this,
#: plus its place among that revision's events (an ``apply`` writes many units in one
#: revision, a ``want`` a registration and its edges): ``seq // SEQ_PER_REVISION`` is the
#: revision, and every coordinator of the workspace numbers the same event the same way.
SEQ_PER_REVISION: Final = 1 << 20

#: How many times a mutation is decided again after the store refused it (someone changed the
#: unit in between) before the caller gets ``StoreUnavailable``.
CONFLICT_RETRIES: Final = 20


def record_events(
    unit: str, old: UnitRecord | None, new: UnitRecord, seq: Callable[[], int],
    clock: Callable[[], float],
) -> list[Event]:
    """The events a unit's record changing from ``old`` (None: none stored) to ``new`` makes —
    its status change, then each edge added, by dependency — numbered by ``seq()`` and stamped
    with the record's time (``clock()`` if it has none). The same on every coordinator."""
    at = new.time or clock()
    status = old.status if old is not None else Status.NOT_REGISTERED
    reason = old.reason if old is not None else ""
    events = []
    if new.status is not status or new.reason != reason:
        events.append(Event(seq=seq(), time=at, unit=unit, old=status, new=new.status,
                            reason=new.reason))
    had = old.requirements if old is not None else {}
    for dependency, required in sorted(new.requirements.items()):
        if had.get(dependency) is not required:
            events.append(Event(seq=seq(), time=at, unit=unit, old=new.status, new=new.status,
                                depends_on=dependency, requires=required))
    return events


class Numbering:
    """``seq`` for the events of store revisions taken in order (see
    :data:`SEQ_PER_REVISION`): ``Numbering().at(revision)`` for each event."""

    __slots__ = ("_revision", "_place")

    def __init__(self) -> None:
        self._revision = self._place = 0

    def at(self, revision: int) -> int:
        if revision != self._revision:
            self._revision, self._place = revision, 0
        else:
            self._place += 1
        return revision * SEQ_PER_REVISION + self._place


class StoreConflict(Exception):
    """The store refused a commit: what it compared changed since. ``revision``: the store's
    revision when it refused (catch up to it before deciding again)."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"the store changed since (revision {revision})")
        self.revision = revision


class SharedStore(Protocol):
    """A store several coordinators share. Every method raises
    :class:`~._errors.StoreUnavailable` when the store cannot be reached or did not confirm."""

    member_id: str

    async def commit_unit(
        self, name: str, record: UnitRecord, revision: int, *, hold: bool | None
    ) -> int:
        """Write ``name``'s record if the stored one is still at ``revision`` (0: none);
        ``hold`` True: this coordinator now holds it (the hold goes with its lease), False:
        any hold on it ends. The commit's revision; :class:`StoreConflict` if refused."""
        ...

    async def read_unit(self, name: str) -> tuple[UnitRecord | None, int]:
        """The stored record of ``name`` and its revision (None, 0: none), read no older than
        the call."""
        ...

    async def commit_edges(
        self, writes: Mapping[str, UnitRecord], revisions: Mapping[str, int],
        graph_revision: int,
    ) -> int:
        """Write units' records with new edges if neither they nor the graph changed since
        (``revisions``, ``graph_revision``); the commit's revision, or :class:`StoreConflict`."""
        ...

    async def wait_applied(self, revision: int) -> None:
        """Return once the mirror has handed the registry every change up to ``revision``."""
        ...

    async def synced(self) -> None:
        """Return once the mirror has handed the registry every change made before the call
        (a read then answers from a state no older than the call)."""
        ...

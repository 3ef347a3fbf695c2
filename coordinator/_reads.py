"""The two reads that skip the actors, and exactly when each gives the actor's own answer.

A request normally goes caller → registry's inbox → registry → unit's inbox → unit actor, and
its answer comes back: two task switches. Two shortcuts skip them for requests that only read.
Both rest on three facts:

(a) a unit's state changes only in its actor, while it handles a message (a request, or the
    states its dependencies posted, read before each message) — taken from its inbox by its
    task or, while it is between messages, handed to it in the sender's turn (posted states:
    ``_settling.py``; the registry's link messages to a sleeping actor: ``takes_now``) — one
    message at a time, in order, with no checkpoint between taking a message and settling it;
(b) a unit posts a new state to its dependents and the registry when it settles, before it
    answers the caller whose request changed it (with a journal, later still: once durable);
(c) the actors and the callers of the coordinator all run in one Trio thread.

**1. The quiet read** (:func:`read_now` for a caller's request; :func:`read_quietly` for one
sent to a unit's inbox — the registry handing a request on, ``list()`` asking units directly).
A request is answered at once, in the sender's task, when

* it only reads: ``Info``, ``Inspect``, ``Ready`` of a unit that is ready now (nothing to
  park) (:func:`answer_read`); for a unit with no actor, whatever :func:`answer_absent`
  answers from the state of a unit nobody has mentioned;
* and nothing that could change its answer is ahead of it: for :func:`read_now`, the
  registry is quiet — ``LocalCoordinator``'s overflow queue is empty and the registry's
  :attr:`Inbox.quiet` holds: nothing queued, nothing handed to its task, its task waiting to
  receive (so not in the middle of handing a ``want`` to units) — and so is the unit's
  actor: asleep, or awake with nothing queued or handed to it, no posted state unread, and
  its task waiting to receive. A value handed straight to a waiting receiver leaves the
  buffer empty but the receiver no longer waiting: it counts as queued.

Then by (a) the unit's state now is the state its actor would have when the request reached
it, so the answer is the one it would give, and by (c) nothing runs between the test and the
answer. Order holds: whatever was sent before is done (so in the answer) or still queued (so
not quiet). An RPC capability's calls are submitted in arrival order, so this keeps E-order.
An ``Info`` answered this way also primes the published snapshot.

**2. The published snapshot** (:func:`published_info`, from ANY thread: the RPC server's KJ
thread answers ``info`` with it without entering Trio). ``UnitActor.snapshot`` is the info
last answered by a quiet read, an immutable value. It is stale, and taken as absent, once
anything may have changed the answer:

* the actor takes any message: it clears ``snapshot`` first, before the message changes
  anything and so before its caller is answered;
* a dependency posted a state not yet read (``inbox.states`` not empty): by (b) that is so
  before anybody is told of the dependency's change;
* the inbox is closed (the coordinator has stopped).

The reader tests ``states`` *before* it reads ``snapshot``, and the actor clears ``snapshot``
*before* it empties ``states``: whenever the two reads fall, a state posted before the first
is seen, or the snapshot was cleared (or replaced by one taken after it). Each is one
reference read under the GIL; no lock. So whatever a caller has been told has happened — on
this unit, or on a dependency — is in any snapshot it reads afterwards. What the snapshot
cannot see is a call still on its way into Trio: the RPC server uses it only when no earlier
call of the same capability is in flight (E-order). Blocking by a failure further up reaches a
snapshot one actor hop per message, exactly as it reaches the actor's own answer.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import TYPE_CHECKING, Final

from ._api import UnitInfo
from ._errors import NotHeld, UnitNotFound
from ._messages import (
    Complete,
    Fail,
    Hold,
    Info,
    Inspect,
    Reached,
    Ready,
    Skip,
    ToUnit,
    UnitRequest,
    UnitStatistics,
)
from ._status import Status

if TYPE_CHECKING:
    from ._inbox import Inbox
    from ._registry import RegistryActor
    from ._unit import UnitActor

__all__ = ["answer_absent", "answer_read", "published_info", "read_now", "read_quietly"]


def read_now(
    registry_inbox: Inbox[object], overflow: Sized, registry: RegistryActor, message: object
) -> bool:
    """Answer a caller's ``message`` at once if it is a read of one unit and nothing is ahead of
    it on its way, in the registry or in the unit's actor (see 1. above); False: send it."""
    if not isinstance(message, ToUnit) or overflow:
        return False
    request, inbox = message.request, registry.lookup(message.unit)
    if inbox is None:
        return registry_inbox.quiet and answer_absent(message.unit, request)
    # as read_quietly (inlined: this runs for every request), after the registry's own test
    if type(request) not in _READS or not registry_inbox.quiet:
        return False
    actor: UnitActor | None = inbox.sleeper  # type: ignore[assignment]
    return actor is not None and inbox.quiet and answer_read(actor, request)


def read_quietly(inbox: Inbox[UnitRequest], request: object) -> bool:
    """Answer ``request`` at once if it only reads and the unit's actor is quiet."""
    if type(request) not in _READS:  # first: cheaper than asking whether the actor is quiet
        return False
    actor: UnitActor | None = inbox.sleeper  # type: ignore[assignment]
    return actor is not None and inbox.quiet and answer_read(actor, request)


#: The requests :func:`answer_read` may answer (``Ready`` only of a unit that is ready).
_READS: Final = frozenset({Info, Inspect, Ready})


def answer_read(actor: UnitActor, request: object) -> bool:
    """Answer ``request`` from ``actor``'s state if it only reads it (the actor is quiet)."""
    match request:
        case Info(reply):
            actor.snapshot = info = actor.state.info()
            reply.ok(info)
        case Inspect(reply):
            reply.ok(actor.statistics())
        case Ready(reply) if actor.state.ready:
            reply.ok(actor.state.info())
        case _:
            return False
    return True


def answer_absent(name: str, request: object) -> bool:
    """Answer ``request`` for a unit that has no actor (never mentioned) if that needs none.

    False when the request needs an actor (it registers, parks a waiter or links).
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


def published_info(registry: RegistryActor, name: str) -> UnitInfo | None:
    """From ANY thread: ``name``'s current info if its actor has published one that is not
    stale (see 2. above), else None — then ask through the actors."""
    inbox = registry.lookup(name)
    if inbox is None:
        return None
    actor: UnitActor | None = inbox.sleeper  # type: ignore[assignment]
    if actor is None or inbox.closed or inbox.states:  # states before snapshot: see above
        return None
    return actor.snapshot

"""The capabilities a client holds for one unit: ``Unit``, and the ``Lease`` of a hold (KJ thread).

Every call enters Trio through the portal in the order it arrived (E-order). A connection's
parked ``ready``/``reached`` calls are counted by its :class:`Waiters`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import outcome

from .. import _operations as operations
from .._api import UnitInfo
from .._coordinator import LocalCoordinator, LocalUnit
from .._errors import InvalidArgument, NotReady, Overloaded, UnitsyncError
from .._lease import HOLDER_GONE
from .._names import check_dependency_count
from .._operations import Operation
from .._reply import Reply
from .._status import Status
from ._convert import (
    set_info,
    read_names,
    read_reason,
    status_from_wire,
    to_wire_error,
    wire_errors,
)
from ._bridge import Answer, TrioPortal
from ._schema import schema

__all__ = ["LeaseServer", "Peer", "UnitServer", "Waiters"]

log = logging.getLogger("unitsync.server")

S = schema()
T = TypeVar("T")


class Waiters:
    """The ``ready``/``reached`` calls parked on one connection (KJ thread only)."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.count = 0
        self.limit = limit

    def take(self) -> None:
        """Count one more parked call (the caller subtracts it from :attr:`count` when the call
        ends), or refuse it: :class:`Overloaded`."""
        if self.count >= self.limit:
            raise Overloaded(f"{self.count} calls already wait on this connection (the limit)")
        self.count += 1


class Peer:
    """What the server knows of one connection's client (KJ thread only): the schema revision
    it speaks (1 until it says ``hello``) and its parked calls."""

    __slots__ = ("revision", "waiters")

    def __init__(self, max_waiters: int) -> None:
        self.revision = 1
        self.waiters = Waiters(max_waiters)


def answers(method: Callable[[Any, Any], Answer]) -> Callable[[Any, Any], Answer]:
    """For a method that returns an :class:`Answer`: what it raises before handing its call to
    Trio (bad parameters, too many waiters) answers the call, as a wire error (see
    :func:`~._convert.wire_errors`)."""

    @functools.wraps(method)
    def wrapper(self: Any, context: Any) -> Answer:
        try:
            return method(self, context)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            return self._portal.answered(to_wire_error(exc))

    return wrapper


class UnitServer(S.Unit.Server):  # type: ignore[name-defined,misc]
    """A capability for one unit. Calls enter Trio in the order they arrive (E-order): each
    is handed to the registry's inbox synchronously, in arrival order, by the portal."""

    def __init__(
        self, portal: TrioPortal, coord: LocalCoordinator, unit: LocalUnit, peer: Peer
    ) -> None:
        self._portal = portal
        self._coord = coord
        self._unit = unit
        self._peer = peer
        self._waiters = peer.waiters
        self._in_flight = 0  # calls of this capability handed to Trio and not yet answered

    def _call(
        self, operation: Operation[T], fill: Callable[[T], None] | None = None, *,
        parked: bool = False,
    ) -> Answer:
        """``operation`` handed to the coordinator in Trio; see :meth:`_answer`."""
        coord = self._coord
        return self._answer(
            lambda on_answer: coord.submit(operation, on_answer), fill, parked=parked
        )

    def _answer(
        self,
        start: Callable[[Callable[[outcome.Outcome[T]], None]], Any],
        fill: Callable[[T], None] | None = None,
        *,
        parked: bool = False,
    ) -> Answer:
        """The call, begun by ``start(on_answer)`` in Trio (:meth:`TrioPortal.answer`: handed
        over at once, in arrival order, and answered with no asyncio task). When Trio answers,
        ``fill(value)`` writes the results on the KJ thread; an error is sent as a wire error.
        ``parked``: a waiting call, taken from this connection's :class:`Waiters` by the caller
        and given back here when it ends."""
        waiters = self._waiters if parked else None
        self._in_flight += 1

        def finish(result: outcome.Outcome[T] | None) -> None:  # KJ thread
            self._in_flight -= 1
            if waiters is not None:
                waiters.count -= 1
            if result is None:  # the caller gave up
                return
            try:
                value = result.unwrap()
                if fill is not None:
                    fill(value)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                raise to_wire_error(exc) from None

        return self._portal.answer(start, finish)

    def _info_filler(self, context: Any) -> Callable[[UnitInfo], None]:
        peer = self._peer
        return lambda info: set_info(context.results, info, peer.revision)

    # The methods take pycapnp's ``context`` (the ``*_context`` form; for ``name(self,
    # **params)`` pycapnp wraps each call in one more coroutine that reads every parameter into
    # a dict first) and are plain functions returning an Answer: each call is handed to Trio
    # while pycapnp dispatches it, so calls keep their order, and costs no asyncio task
    # (stress/README.md, "Fan-out and the bridge").

    @answers
    def info_context(self, context: Any) -> Answer:
        # Answered here on the KJ thread when the unit's actor has published its current info
        # and no earlier call of this capability is still in Trio (E-order); else via Trio.
        fill = self._info_filler(context)
        info = None if self._in_flight else self._coord.published_info(self._unit.name)
        if info is None:
            return self._call(operations.info(self._unit.name), fill)
        fill(info)
        return self._portal.answered()

    @answers
    def ready_context(self, context: Any) -> Answer:
        self._waiters.take()
        return self._call(
            operations.ready(self._unit.name), self._info_filler(context), parked=True
        )

    @answers
    def want_context(self, context: Any) -> Answer:
        params = context.params
        dependencies, requires = params.dependencies, params.requires
        required = status_from_wire(requires)
        if required is Status.NOT_REGISTERED:  # the enum's default: the field was left out
            required = Status.COMPLETED
        check_dependency_count(len(dependencies))  # before decoding thousands of names
        names = read_names(lambda: list(dependencies))
        return self._call(operations.want(self._unit.name, names, required))

    @answers
    def start_context(self, context: Any) -> Answer:
        return self._call(operations.start(self._unit.name))

    @answers
    def complete_context(self, context: Any) -> Answer:
        return self._call(operations.complete(self._unit.name))

    @answers
    def fail_context(self, context: Any) -> Answer:
        reason = read_reason(lambda: context.params.reason)
        return self._call(operations.fail(self._unit.name, reason))

    @answers
    def skip_context(self, context: Any) -> Answer:
        reason = read_reason(lambda: context.params.reason)
        return self._call(operations.skip(self._unit.name, reason))

    @answers
    def register_context(self, context: Any) -> Answer:
        return self._call(operations.register(self._unit.name))

    @answers
    def reached_context(self, context: Any) -> Answer:
        status = status_from_wire(context.params.status)
        self._waiters.take()
        return self._call(operations.reached(self._unit.name, status), parked=True)

    @answers
    def hold_context(self, context: Any) -> Answer:
        portal, coord, name = self._portal, self._coord, self._unit.name
        params = context.params
        resume, wait = bool(params.resume), bool(params.wait)
        if resume and wait:
            raise InvalidArgument("hold: resume takes over a hold; it cannot also wait")
        pending = _PendingHold(coord, name, resume, wait)
        if wait:
            self._waiters.take()

        def fill(holder: int) -> None:
            context.results.lease = LeaseServer(portal, coord, name, holder)

        return self._answer(pending.start, fill, parked=wait)


class _PendingHold:
    """A ``hold`` between its start and its Lease capability.

    If the caller gives up (a capnp Finish, a dropped connection) after the start has taken
    effect but before the Lease exists, nobody holds the unit: it must fail as if the lease had
    been dropped. So the start's answer is never abandoned; whichever comes second — the start
    succeeding, or the caller giving up — fails the unit with :data:`HOLDER_GONE`. Both run in
    the Trio thread, in order. (``python -m stress churn`` found this window: stress/README.md, "Measured history".)

    ``wait`` (revision 4): a ``ready`` first, parked as any other (given up with the caller),
    and the hold taken in its answer — in the Trio thread, without the round trip to the client
    and back that ``ready`` then ``hold`` cost (``unitsync up``'s every start). Refused with
    NotReady (an edge added in between), it waits again.
    """

    __slots__ = ("_coord", "_unit", "_resume", "_wait", "_holder", "_gone", "_on_answer",
                 "_waiting")

    def __init__(
        self, coord: LocalCoordinator, unit: str, resume: bool, wait: bool = False
    ) -> None:
        self._coord = coord
        self._unit = unit
        self._resume = resume
        self._wait = wait
        self._holder: int | None = None  # the holder token, once the start took effect
        self._gone = False
        self._on_answer: Any = None
        self._waiting: Reply[Any] | None = None  # the parked ready of a waiting hold

    def start(self, on_answer: Any) -> _PendingHold:  # Trio thread, via TrioPortal.answer
        self._on_answer = on_answer
        if self._wait:
            self._waiting = self._coord.submit(operations.ready(self._unit), self._ready)
        else:
            self._coord.submit(operations.hold(self._unit, resume=self._resume), self._answered)
        return self

    def _ready(self, result: outcome.Outcome[Any]) -> None:  # in the answering actor's task
        if isinstance(result, outcome.Error):  # blocked (dependency-failed), closed ...
            self._on_answer(result)
            return
        self._submit_from_actor(operations.hold(self._unit), self._answered)

    def _answered(self, result: outcome.Outcome[Any]) -> None:
        if isinstance(result, outcome.Value):
            self._holder = result.value
            if self._gone:
                _release(self._coord, self._unit, result.value)
        elif self._wait and isinstance(result.error, NotReady) and not self._gone:
            self._submit_from_actor(operations.ready(self._unit), self._ready, waiting=True)
            return
        self._on_answer(result)

    def _submit_from_actor(self, operation: Operation[Any], answer: Any, *,
                           waiting: bool = False) -> None:
        """The next step of a waiting hold, submitted from an actor's answer: a refusal to
        take it (the coordinator closing, too much queued) is this call's answer, not an
        exception in the actor."""
        try:
            reply = self._coord.submit(operation, answer)
        except UnitsyncError as error:
            self._on_answer(outcome.Error(error))
            return
        if waiting:
            self._waiting = reply

    def abandon(self) -> None:  # Trio thread: the caller gave up
        self._gone = True
        if self._holder is not None:
            _release(self._coord, self._unit, self._holder)
        elif self._waiting is not None:
            self._waiting.abandon()  # a parked ready goes; a hold in flight is never abandoned


def _release(coord: LocalCoordinator, unit: str, holder: int) -> None:
    """In the Trio thread: fail ``unit`` with :data:`HOLDER_GONE` if ``holder`` still holds it
    (nothing to do once the coordinator has shut down: it would only raise, in a callback)."""
    with contextlib.suppress(UnitsyncError):
        coord.submit(operations.release(unit, holder, HOLDER_GONE), _ignore)


def _ignore(_result: object) -> None:
    """Nobody waits for the answer of a released hold."""


class LeaseServer(S.Lease.Server):  # type: ignore[name-defined,misc]
    """The unit is started and bound to this capability: when the client drops it (or its
    connection) before ``complete``/``fail``, the unit fails with :data:`HOLDER_GONE`.

    pycapnp finalizes a server object on the KJ thread when its last reference goes (client
    release or disconnect); we act on that with :func:`weakref.finalize`.
    """

    def __init__(
        self, portal: TrioPortal, coord: LocalCoordinator, unit: str, holder: int
    ) -> None:
        self._portal = portal
        self._coord = coord
        self._unit = unit
        self._flag = [False]  # released: completed or failed through the lease
        weakref.finalize(self, _fail_abandoned, portal, coord, unit, holder, self._flag)

    async def _finish(self, operation: Operation[None]) -> None:
        coord = self._coord
        await self._portal.submit(lambda on_answer: coord.submit(operation, on_answer))
        self._flag[0] = True

    @wire_errors
    async def complete(self, _context: Any, **kwargs: Any) -> None:
        await self._finish(operations.complete(self._unit))

    @wire_errors
    async def fail_context(self, context: Any) -> None:
        reason = read_reason(lambda: context.params.reason)
        await self._finish(operations.fail(self._unit, reason))


def _fail_abandoned(
    portal: TrioPortal, coord: LocalCoordinator, unit: str, holder: int, released: list[bool]
) -> None:
    if not released[0]:
        log.info("lease on %r dropped before complete/fail: failing it", unit)
        portal.call_soon(functools.partial(_release, coord, unit, holder))

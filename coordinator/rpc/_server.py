"""The Cap'n Proto server: ``serve(coord, path)`` in Trio, the capability objects on the KJ thread."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import capnp
import outcome
import trio

from .._coordinator import LocalCoordinator, LocalUnit
from .._api import Event, UnitInfo
from .._errors import (
    InvalidArgument,
    InvalidName,
    Lagged,
    Overloaded,
    UnitsyncError,
    error_to_wire,
)
from .._lease import HOLDER_GONE
from .._names import MAX_DEPENDENCIES, validate_dependencies
from .._paths import socket_path
from .._status import Status
from .._version import __version__
from ._convert import fill_event, fill_info, status_from_wire, to_wire_error
from ._kj import TrioPortal, run_kj_thread
from ._schema import schema
from ._socket import Listener, bind_listener, peer_uid
from ._stream import DEFAULT_FRAME_TIMEOUT, open_stream

__all__ = ["REFUSED_LINGER", "ServerLimits", "serve"]

log = logging.getLogger("unitsync.server")

#: Events queued for one remote watcher before it is cut off as lagged.
REMOTE_WATCH_BUFFER = 1024


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """What one server lets its clients use; past a limit a request gets
    ``unitsync.overloaded`` and nothing changes. (Units are limited by the coordinator:
    ``open_coordinator(max_units=...)``.)"""

    #: Client connections at once. One more gets a bootstrap whose every call fails with
    #: ``unitsync.overloaded`` and is closed after :data:`REFUSED_LINGER` seconds.
    max_connections: int = 1024
    #: ``ready``/``reached`` calls parked at once per connection.
    max_waiters_per_connection: int = 1024
    #: Cap'n Proto reader limits for every incoming message: words a message may make the
    #: reader traverse (8 MiB; a ``want`` of 1,000 names of 255 bytes is ~0.3 MiB), and struct
    #: nesting depth (our schema and rpc.capnp need < 10).
    traversal_limit_words: int = 1 << 20
    nesting_limit: int = 32
    #: Seconds the rest of a Cap'n Proto frame may take once part of it has arrived; past
    #: that the connection is closed (one warning logged) as if the client had gone: its
    #: parked calls are dropped and its leases fail. Only incomplete frames are timed: a
    #: connection idle between frames (a client parked in ``ready()`` for hours) never is.
    #: ``0``: no deadline (a client stalled mid-frame holds its connection until it goes).
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT

    def __post_init__(self) -> None:
        if not 0 <= self.frame_timeout < float("inf"):
            raise ValueError(
                f"frame_timeout must be 0 (none) or a number of seconds, not {self.frame_timeout!r}"
            )


#: Seconds a connection over the limit stays open, so its client can read why.
REFUSED_LINGER = 2.0

S = schema()


def _names(read: Callable[[], Any]) -> Any:
    """``read()`` of unit names (capnp Text, decoded by pycapnp): bytes that are not UTF-8
    are :class:`InvalidName`, a clear error instead of a traceback."""
    try:
        return read()
    except UnicodeDecodeError as exc:
        raise InvalidName(_shown(exc), "is not valid UTF-8") from None


def _reason(read: Callable[[], Any]) -> str:
    """``read()`` of a failure reason: bytes that are not UTF-8 are :class:`InvalidArgument`."""
    try:
        return str(read())
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"a reason is not valid UTF-8: {_shown(exc)}") from None


def _shown(exc: UnicodeDecodeError) -> str:
    return repr(exc.object[:64]) if isinstance(exc.object, bytes) else "?"


def _wire_errors(method: Any) -> Any:
    """Raise errors as wire errors (``<code>: <message>``); see :func:`to_wire_error`."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise to_wire_error(exc) from None

    return wrapper


class UnitServer(S.Unit.Server):  # type: ignore[name-defined,misc]
    """A capability for one unit. Calls enter Trio in the order they arrive (E-order): each
    is handed to the registry's inbox synchronously, in arrival order, by the portal."""

    def __init__(
        self, portal: TrioPortal, coord: LocalCoordinator, unit: LocalUnit, waiters: _Waiters
    ) -> None:
        self._portal = portal
        self._coord = coord
        self._unit = unit
        self._waiters = waiters
        self._in_flight = 0  # calls of this capability handed to Trio and not yet answered

    async def _submit(self, operation: str, *args: Any) -> Any:
        unit = self._unit
        self._in_flight += 1
        try:
            return await self._portal.submit(
                lambda on_answer: unit.submit(operation, *args, on_answer=on_answer)
            )
        finally:
            self._in_flight -= 1

    @_wire_errors
    async def info(self, _context: Any, **kwargs: Any) -> None:
        # Answered here on the KJ thread when the unit's actor has published its current info
        # and no earlier call of this capability is still in Trio (E-order); else via Trio.
        info = None if self._in_flight else self._coord.published_info(self._unit.name)
        fill_info(_context.results.info, info or await self._submit("info"))

    @_wire_errors
    async def ready(self, _context: Any, **kwargs: Any) -> None:
        with self._waiters.one():
            fill_info(_context.results.info, await self._submit("ready"))

    @_wire_errors
    async def want(self, dependencies: Any, requires: Any, _context: Any, **kwargs: Any) -> None:
        required = status_from_wire(requires)
        if required is Status.NOT_REGISTERED:  # the enum's default: the field was left out
            required = Status.COMPLETED
        if len(dependencies) > MAX_DEPENDENCIES:  # before decoding thousands of names
            validate_dependencies(range(len(dependencies)), required)
        names = _names(lambda: list(dependencies))
        await self._submit("want", names, required)

    @_wire_errors
    async def start(self, _context: Any, **kwargs: Any) -> None:
        await self._submit("start")

    @_wire_errors
    async def complete(self, _context: Any, **kwargs: Any) -> None:
        await self._submit("complete")

    @_wire_errors
    async def fail_context(self, context: Any) -> None:
        await self._submit("fail", _reason(lambda: context.params.reason))

    @_wire_errors
    async def register(self, _context: Any, **kwargs: Any) -> None:
        await self._submit("register")

    @_wire_errors
    async def reached(self, status: Any, _context: Any, **kwargs: Any) -> None:
        with self._waiters.one():
            await self._submit("reached", status_from_wire(status))

    @_wire_errors
    async def hold(self, resume: bool, _context: Any, **kwargs: Any) -> None:
        unit = self._unit
        pending = _PendingHold(unit, bool(resume))
        self._in_flight += 1
        try:
            holder = await self._portal.submit(pending.start)
        finally:
            self._in_flight -= 1
        _context.results.lease = LeaseServer(self._portal, unit, holder)


class _PendingHold:
    """A ``hold`` between its start and its Lease capability.

    If the caller gives up (a capnp Finish, a dropped connection) after the start has taken
    effect but before the Lease exists, nobody holds the unit: it must fail as if the lease had
    been dropped. So the start's answer is never abandoned; whichever comes second — the start
    succeeding, or the caller giving up — fails the unit with :data:`HOLDER_GONE`. Both run in
    the Trio thread, in order. (Found by ``python -m stress churn``: 33 units were left started
    with no holder in a 30 s run.)
    """

    __slots__ = ("_unit", "_resume", "_holder", "_gone")

    def __init__(self, unit: LocalUnit, resume: bool) -> None:
        self._unit = unit
        self._resume = resume
        self._holder: int | None = None  # the holder token, once the start took effect
        self._gone = False

    def start(self, on_answer: Any) -> _PendingHold:  # Trio thread, via TrioPortal.submit
        def answered(result: Any) -> None:
            if isinstance(result, outcome.Value):
                self._holder = result.value
                if self._gone:
                    _fail_held(self._unit, result.value)
            on_answer(result)

        self._unit.submit("hold", self._resume, on_answer=answered)
        return self

    def abandon(self) -> None:  # Trio thread: the caller gave up
        self._gone = True
        if self._holder is not None:
            _fail_held(self._unit, self._holder)


def _fail_held(unit: LocalUnit, holder: int) -> None:
    """In the Trio thread: fail ``unit`` with :data:`HOLDER_GONE` if ``holder`` still holds it
    (nothing to do once the coordinator has shut down: it would only raise, in a callback)."""
    with contextlib.suppress(UnitsyncError):
        unit.submit("fail_held", HOLDER_GONE, holder, on_answer=lambda _result: None)


class LeaseServer(S.Lease.Server):  # type: ignore[name-defined,misc]
    """The unit is started and bound to this capability: when the client drops it (or its
    connection) before ``complete``/``fail``, the unit fails with :data:`HOLDER_GONE`.

    pycapnp finalizes a server object on the KJ thread when its last reference goes (client
    release or disconnect); we act on that with :func:`weakref.finalize`.
    """

    def __init__(self, portal: TrioPortal, unit: LocalUnit, holder: int) -> None:
        self._portal = portal
        self._unit = unit
        self._flag = [False]  # released: completed or failed through the lease
        weakref.finalize(self, _fail_abandoned, portal, unit, holder, self._flag)

    @_wire_errors
    async def complete(self, _context: Any, **kwargs: Any) -> None:
        unit = self._unit
        await self._portal.submit(lambda on_answer: unit.submit("complete", on_answer=on_answer))
        self._flag[0] = True

    @_wire_errors
    async def fail_context(self, context: Any) -> None:
        unit, reason = self._unit, _reason(lambda: context.params.reason)
        await self._portal.submit(lambda on_answer: unit.submit("fail", reason, on_answer=on_answer))
        self._flag[0] = True


def _fail_abandoned(
    portal: TrioPortal, unit: LocalUnit, holder: int, released: list[bool]
) -> None:
    if not released[0]:
        log.info("lease on %r dropped before complete/fail: failing it", unit.name)
        portal.call_soon(functools.partial(_fail_held, unit, holder))


class SubscriptionServer(S.Subscription.Server):  # type: ignore[name-defined,misc]
    """Dropping it ends the watch."""

    def __init__(self, stop: Any) -> None:
        weakref.finalize(self, stop)


class _Waiters:
    """The ``ready``/``reached`` calls parked on one connection (KJ thread only)."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.count = 0
        self.limit = limit

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        if self.count >= self.limit:
            raise Overloaded(f"{self.count} calls already wait on this connection (the limit)")
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class _RefusingCoordinator(S.Coordinator.Server):  # type: ignore[name-defined,misc]
    """The bootstrap of a connection over ``max_connections``: every call says why."""

    def __init__(self, limit: int) -> None:
        self._error = Overloaded(f"too many connections (the limit is {limit}); retry later")

    @_wire_errors
    async def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise self._error

    ping = unit = list = graph = watch = _refuse


#: A page of ``list`` stops before its units take more than this (an estimate): well under the
#: 8 MiB a Cap'n Proto message may have (``traversal_limit_words``).
PAGE_BYTES: Final = 4 << 20


def _fitting(infos: list[UnitInfo], budget: int) -> int:
    """How many of ``infos`` (at least one) fit in about ``budget`` bytes of Cap'n Proto."""
    used = 0
    for count, info in enumerate(infos):
        texts = (info.name, info.reason, info.blocked_by, *(d.depends_on for d in info.dependencies))
        used += 64 + 32 * len(info.dependencies) + sum(len(text.encode()) + 8 for text in texts)
        if used > budget and count:
            return count
    return len(infos)


class CoordinatorServer(S.Coordinator.Server):  # type: ignore[name-defined,misc]
    """The bootstrap capability of one connection."""

    def __init__(
        self, coord: LocalCoordinator, portal: TrioPortal, limits: ServerLimits = ServerLimits()
    ) -> None:
        self._coord = coord
        self._portal = portal
        self._waiters = _Waiters(limits.max_waiters_per_connection)

    @_wire_errors
    async def ping(self, _context: Any, **kwargs: Any) -> None:
        _context.results.version = __version__  # answered here: no need to enter Trio

    @_wire_errors
    async def unit_context(self, context: Any) -> None:
        # the _context form: pycapnp would decode the name before calling ``unit`` and send
        # a bare traceback if it is not UTF-8
        name = _names(lambda: context.params.name)
        context.results.unit = UnitServer(
            self._portal, self._coord, self._coord.unit(name), self._waiters
        )

    @_wire_errors
    async def list_context(self, context: Any) -> None:
        params = context.params
        after, limit = _names(lambda: params.after), params.limit
        if not limit:  # all at once, as the contract began
            infos = await self._portal.run(functools.partial(self._coord.list, after=after))
        else:  # a page: one more tells whether units remain
            infos = await self._portal.run(
                functools.partial(self._coord.list, after=after, limit=limit + 1)
            )
            kept = _fitting(infos[:limit], PAGE_BYTES)
            context.results.more = len(infos) > kept
            infos = infos[:kept]
        units = context.results.init("units", len(infos))
        for slot, info in zip(units, infos):
            fill_info(slot, info)

    @_wire_errors
    async def graph(self, _context: Any, **kwargs: Any) -> None:
        _context.results.dot = await self._portal.run(self._coord.graph)

    @_wire_errors
    async def watch(self, watcher: Any, _context: Any, **kwargs: Any) -> None:
        forward = _RemoteWatch(self._coord, self._portal, watcher)
        try:
            await forward.start()
        except asyncio.CancelledError:  # the caller went away: no Subscription will stop it
            forward.stop()
            raise
        _context.results.subscription = SubscriptionServer(forward.stop)


class _RemoteWatch:
    """Events from a Trio subscription, streamed to a client's ``Watcher`` (``-> stream``).

    The Trio side reads its subscription and hands each event to the KJ thread; the KJ side
    sends them in order, one ``event`` call at a time under capnp stream flow control. A watcher
    more than :data:`REMOTE_WATCH_BUFFER` events behind is cut off: it gets one last event with
    ``seq == 0`` whose reason starts ``unitsync.lagged:``, and the watch ends.
    """

    def __init__(self, coord: LocalCoordinator, portal: TrioPortal, watcher: Any) -> None:
        self._coord = coord
        self._portal = portal
        self._watcher = watcher
        self._queue: asyncio.Queue[Any] = asyncio.Queue()  # bounded by _deliver
        self._last_queued = 0
        self._scope: trio.CancelScope | None = None
        self._sender: asyncio.Task[None] | None = None
        self._closed = False
        self._stopped = False  # Trio side: set once the reader must not (or no longer) run

    async def start(self) -> None:
        """Subscribe (in Trio) and start sending; returns once subscribed."""
        loop = asyncio.get_running_loop()
        subscribed: asyncio.Future[None] = loop.create_future()
        portal, coord = self._portal, self._coord

        def set_subscribed(error: BaseException | None) -> None:  # KJ thread
            if not subscribed.done():
                subscribed.set_exception(error) if error else subscribed.set_result(None)

        async def reader() -> None:  # Trio
            with trio.CancelScope() as scope:
                self._scope = scope
                if self._stopped:  # the caller went away before we got here
                    return
                try:
                    async with coord.watch() as events:
                        portal.to_loop(set_subscribed, None)
                        async for event in events:
                            portal.to_loop(self._deliver, event)
                except UnitsyncError as exc:  # Lagged (cannot happen: we drain), CoordinatorClosed
                    portal.to_loop(set_subscribed, exc)
                    portal.to_loop(self._end, exc)

        portal.call_soon(lambda: portal.spawn(reader))
        await subscribed
        self._sender = asyncio.create_task(self._send_events())

    def _deliver(self, event: Event) -> None:  # KJ thread
        if self._closed:
            return
        if self._queue.qsize() >= REMOTE_WATCH_BUFFER:
            self._cut_off()
            return
        self._queue.put_nowait(event)
        self._last_queued = event.seq

    def _cut_off(self) -> None:
        self._end(Lagged(self._last_queued, REMOTE_WATCH_BUFFER))

    def _end(self, error: UnitsyncError) -> None:  # KJ thread
        """After what is queued, one last event (seq 0) whose reason is the error's wire text
        (code, message and data line); stop reading."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(("end", error_to_wire(error)))
        self._stop_reader()

    async def _send_events(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                request = self._watcher.event_request()
                if isinstance(item, tuple):
                    request.event.seq = 0
                    request.event.reason = item[1]
                    await request.send()
                    return
                fill_event(request.event, item)
                await request.send()
        except (capnp.KjException, asyncio.CancelledError):
            pass
        finally:
            self._closed = True
            self._watcher = None
            self._stop_reader()

    def _stop_reader(self) -> None:
        def in_trio() -> None:
            self._stopped = True  # a reader not started yet will not subscribe
            if self._scope is not None:
                self._scope.cancel()

        self._portal.call_soon(in_trio)

    def stop(self) -> None:
        self._closed = True
        self._stop_reader()
        if self._sender is not None:
            self._sender.cancel()


async def serve(
    coord: LocalCoordinator,
    path: str | os.PathLike[str] | None = None,
    *,
    limits: ServerLimits = ServerLimits(),
    task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``coord`` over Cap'n Proto RPC on a Unix socket until cancelled.

    ``path``: else ``$UNITSYNC_SOCKET``, else the default (see :func:`socket_path`). Use as
    ``await nursery.start(serve, coord, path)``: it returns the socket path once clients can
    connect; binding errors (:class:`AddressInUse` for a live server) are raised from
    ``nursery.start``. Cancelling stops the KJ thread, disconnects every client and removes the
    socket file; so does the coordinator shutting down (``coord.aclose()``), after its last
    answers ("the coordinator is shutting down") have been sent. Connections from another uid are refused. ``limits``: see
    :class:`ServerLimits`; among them, a client that stops in the middle of a message is
    disconnected ``limits.frame_timeout`` after the message began (one warning logged), while
    a client idle between messages is kept however long it waits.
    """
    listener = bind_listener(socket_path(path))
    try:
        async with trio.open_nursery() as nursery:
            portal = TrioPortal(nursery)
            bound = await nursery.start(
                functools.partial(run_kj_thread, name="unitsync-server"),
                functools.partial(_accept_loop, coord, portal, listener, limits),
            )
            log.info("unitsync %s serving on %s", __version__, bound)
            nursery.start_soon(_stop_after_coordinator, coord, portal, nursery.cancel_scope)
            task_status.started(bound)
    finally:
        listener.close()


async def _stop_after_coordinator(
    coord: LocalCoordinator, portal: TrioPortal, scope: trio.CancelScope
) -> None:
    """When the coordinator shuts down (``aclose()``), let the KJ thread send the answers its
    actors gave on the way out ("the coordinator is shutting down"), then stop serving: wait
    (at most 1 s) until no call is still waiting for Trio, then a few more loop turns so that
    pycapnp writes the last responses."""
    await coord.wait_closed()
    with trio.move_on_after(1.0):
        quiet_turns = 0
        while quiet_turns < 3:
            quiet_turns = quiet_turns + 1 if await portal.loop_turn() == 0 else 0
    scope.cancel()


def _quiet_about_gone_callers(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """pycapnp reports a server method that raised after its caller had gone (cancelled, or
    disconnected) — routine for us: a refused ``start`` of a client killed meanwhile. Log it at
    debug level; anything else goes to asyncio's default handler. (A 30 s churn run printed 170
    such tracebacks on ``serve``'s stderr before.)"""
    if str(context.get("message", "")).startswith("Cancelled server method"):
        log.debug("%s: %s", context["message"], context.get("exception"))
        return
    loop.default_exception_handler(context)


async def _accept_loop(
    coord: LocalCoordinator,
    portal: TrioPortal,
    listener: Listener,
    limits: ServerLimits,
    started: Any,
) -> None:
    """On the KJ thread: accept, check the peer's uid, run one capnp connection per client."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_about_gone_callers)
    portal.loop = loop
    connections: set[asyncio.Task[None]] = set()
    refusing: set[asyncio.Task[None]] = set()
    started(listener.path)
    my_uid = os.getuid()
    try:
        while True:
            sock, _ = await loop.sock_accept(listener.sock)
            try:
                uid = peer_uid(sock)
            except OSError:
                sock.close()
                continue
            if uid != my_uid:
                log.warning("refused a connection from uid %d", uid)
                sock.close()
                continue
            if len(connections) >= limits.max_connections:
                log.warning("refused a connection: %d open (the limit)", len(connections))
                if len(refusing) >= 64:  # a flood: stop explaining, just hang up
                    sock.close()
                    continue
                refusal = asyncio.create_task(_refuse(sock, limits))
                refusing.add(refusal)
                refusal.add_done_callback(refusing.discard)
                continue
            task = asyncio.create_task(_connection(coord, portal, sock, limits))
            connections.add(task)
            task.add_done_callback(connections.discard)
    finally:
        for task in (*connections, *refusing):
            task.cancel()
        await asyncio.gather(*connections, *refusing, return_exceptions=True)


async def _connection(
    coord: LocalCoordinator, portal: TrioPortal, sock: Any, limits: ServerLimits
) -> None:
    await _run_connection(sock, CoordinatorServer(coord, portal, limits), limits)


async def _refuse(sock: Any, limits: ServerLimits) -> None:
    """Over ``max_connections``: answer every call with the reason, then hang up."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(
            _run_connection(sock, _RefusingCoordinator(limits.max_connections), limits),
            REFUSED_LINGER,
        )


async def _run_connection(sock: Any, bootstrap: Any, limits: ServerLimits) -> None:
    """Serve ``bootstrap`` on ``sock`` until the client goes, its stream fails (bad input, a
    frame incomplete for ``limits.frame_timeout``: see :mod:`._stream`) or we are cancelled."""
    stream = await open_stream(sock, frame_timeout=limits.frame_timeout)
    server = capnp.TwoPartyServer(
        stream,
        bootstrap=bootstrap,
        traversal_limit_in_words=limits.traversal_limit_words,
        nesting_limit=limits.nesting_limit,
    )
    try:
        await server.on_disconnect()
    except capnp.KjException:
        pass
    finally:
        server.close()
        stream.close()

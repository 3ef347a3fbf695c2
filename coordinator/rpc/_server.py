"""The Cap'n Proto server: ``serve(coord, path)`` in Trio; the KJ thread's accept loop and
connections, and each connection's bootstrap ``Coordinator`` capability. (A unit's and a
lease's capabilities are in ``_unit_server.py``, a remote watch in ``_watch_server.py``.)"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import capnp
import trio

from .._api import UnitInfo
from .._coordinator import LocalCoordinator
from .._errors import Overloaded
from .._paths import socket_path
from .._version import __version__
from .. import _operations as operations
from .._errors import InvalidArgument
from .._names import MAX_APPLY_UNITS, check_dependency_count
from .._status import Status
from ._convert import REVISION, fill_event, fill_info, read_names, status_from_wire, wire_errors
from ._bridge import Answer, TrioPortal, answer_task_factory, run_kj_thread
from ._schema import schema
from ._socket import Listener, adopt_listener, bind_listener, peer_uid
from ._frame_deadline import DEFAULT_FRAME_TIMEOUT, open_stream
from ._unit_server import Peer, UnitServer, answers
from ._watch_server import RemoteWatch, SubscriptionServer

__all__ = ["IDLE_CHECK_INTERVAL", "REFUSED_LINGER", "ServerLimits", "serve"]

log = logging.getLogger("unitsync.server")

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

#: Seconds between two looks for idleness (``serve(idle_exit=...)``) at most: coarse, since an
#: idle coordinator may stop a little late, and a look with no client connected reads the
#: units' statuses (only when something changed since the last look). A short ``idle_exit``
#: looks more often: every ``idle_exit / 4``.
IDLE_CHECK_INTERVAL: Final = 60.0


class _Connections:
    """The accept loop's counts, written on the KJ thread and read from Trio (plain ints: a
    read sees a whole value; a look that races a change sees it at the next look)."""

    __slots__ = ("accepted", "open")

    def __init__(self) -> None:
        self.open = 0  #: client connections now (refused ones over the limit not counted)
        self.accepted = 0  #: client connections ever accepted

S = schema()


class _RefusingCoordinator(S.Coordinator.Server):  # type: ignore[name-defined,misc]
    """The bootstrap of a connection over ``max_connections``: every call says why."""

    def __init__(self, limit: int) -> None:
        self._error = Overloaded(f"too many connections (the limit is {limit}); retry later")

    @wire_errors
    async def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise self._error

    ping = unit = list = graph = watch = hello = history = apply = _refuse


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
        self._peer = Peer(limits.max_waiters_per_connection)

    @answers
    def ping_context(self, context: Any) -> Answer:
        context.results.version = __version__  # answered here: no need to enter Trio
        return self._portal.answered()

    @wire_errors
    async def hello(self, revision: int, _context: Any, **kwargs: Any) -> None:
        self._peer.revision = max(1, min(int(revision), REVISION))
        _context.results.revision = REVISION

    @answers
    def unit_context(self, context: Any) -> Answer:
        # the _context form: pycapnp would decode the name before calling ``unit`` and send
        # a bare traceback if it is not UTF-8
        name = read_names(lambda: context.params.name)
        context.results.unit = UnitServer(
            self._portal, self._coord, self._coord.unit(name), self._peer
        )
        return self._portal.answered()  # at once, with no asyncio task (TrioPortal.answer)

    @wire_errors
    async def list_context(self, context: Any) -> None:
        params = context.params
        after, limit = read_names(lambda: params.after), params.limit
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
        revision = self._peer.revision
        for slot, info in zip(units, infos):
            fill_info(slot, info, revision)

    @wire_errors
    async def graph(self, _context: Any, **kwargs: Any) -> None:
        _context.results.dot = await self._portal.run(self._coord.graph)

    @wire_errors
    async def history_context(self, context: Any) -> None:
        params = context.params
        unit = read_names(lambda: params.unit)
        page = await self._portal.run(functools.partial(
            self._coord.history, after=params.after, limit=params.limit, unit=unit,
            newest=params.newest,
        ))
        revision = self._peer.revision
        results = context.results
        events = results.init("events", len(page.events))
        for slot, event in zip(events, page.events):
            fill_event(slot, event, revision)
        results.more, results.oldest, results.last = page.more, page.oldest, page.last

    @wire_errors
    async def apply_context(self, context: Any) -> None:
        specs = context.params.units
        if len(specs) > MAX_APPLY_UNITS:  # before decoding their names
            raise InvalidArgument(f"apply declares {len(specs)} units; at most {MAX_APPLY_UNITS}")
        graph: dict[str, dict[str, Status]] = {}
        for spec in specs:
            check_dependency_count(len(spec.requires))
            requirements = graph.setdefault(read_names(lambda: spec.name), {})
            for edge in spec.requires:
                required = status_from_wire(edge.requires)
                if required is Status.NOT_REGISTERED:  # the enum's default: left out
                    required = Status.COMPLETED
                requirements[read_names(lambda: edge.dependsOn)] = required
        operation = operations.apply(graph)
        coord = self._coord
        await self._portal.submit(lambda on_answer: coord.submit(operation, on_answer))

    @wire_errors
    async def watch(
        self, watcher: Any, replay: bool, after: int, _context: Any, **kwargs: Any
    ) -> None:
        forward = RemoteWatch(
            self._coord, self._portal, watcher, self._peer, after if replay else None
        )
        try:
            await forward.start()
        except asyncio.CancelledError:  # the caller went away: no Subscription will stop it
            forward.stop()
            raise
        _context.results.subscription = SubscriptionServer(forward.stop)


async def serve(
    coord: LocalCoordinator,
    path: str | os.PathLike[str] | None = None,
    *,
    sock: socket.socket | None = None,
    limits: ServerLimits = ServerLimits(),
    idle_exit: float = 0.0,
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

    ``sock``: serve on this socket, already bound and listening (systemd socket activation),
    instead of binding ``path`` (which, if given, must be where ``sock`` is bound). It is checked
    as :func:`~coordinator.rpc.adopt_listener` says, or refused with :class:`UnitsyncError`;
    connections already queued in its backlog are served. ``serve`` owns it from then on and
    closes it on the way out, leaving its file in place (the service manager's).

    ``idle_exit`` (seconds, 0: never): once no client has been connected and no unit has
    been pending or started for that long (looked at every ``idle_exit / 4``, at most every
    :data:`IDLE_CHECK_INTERVAL`; a client that came and went between two looks counts),
    close the coordinator (``coord.aclose()``, logged): the same shutdown as the caller's,
    after which ``serve`` returns. The caller's ``open_coordinator()`` then flushes the journal
    as it leaves, so the next coordinator on that journal starts where this one stopped.
    """
    if not 0 <= idle_exit < float("inf"):
        raise ValueError(f"idle_exit must be 0 (never) or a number of seconds, not {idle_exit!r}")
    if sock is not None:
        listener = adopt_listener(sock, None if path is None else Path(path))
    else:
        listener = bind_listener(socket_path(path))
    connections = _Connections()
    try:
        async with trio.open_nursery() as nursery:
            portal = TrioPortal(nursery)
            bound = await nursery.start(
                functools.partial(run_kj_thread, name="unitsync-server"),
                functools.partial(_accept_loop, coord, portal, listener, limits, connections),
            )
            log.info("unitsync %s serving on %s", __version__, bound)
            nursery.start_soon(_stop_after_coordinator, coord, portal, nursery.cancel_scope)
            if idle_exit:
                nursery.start_soon(_close_when_idle, coord, connections, idle_exit)
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


async def _close_when_idle(
    coord: LocalCoordinator, connections: _Connections, idle_exit: float
) -> None:
    """Close ``coord`` once it has been idle — no client connected, none accepted since the
    previous look, no unit pending or started — at every look for ``idle_exit`` seconds."""
    interval = min(IDLE_CHECK_INTERVAL, idle_exit / 4)
    idle_since = trio.current_time()
    accepted = connections.accepted
    while True:
        await trio.sleep(interval)
        busy = connections.open > 0 or connections.accepted != accepted
        accepted = connections.accepted
        if not busy:  # the units only when no client is there: a read of every status
            busy = await coord.unfinished() > 0
        now = trio.current_time()
        if busy:
            idle_since = now
        elif now - idle_since >= idle_exit:
            log.info("idle for %gs (no client, no unit pending or started): stopping", idle_exit)
            await coord.aclose()
            return


def _quiet_about_gone_callers(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """pycapnp reports a server method that raised after its caller had gone (cancelled, or
    disconnected) — routine for us: a refused ``start`` of a client killed meanwhile. Log it at
    debug level: printed as tracebacks on ``serve``'s stderr, they drowned everything
    else whenever clients died. Anything else goes to asyncio's default handler."""
    if str(context.get("message", "")).startswith("Cancelled server method"):
        log.debug("%s: %s", context["message"], context.get("exception"))
        return
    loop.default_exception_handler(context)


async def _accept_loop(
    coord: LocalCoordinator,
    portal: TrioPortal,
    listener: Listener,
    limits: ServerLimits,
    counts: _Connections,
    started: Any,
) -> None:
    """On the KJ thread: accept, check the peer's uid, run one capnp connection per client
    (counted in ``counts``)."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_about_gone_callers)
    loop.set_task_factory(answer_task_factory)  # calls answered without a task: TrioPortal.answer
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
            counts.accepted += 1
            counts.open = len(connections)
            task.add_done_callback(functools.partial(_gone, connections, counts))
    finally:
        for task in (*connections, *refusing):
            task.cancel()
        await asyncio.gather(*connections, *refusing, return_exceptions=True)


def _gone(
    connections: set[asyncio.Task[None]], counts: _Connections, task: asyncio.Task[None]
) -> None:
    connections.discard(task)
    counts.open = len(connections)


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
    frame incomplete for ``limits.frame_timeout``: see :mod:`._frame_deadline`) or we are cancelled."""
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

"""The asyncio client (``coordinator.rpc.AsyncioClient``): pycapnp calls in, plain values and
library errors out.

Runs on a KJ loop: the CLI runs it directly under ``capnp.run`` (no Trio import: fast start);
Trio programs get it through ``coordinator.connect`` (the KJ thread bridge). Every capnp object
stays inside this module; its methods take and return the dataclasses of ``coordinator`` and
raise its exceptions.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import capnp

from .._api import Event, HistoryPage, UnitInfo
from .._errors import CoordinatorClosed, CoordinatorUnreachable, NotReady, UnitsyncError
from .._graph import units_to_dot
from .._names import validate_dependencies, validate_name
from .._status import Status
from ._convert import REVISION, error_from_capnp, read_event, read_info, status_to_wire
from ._error_codec import error_from_wire
from ._frame_deadline import open_stream
from ._schema import schema
from ._socket import connect_socket

__all__ = ["PAGE_UNITS", "RECONNECT_INTERVAL", "WATCH_QUEUE", "AsyncioClient", "ClientWatch", "run_client"]

#: :meth:`AsyncioClient.list` asks for pages of this many units (the server may send fewer).
PAGE_UNITS = 10_000

#: :meth:`AsyncioClient.reconnect` tries at least this often (seconds) until the coordinator is
#: back: a restart is noticed within it.
RECONNECT_INTERVAL = 0.5

#: Events a :class:`ClientWatch` holds before it stops taking more from the server (which then
#: holds them, up to its own limit: a watcher that does not read is cut off as lagged there).
WATCH_QUEUE = 256

S = schema()
T = TypeVar("T")


class ClientWatch:
    """A subscription to the coordinator's events, on the KJ loop.

    ``async for event in watch`` yields each :class:`Event` in order. The iteration ends by
    raising why the stream ended — :class:`Lagged` (the server cut this watcher off: it fell
    too far behind), :class:`CoordinatorClosed` (the coordinator shut down, or the connection
    was lost) — or stops quietly after :meth:`close`. Events are taken from the server only as
    fast as they are read (Cap'n Proto stream flow control), at most :data:`WATCH_QUEUE` ahead.
    """

    def __init__(self, drop: Callable[[], object]) -> None:
        self._drop = drop  # releases the server's Subscription capability
        self._events: collections.deque[Event] = collections.deque()
        self._end: UnitsyncError | None = None
        self._closed = False
        self._changed = asyncio.Event()  # an event, the end or a close arrived
        self._room = asyncio.Event()  # the queue has room
        self._room.set()

    async def _push(self, event: Event) -> None:
        """From the Watcher capability: queue ``event``, waiting for room (flow control)."""
        while len(self._events) >= WATCH_QUEUE and not self._closed:
            self._room.clear()
            await self._room.wait()
        if not self._closed:
            self._events.append(event)
            self._changed.set()

    def _finish(self, error: UnitsyncError) -> None:
        """The stream's last word: iteration raises ``error`` after the queued events."""
        if self._end is None:
            self._end = error
            self._changed.set()

    def close(self) -> None:
        """Stop watching: the server's stream ends, and so does the iteration (at once, even
        if events are queued)."""
        if not self._closed:
            self._closed = True
            self._events.clear()
            self._changed.set()
            self._room.set()
            self._drop()

    def __aiter__(self) -> ClientWatch:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._events:
                event = self._events.popleft()
                self._room.set()
                return event
            if self._end is not None:
                raise self._end
            self._changed.clear()
            await self._changed.wait()


class _Watcher(S.Watcher.Server):  # type: ignore[name-defined,misc]
    """The client-side capability the server streams events to."""

    def __init__(self, watch: ClientWatch) -> None:
        self._watch = watch

    async def event(self, event: Any, _context: Any, **kwargs: Any) -> None:
        if event.seq == 0:  # the last one: its reason says why ("unitsync.lagged: ...")
            error = error_from_wire(str(event.reason))
            self._watch._finish(error or CoordinatorClosed(str(event.reason)))
        else:
            await self._watch._push(read_event(event))


class AsyncioClient:
    """One connection to a coordinator. Create with :meth:`connect` on a running KJ loop."""

    def __init__(self, path: Path, stream: Any, client: Any) -> None:
        self.path = path
        #: The schema revision this connection speaks (see ``Coordinator.hello``).
        self.revision = REVISION
        self._units: dict[str, Any] = {}
        self._held: dict[int, Any] = {}
        self._watches: dict[int, ClientWatch] = {}
        self._subscriptions: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._attach(stream, client)

    def _attach(self, stream: Any, client: Any) -> None:
        self._stream = stream
        self._client = client
        self._coord = client.bootstrap().cast_as(S.Coordinator)
        self.connected = True
        self._lost = asyncio.ensure_future(self._tell_watchers_when_lost())

    async def _tell_watchers_when_lost(self) -> None:
        """A connection that drops (the coordinator killed, say) sends no last event: end every
        watch here, as the server would have, so no watcher waits forever."""
        try:
            await self._client.on_disconnect()
        except Exception:  # noqa: BLE001 - however it broke, it is gone
            pass
        self.connected = False
        self._end_watches()

    def _end_watches(self) -> None:
        """Give every watch its last word: the connection was lost."""
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            watch._finish(CoordinatorClosed("the connection to the coordinator was lost"))

    @classmethod
    async def connect(cls, path: Path, *, timeout: float = 5.0) -> AsyncioClient:
        """Connect to the coordinator at ``path`` and say which schema revision we speak:
        :class:`CoordinatorUnreachable` if nothing answers within ``timeout``."""
        client = cls(path, *await _open(path, timeout))
        try:
            async with asyncio.timeout(timeout):
                await client._hello()
        except (TimeoutError, CoordinatorClosed) as exc:
            client.close()
            why = "it did not answer" if isinstance(exc, TimeoutError) else str(exc)
            raise CoordinatorUnreachable(str(path), why) from None
        return client

    async def _hello(self) -> None:
        """Tell the server our schema revision; :attr:`revision` becomes the one the
        connection speaks (1 with a server from before ``hello``)."""
        try:
            result = await self._coord.hello(REVISION)
        except capnp.KjException as exc:
            if exc.type != "UNIMPLEMENTED":
                raise error_from_capnp(exc) from None
            self.revision = 1
        else:
            self.revision = min(int(result.revision), REVISION)

    async def reconnect(self, *, timeout: float = 5.0) -> None:
        """The connection was lost (the coordinator was killed, is restarting or shutting
        down): drop it and connect to the same path again, retrying every
        :data:`RECONNECT_INTERVAL` at most until it answers — bound it with the caller's own
        timeout. What belonged to the old connection (unit capabilities, leases, watches) is
        gone: a lease must be taken over with ``hold(resume=True)``, and watches end."""
        self._end_watches()
        self._drop()
        delay = 0.05
        while True:
            try:
                self._attach(*await _open(self.path, timeout))
                # a dying coordinator's listener may still take a connection (a kill closes
                # the connections first; a shutdown takes up to 1.5 s), then drop it, or a
                # stopped one never answer: only an answer tells that a coordinator is back
                async with asyncio.timeout(timeout):
                    await self._hello()
                return
            except CoordinatorUnreachable:
                pass
            except (CoordinatorClosed, TimeoutError):
                self._drop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_INTERVAL)

    async def disconnected(self) -> None:
        """Returns when the connection to the coordinator is lost (never if it is closed here)."""
        await self._client.on_disconnect()

    def close(self) -> None:
        self._watches.clear()
        self._drop()

    def _drop(self) -> None:
        self.connected = False
        if self._coord is None:  # dropped already (a reconnect that did not succeed)
            return
        self._lost.cancel()
        self._units.clear()
        self._held.clear()
        self._subscriptions.clear()
        self._coord = None
        self._client.close()
        self._stream.close()

    def _unit(self, name: str) -> Any:
        """The Unit capability for ``name`` — pipelined: usable before ``unit()`` returns."""
        cap = self._units.get(name)
        if cap is None:
            cap = self._coord.unit(validate_name(name)).unit
            if len(self._units) > 1024:
                self._units.clear()
            self._units[name] = cap
        return cap

    async def _call(self, promise: Any) -> Any:
        try:
            return await promise
        except capnp.KjException as exc:
            raise error_from_capnp(exc) from None

    # --- Coordinator --------------------------------------------------------------------------

    async def ping(self) -> str:
        return str((await self._call(self._coord.ping())).version)

    async def list(self) -> list[UnitInfo]:
        """Every registered unit, read in pages of at most :data:`PAGE_UNITS` (and ~4 MiB),
        so that any number fits Cap'n Proto's message size; pages are not one snapshot."""
        units: list[UnitInfo] = []
        after = ""
        while True:
            page = await self._call(self._coord.list(after, PAGE_UNITS))
            units.extend(read_info(u) for u in page.units)
            if not page.more or not units:
                return units
            after = units[-1].name

    async def graph(self) -> str:
        """DOT, rendered here from :meth:`list` (as the coordinator renders it): the server's
        ``graph()`` sends one message, which fails past ~50,000 units."""
        return units_to_dot(await self.list())

    async def apply(self, graph: Mapping[str, Mapping[str, Status]]) -> None:
        """Declare several units and their edges as one step (as ``LocalCoordinator.apply``)."""
        request = self._coord.apply_request()
        units = request.init("units", len(graph))
        for slot, (unit, requirements) in zip(units, graph.items()):
            slot.name = validate_name(unit)
            edges = slot.init("requires", len(requirements))
            for edge, (dependency, required) in zip(edges, requirements.items()):
                edge.dependsOn = validate_name(dependency)
                edge.requires = status_to_wire(required, self.revision)
        await self._call(request.send())

    async def history(
        self, *, after: int = 0, limit: int = 0, unit: str = "", newest: bool = False
    ) -> HistoryPage:
        """A page of the kept history (as ``LocalCoordinator.history``)."""
        if unit:
            validate_name(unit)
        page = await self._call(self._coord.history(after, limit, unit, newest))
        return HistoryPage(
            events=tuple(read_event(e) for e in page.events), more=page.more,
            oldest=page.oldest, last=page.last,
        )

    async def watch(self, *, after: int | None = None) -> ClientWatch:
        """Subscribe to the coordinator's events (see :class:`ClientWatch`); the events are
        those after this returns, or with ``after`` (a seq) every kept one after it first.
        ``close()`` the watch when done."""
        watch_id = next(self._ids)
        watch = ClientWatch(functools.partial(self._unwatch, watch_id))
        replay = after is not None
        result = await self._call(self._coord.watch(_Watcher(watch), replay, after or 0))
        self._subscriptions[watch_id] = result.subscription
        self._watches[watch_id] = watch
        return watch

    def _unwatch(self, watch_id: int) -> None:
        self._watches.pop(watch_id, None)
        self._subscriptions.pop(watch_id, None)  # dropping the capability ends the watch

    # --- Unit ---------------------------------------------------------------------------------

    async def info(self, name: str) -> UnitInfo:
        return read_info((await self._call(self._unit(name).info())).info)

    async def ready(self, name: str) -> UnitInfo:
        return read_info((await self._call(self._unit(name).ready())).info)

    async def want(self, name: str, dependencies: Iterable[str], requires: Status) -> None:
        """Checked here, before anything is sent (the server checks again: it trusts no client)."""
        deps = list(validate_dependencies(dependencies, requires))
        await self._call(self._unit(name).want(deps, status_to_wire(requires)))

    async def register(self, name: str) -> None:
        await self._call(self._unit(name).register())

    async def start(self, name: str) -> None:
        await self._call(self._unit(name).start())

    async def complete(self, name: str) -> None:
        await self._call(self._unit(name).complete())

    async def fail(self, name: str, reason: str) -> None:
        await self._call(self._unit(name).fail(reason))

    async def skip(self, name: str, reason: str) -> None:
        await self._call(self._unit(name).skip(reason))

    async def reached(self, name: str, status: Status) -> None:
        await self._call(self._unit(name).reached(status_to_wire(status)))

    async def hold(self, name: str, *, resume: bool = False, wait: bool = False) -> int:
        """Start ``name`` bound to a lease; returns the lease's id (the capability stays here).
        ``resume``: take over a hold restored after a restart instead (see ``LocalUnit.hold``).
        ``wait``: first wait until ``name`` is ready (:class:`DependencyFailed` if it is
        blocked), in the coordinator (a coordinator older than revision 4: here, ``ready``
        then ``hold``, again while refused with :class:`NotReady`)."""
        if wait and self.revision < 4:
            while True:
                await self.ready(name)
                try:
                    return await self.hold(name, resume=resume)
                except NotReady:  # an edge added in between: wait again
                    continue
        result = await self._call(self._unit(name).hold(resume, wait))
        lease_id = next(self._ids)
        self._held[lease_id] = result.lease
        return lease_id

    async def lease_complete(self, lease_id: int) -> None:
        await self._call(self._held[lease_id].complete())
        self._held.pop(lease_id, None)

    async def lease_fail(self, lease_id: int, reason: str) -> None:
        await self._call(self._held[lease_id].fail(reason))
        self._held.pop(lease_id, None)

    def lease_drop(self, lease_id: int) -> None:
        """Release the lease capability: the server fails the unit if it is still started."""
        self._held.pop(lease_id, None)


async def _open(path: Path, timeout: float) -> tuple[Any, Any]:
    """A new connection to ``path``: (stream, TwoPartyClient); CoordinatorUnreachable if none."""
    try:
        sock = connect_socket(path, timeout=timeout)
    except OSError as exc:
        raise CoordinatorUnreachable(str(path), exc.strerror or str(exc)) from None
    stream = await open_stream(sock, frame_timeout=0)  # a LeanStream, as the server's
    return stream, capnp.TwoPartyClient(stream)


def run_client(
    path: Path, body: Callable[[AsyncioClient], Awaitable[T]], *, connect_timeout: float = 5.0
) -> T:
    """Run ``body(core)`` on a fresh asyncio + KJ event loop (``capnp.run``) with a connection to ``path``,
    close the connection and return what ``body`` returned. Errors propagate as the library's
    exceptions (:class:`CoordinatorUnreachable` if nothing answers). For short-lived programs
    such as the CLI: no Trio, no thread."""

    async def main() -> T:
        core = await AsyncioClient.connect(path, timeout=connect_timeout)
        try:
            return await body(core)
        finally:
            core.close()

    return asyncio.run(capnp.run(main()))  # type: ignore[no-any-return]


async def wait_forever() -> None:
    await asyncio.Event().wait()

"""``connect(path)``: the coordinator over RPC, with the same API as ``open_coordinator()``."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from .._api import Event, HistoryPage, UnitInfo
from .._errors import CoordinatorClosed, Lagged
from .._events import WATCH_BUFFER, Subscription
from .._lease import Lease
from .._names import validate_name
from .._nursery import open_service_nursery
from .._paths import socket_path
from .._status import Status
from ._client import AsyncioClient, ClientWatch, wait_forever
from ._bridge import AsyncioPortal, run_kj_thread

__all__ = ["RemoteCoordinator", "RemoteUnit", "connect"]

T = TypeVar("T")


@asynccontextmanager
async def connect(
    path: str | os.PathLike[str] | None = None, *, timeout: float = 5.0
) -> AsyncIterator[RemoteCoordinator]:
    """Connect to the coordinator serving at ``path`` (else ``$UNITSYNC_SOCKET``, else the
    default socket), for the ``async with`` block.

    Raises :class:`CoordinatorUnreachable` if nothing answers. pycapnp runs in a thread of its
    own (the KJ thread), started here and stopped on leaving the block (which closes the
    connection: leases still held fail with "holder disconnected"). If the connection is lost,
    calls raise :class:`CoordinatorClosed`. An exception in the body propagates unchanged.
    """
    where = socket_path(path)
    token = trio.lowlevel.current_trio_token()

    async def amain(started: Callable[[Any], None]) -> None:
        core = await AsyncioClient.connect(where, timeout=timeout)
        try:
            started((AsyncioPortal(token), core))
            await wait_forever()
        finally:
            core.close()

    async with open_service_nursery() as nursery:
        portal, core = await nursery.start(
            functools.partial(run_kj_thread, name="unitsync-client"), amain
        )
        yield RemoteCoordinator(portal, core)


class RemoteCoordinator:
    """A coordinator reached over RPC (see :func:`connect`). Same API as ``LocalCoordinator``."""

    __slots__ = ("_portal", "_core", "_forwarders")

    def __init__(self, portal: AsyncioPortal, core: AsyncioClient) -> None:
        self._portal = portal
        self._core = core
        #: KJ-thread tasks forwarding watches into Trio (kept here so they are not collected)
        self._forwarders: set[asyncio.Future[None]] = set()

    @property
    def path(self) -> str:
        return str(self._core.path)

    def unit(self, name: str) -> RemoteUnit:
        return RemoteUnit(self, validate_name(name))

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._portal.run(fn, *args)

    async def ping(self) -> str:
        return await self._run(self._core.ping)

    async def list(self) -> list[UnitInfo]:
        return await self._run(self._core.list)

    async def graph(self) -> str:
        return await self._run(self._core.graph)

    async def apply(self, graph: Mapping[str, Mapping[str, Status]]) -> None:
        """As ``LocalCoordinator.apply``: several units and their edges, as one step."""
        await self._run(self._core.apply, graph)

    async def history(
        self, *, after: int = 0, limit: int = 0, unit: str = "", newest: bool = False
    ) -> HistoryPage:
        """As ``LocalCoordinator.history``: a page of the kept history."""
        return await self._run(functools.partial(
            self._core.history, after=after, limit=limit, unit=unit, newest=newest
        ))

    @asynccontextmanager
    async def watch(
        self, *, after: int | None = None, buffer: int = WATCH_BUFFER
    ) -> AsyncIterator[Subscription]:
        """As ``LocalCoordinator.watch``: events after entering (with ``after``: the kept ones
        after that seq first), in order; ``Lagged`` when this watcher (here, or the server's
        stream to it) falls behind or asked for events no longer kept; ``CoordinatorClosed``
        when the coordinator goes away."""
        subscription = Subscription(buffer)
        token = trio.lowlevel.current_trio_token()
        portal, core = self._portal, self._core

        def in_trio(fn: Callable[[], object]) -> None:  # KJ thread
            try:
                token.run_sync_soon(fn)
            except trio.RunFinishedError:
                pass

        def offer(watch: ClientWatch, event: Event) -> None:  # Trio
            if not subscription.offer(event):  # lagged here: stop the server's stream
                portal.call_soon(watch.close)

        async def forward(watch: ClientWatch) -> None:  # KJ thread
            try:
                async for event in watch:
                    in_trio(functools.partial(offer, watch, event))
            except (Lagged, CoordinatorClosed) as end:
                in_trio(functools.partial(subscription.end, end))

        async def subscribe() -> ClientWatch:  # KJ thread
            watch = await core.watch(after=after)
            task = asyncio.ensure_future(forward(watch))
            self._forwarders.add(task)
            task.add_done_callback(self._forwarders.discard)
            return watch

        watch = await self._run(subscribe)
        try:
            yield subscription
        finally:
            portal.call_soon(watch.close)
            subscription.close()


class RemoteUnit:
    """A handle for one unit over RPC. Cheap; holds no resources (the Unit capability is
    cached by the connection and pipelined: the first call does not wait for ``unit()``)."""

    __slots__ = ("_coord", "name")

    def __init__(self, coord: RemoteCoordinator, name: str) -> None:
        self._coord = coord
        self.name = name

    def __repr__(self) -> str:
        return f"<remote unit {self.name!r}>"

    async def register(self) -> None:
        await self._coord._run(self._coord._core.register, self.name)

    async def want(self, *dependencies: str, requires: Status = Status.COMPLETED) -> None:
        await self._coord._run(self._coord._core.want, self.name, dependencies, requires)

    async def start(self) -> None:
        await self._coord._run(self._coord._core.start, self.name)

    async def complete(self) -> None:
        await self._coord._run(self._coord._core.complete, self.name)

    async def fail(self, reason: str = "") -> None:
        await self._coord._run(self._coord._core.fail, self.name, reason)

    async def skip(self, reason: str = "") -> None:
        await self._coord._run(self._coord._core.skip, self.name, reason)

    async def ready(self) -> UnitInfo:
        return await self._coord._run(self._coord._core.ready, self.name)

    async def reached(self, status: Status) -> None:
        await self._coord._run(self._coord._core.reached, self.name, status)

    async def info(self) -> UnitInfo:
        return await self._coord._run(self._coord._core.info, self.name)

    @asynccontextmanager
    async def hold(self, *, resume: bool = False) -> AsyncIterator[Lease]:
        """Start the unit bound to a lease for the block (see ``LocalUnit.hold``, also for
        ``resume``); the lease lives on the server, so it also fails the unit if this process
        dies."""
        core, run = self._coord._core, self._coord._run
        lease_id = await run(functools.partial(core.hold, self.name, resume=resume))
        lease = Lease(
            complete=functools.partial(run, core.lease_complete, lease_id),
            fail=lambda reason: run(core.lease_fail, lease_id, reason),
        )
        try:
            yield lease
        finally:
            self._coord._portal.call_soon(functools.partial(core.lease_drop, lease_id))

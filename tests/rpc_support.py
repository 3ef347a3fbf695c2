"""Helpers for tests that talk to a coordinator over RPC: serving one in the test's nursery, a
plain pycapnp client on a KJ thread of its own, and waiting on what another process or
connection did.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import capnp
import trio

from coordinator import CoordinatorStatistics, LocalCoordinator, UnitsyncError, serve
from coordinator.rpc._bridge import AsyncioPortal, run_kj_thread
from coordinator.rpc._schema import schema
from coordinator.rpc._socket import connect_socket

S = schema()


@asynccontextmanager
async def serving(coord: LocalCoordinator, path: Path) -> AsyncIterator[Path]:
    """``serve(coord, path)`` for the block; yields the bound path."""
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve, coord, path)
        yield bound
        nursery.cancel_scope.cancel()


RawCall = Callable[[Callable[[dict[str, Any]], Awaitable[Any]]], Awaitable[Any]]


@asynccontextmanager
async def raw_client(path: Path) -> AsyncIterator[RawCall]:
    """A plain pycapnp client on a KJ thread of its own. Yields ``run``: ``await run(fn)`` runs
    the coroutine function ``fn(state)`` on that thread and returns its (plain) result.
    ``state["coord"]`` is the bootstrap ``Coordinator`` capability; ``fn`` may keep capnp objects
    in ``state`` between calls (they never leave the KJ thread, and die with it)."""
    token = trio.lowlevel.current_trio_token()

    async def amain(started: Callable[[Any], None]) -> None:
        stream = await capnp.AsyncIoStream.create_unix_connection(sock=connect_socket(path))
        client = capnp.TwoPartyClient(stream)
        state: dict[str, Any] = {"coord": client.bootstrap().cast_as(S.Coordinator)}
        try:
            started((AsyncioPortal(token), state))
            await asyncio.Event().wait()
        finally:
            state.clear()
            client.close()
            stream.close()

    async with trio.open_nursery() as nursery:
        portal, state = await nursery.start(
            functools.partial(run_kj_thread, name="raw-client"), amain
        )

        async def run(fn: Callable[[dict[str, Any]], Awaitable[Any]]) -> Any:
            return await portal.run(fn, state)

        yield run
        nursery.cancel_scope.cancel()


async def until(
    server: LocalCoordinator, predicate: Callable[[CoordinatorStatistics], bool]
) -> None:
    """Poll the server's statistics until ``predicate`` holds (callers bound it with
    ``fail_after``). Only for what happens in another process — a client killed, a client
    parking itself — where there is nothing to round-trip through and no event to wait for."""
    while not predicate(await server.statistics()):
        await trio.sleep(0.01)


async def park(
    unit: Any,
    results: list[object],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``unit.ready()`` (a ``RemoteUnit``) and record what it returns or raises; returns
    from ``nursery.start`` once the server has parked the call.

    How: ``started()`` comes right before ``ready()``, which hands its call to the KJ thread
    before its first checkpoint, so the ``info()`` the parent sends next on the same capability
    leaves after it; calls on one capability reach the unit's actor in order (E-order, see
    test_e_order...), so when that ``info()`` returns, ``ready()`` is parked (or answered)."""

    async def wait() -> None:
        try:
            results.append(await unit.ready())
        except UnitsyncError as exc:
            results.append(exc)

    async with trio.open_nursery() as nursery:
        await nursery.start(_started_then, wait)
        await unit.info()
        task_status.started()


async def _started_then(fn: Callable[[], Awaitable[None]], *, task_status: Any) -> None:
    task_status.started()
    await fn()  # no checkpoint in between: see park()

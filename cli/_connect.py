"""Running a client command: connect, call, map the outcome to an exit code.

Client commands run on pycapnp's own asyncio event loop (``run_client``), so a command imports
capnp and asyncio but never Trio: ``unitsync complete x`` stays a short process. Errors are
printed as one line, ``unitsync: <message>``, and become the documented exit codes.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from coordinator import (
    CoordinatorClosed,
    CoordinatorUnreachable,
    CycleError,
    DependencyFailed,
    InvalidArgument,
    InvalidName,
    UnitsyncError,
    socket_path,
)

from ._duration import format_duration

if TYPE_CHECKING:
    from coordinator.rpc import AsyncioClient

    from ._options import Common

__all__ = [
    "CYCLE",
    "EXIT_CODES",
    "OK",
    "USAGE",
    "CommandError",
    "across_restarts",
    "call",
    "elapsed",
    "exit_code",
    "report",
    "say",
    "wait_across_restarts",
    "with_progress",
]

OK, ERROR, USAGE, TIMEOUT, DEPENDENCY_FAILED, CYCLE, UNREACHABLE = 0, 1, 2, 3, 4, 5, 69

#: The exit codes, as ``--help`` and the README give them.
EXIT_CODES = """\
Exit codes: 0 ok; 1 error (request refused); 2 usage (bad arguments, duration or unit name;
an invalid workspace file); 3 timeout; 4 dependency failed; 5 cycle refused (or found by
`check`); 69 coordinator unreachable.
`run` exits with its command's code once the command has run (128+N if killed by signal N)."""


class CommandError(Exception):
    """A failure the command itself detects (a timeout, a bad argument), with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def exit_code(error: BaseException) -> int:
    """The documented exit code for ``error``."""
    match error:
        case CommandError():
            return error.code
        case CoordinatorUnreachable() | CoordinatorClosed():
            return UNREACHABLE
        case CycleError():
            return CYCLE
        case DependencyFailed():
            return DEPENDENCY_FAILED
        case InvalidName() | InvalidArgument():
            return USAGE
        case TimeoutError():
            return TIMEOUT
        case _:
            return ERROR


def say(message: str) -> None:
    """A diagnostic on stderr: ``unitsync: <message>`` (each line of it, for several)."""
    print("\n".join(f"unitsync: {line}" for line in message.split("\n")), file=sys.stderr,
          flush=True)


def report(error: BaseException) -> int:
    """Print ``error`` as one diagnostic line and return its exit code. (An unreachable
    coordinator's message names the socket tried and asks whether `unitsync serve` runs.)"""
    say(str(error))
    return exit_code(error)


T = TypeVar("T")


async def across_restarts(core: AsyncioClient, attempt: Callable[[], Awaitable[T]]) -> T:
    """Return ``await attempt()``, surviving restarts of the coordinator.

    When the connection is lost before ``attempt`` is done — the coordinator was killed, is
    restarting, or is shutting down (:class:`CoordinatorClosed`) — say so on stderr, reconnect
    to the same socket (:meth:`AsyncioClient.reconnect`: retried until the caller's own timeout
    cancels it) and run ``attempt()`` again on the new connection. A waiting ``start``, ``wait``
    or ``run`` thus goes on waiting through a restart (the journal keeps the state) instead of
    failing at the first disconnect. The first connection is not retried: no coordinator at
    all is exit 69 at once."""
    while True:
        try:
            return await attempt()
        except CoordinatorClosed as lost:
            say(f"lost the coordinator at {core.path} ({lost}); reconnecting")
        await core.reconnect()
        say(f"reconnected to the coordinator at {core.path}")


async def wait_across_restarts(
    core: AsyncioClient,
    attempt: Callable[[], Awaitable[T]],
    timeout: float,
    waiting_for: Callable[[], str],
) -> T:
    """:func:`across_restarts` within ``timeout`` seconds (0: no limit). When it runs out:
    :class:`CommandError` (exit 3) ``timed out after 5m waiting for <waiting_for()>`` — or,
    if the coordinator was away at that moment, CoordinatorUnreachable (exit 69) saying it did
    not come back in time."""
    import asyncio

    try:
        async with asyncio.timeout(timeout or None):
            return await across_restarts(core, attempt)
    except TimeoutError:
        if not core.connected:
            raise CoordinatorUnreachable(
                str(core.path),
                f"it went away and did not come back within {format_duration(timeout)}",
            ) from None
        raise CommandError(
            f"timed out after {format_duration(timeout)} waiting for {waiting_for()}", TIMEOUT
        ) from None


async def with_progress(
    waiting_for: Awaitable[T], every: float, report: Callable[[float], Awaitable[str]]
) -> T:
    """Return ``await waiting_for``; meanwhile, every ``every`` seconds (0: never), say on
    stderr what ``report(seconds waited so far)`` says. A report that fails (the coordinator
    went away, say) is skipped: the wait itself tells what happened."""
    import asyncio

    task = asyncio.ensure_future(waiting_for)
    if not every:
        return await task
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            try:
                say(await report(loop.time() - began))
            except UnitsyncError:
                pass
    finally:
        task.cancel()


def elapsed(seconds: float) -> str:
    """``(1m30s)``: how long a progress line has been waiting, in whole seconds."""
    return f"({format_duration(round(seconds))})"


def call(
    common: Common,
    body: Callable[[AsyncioClient], Awaitable[int | None]],
    *,
    autostart: bool = False,
) -> int:
    """Connect to the coordinator named by ``common``, run ``body`` and return its exit code
    (``None`` means 0). Library errors and :class:`CommandError` propagate: ``main`` reports
    them (:func:`report`), wherever in a command they were raised.

    ``autostart`` (the commands that change or wait): if nothing answers on the socket, start
    a coordinator there (unless ``--no-autostart`` or ``UNITSYNC_AUTOSTART=0``; see
    ``_autostart.py``), say so on stderr and then run ``body``. Only the first connection:
    a coordinator lost later is waited for (:func:`across_restarts`), not started."""
    import logging

    from coordinator.rpc import run_client

    from ._autostart import autostart_enabled

    # asyncio warns "socket.send() raised exception." when pycapnp writes to a connection the
    # coordinator has dropped; the command reports the loss itself, in its own words
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    path = socket_path(common.socket)
    if not (autostart and autostart_enabled(common.no_autostart)):
        return run_client(path, body) or OK
    connected = False

    async def connected_body(core: AsyncioClient) -> int | None:
        nonlocal connected
        connected = True
        return await body(core)

    try:
        return run_client(path, connected_body) or OK
    except CoordinatorUnreachable:
        if connected:  # lost after the call began: not a missing coordinator
            raise
    from ._autostart import ensure_coordinator, log_path

    if ensure_coordinator(path):
        say(f"started a coordinator on {path} (log: {log_path(path.absolute())})")
    return run_client(path, body) or OK

"""``unitsync serve``: the coordinator and its RPC server, in the foreground."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from coordinator import __version__, default_state_path, socket_path

from ._connect import UNREACHABLE, USAGE, CommandError
from ._duration import format_duration
from ._options import Common, Duration

if TYPE_CHECKING:
    from coordinator import LocalCoordinator

__all__ = ["SHUTDOWN_GRACE", "serve"]

#: Seconds SIGINT/SIGTERM gives the coordinator to answer its waiters before ``serve`` exits.
SHUTDOWN_GRACE = 1.5


def serve(
    *,
    max_units: int = 100_000,
    max_connections: int = 1024,
    max_waiters: int = 1024,
    frame_timeout: Duration = 10.0,
    state: Path | None = None,
    no_state: Annotated[bool, Parameter(name="--no-state", negative=())] = False,
    store: str | None = None,
    hold_grace: Duration = 10.0,
    history: int = 100_000,
    idle_exit: Duration = 0.0,
    cpu: str = "auto",
    common: Common = Common(),
) -> int:
    """Run the coordinator in the foreground, serving on the socket until SIGINT or SIGTERM.

    Prints one line to stderr when clients can connect: the version, the socket and the
    journal (or store). Exits 0 on SIGINT/SIGTERM (the socket file is removed), 1 if the
    socket is in use by a live coordinator or cannot be bound, or the store membership was
    lost, 69 if the store cannot be reached at start. Past a limit a request gets
    `unitsync.overloaded` and changes nothing. Started by systemd socket activation
    (LISTEN_FDS), it serves the socket it was passed, checked; with NOTIFY_SOCKET set it tells
    the service manager READY=1 once clients can connect and STOPPING=1 on the way out.

    Parameters
    ----------
    max_units
        Units at most (every name mentioned, registered or only depended on).
    max_connections
        Client connections at once.
    max_waiters
        `ready`/`reached` calls (waiting `start`, `wait`, `run`) parked at once per connection.
    frame_timeout
        A client that has sent part of a message must send the rest within this time (e.g.
        10s, 500ms), else its connection is closed, as if it had disconnected. Connections
        idle between messages (a waiting `start`) are never timed out. 0: no limit.
        Default 10s.
    state
        The journal: start from the state it holds, and record every accepted mutation there
        before acknowledging it (it survives kill -9). Default: next to the socket,
        SOCKET_DIR/unitsync.state.
    no_state
        Keep the state in memory only: a restart starts empty.
    store
        Share the state with the coordinators of other machines through etcd, instead of
        a journal: etcd://HOST:PORT[,HOST:PORT...]/WORKSPACE (every coordinator of WORKSPACE
        shares its units, edges, statuses and holds). Exits 69 if no endpoint answers.
    hold_grace
        After a restart, how long a unit that was held by `unitsync run` stays started for
        that run to reconnect and take it over; then it fails with "holder disconnected".
        Default 10s.
    history
        Events to keep for `status`'s History, `timeline`, `blame`, `critical-chain` and
        `watch --since`: every status change and edge added, the newest N (the oldest are
        dropped first), journaled with the state. 0: none. Default 100000.
    idle_exit
        Stop by itself (as on SIGTERM, exit 0) once no client has been connected and no unit
        has been pending or started for this long (e.g. 1h; looked at every DURATION/4, at
        most every minute); the journal keeps the state for the next coordinator. A
        coordinator started on first use gets 1h. Default 0: never.
    cpu
        Keep the coordinator's threads on this CPU (a number), on one chosen by `auto` (the
        one it started on), or leave them to the scheduler: `all`. On one CPU its two
        threads hand each call over on the CPU already awake, not by waking another: a third
        more calls per second into the coordinator. Give all where a busy process is kept on
        that CPU (taskset, a cpuset). Default auto.
    """
    import functools

    import trio

    from coordinator import UnitsyncError, open_coordinator
    from coordinator import serve as serve_rpc
    from coordinator.rpc import ServerLimits, prepare_socket

    for name, value in (("--max-units", max_units), ("--max-connections", max_connections),
                        ("--max-waiters", max_waiters)):
        if value < 1:
            raise CommandError(f"{name} must be at least 1, not {value}", USAGE)
    if history < 0:
        raise CommandError(f"--history must be 0 or more, not {history}", USAGE)
    limits = ServerLimits(max_connections=max_connections, max_waiters_per_connection=max_waiters,
                          frame_timeout=frame_timeout)
    if no_state and state is not None:
        raise CommandError("--state and --no-state exclude each other", USAGE)
    if store is not None:
        if state is not None or no_state:
            raise CommandError("--store keeps the state in etcd: no --state or --no-state with "
                               "it", USAGE)
        from coordinator import parse_store

        try:
            parse_store(store)
        except UnitsyncError as error:
            raise CommandError(str(error), USAGE) from None
    from ._affinity import keep_to_cpu
    from ._systemd import Notifier, activated_path, inherited_socket

    activated = inherited_socket()  # systemd socket activation: fd 3, already listening
    notifier = Notifier.from_environment()
    socket = socket_path(common.socket) if activated is None \
        else activated_path(activated, common.socket)
    journal = None if no_state or store else state or default_state_path(socket)

    def before_the_journal() -> None:
        """The journal is opened (and locked) before the socket is bound: say "already
        serving" rather than "journal in use" when a live coordinator is there, and make the
        socket's directory (checked) if the journal goes in it first. Blocking, before Trio."""
        if journal is not None and activated is None:  # (an activated socket is checked)
            prepare_socket(socket)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_coordinator(
                max_units=max_units, state=journal, store=store, hold_grace=hold_grace,
                history=history, member=_member_id(socket) if store else None,
            ) as coord, \
                    trio.open_nursery() as nursery:
                path = await nursery.start(functools.partial(
                    serve_rpc, coord, None if activated else common.socket, sock=activated,
                    limits=limits, idle_exit=idle_exit,
                ))
                print(f"unitsync: {__version__} serving on {path} "
                      f"(state: {store or journal or 'memory only'})", file=sys.stderr,
                      flush=True)
                notifier.notify(READY="1", STATUS=f"serving on {path}")
                _tune_the_collector()
                why = await _signal_or_closed(signals, coord) or (
                    f"no client and no unit pending or started for {format_duration(idle_exit)}"
                )
                print(f"unitsync: {why}, stopping", file=sys.stderr, flush=True)
                notifier.notify(STOPPING="1", STATUS=f"{why}, stopping")
                # waiting clients are told "the coordinator is shutting down"; serve_rpc
                # stops by itself once those answers are sent; bounded either way
                nursery.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE
                await coord.aclose()

    try:
        keep_to_cpu(cpu)  # before any thread starts: they inherit it
    except ValueError as error:
        raise CommandError(str(error), USAGE) from None
    code = 0
    try:
        before_the_journal()
        trio.run(main)
    except* (UnitsyncError, OSError) as group:  # binding failed, the store lost: say why
        errors = _leaves(group)
        for exc in errors:
            print(f"unitsync: cannot serve: {exc}", file=sys.stderr)
        unreachable = all(getattr(e, "code", "") == "unitsync.store-unreachable" for e in errors)
        code = UNREACHABLE if unreachable else 1
    return code


#: ``serve``'s collector thresholds (Python's: 700, 10, 10): a young collection once 10,000
#: more objects are tracked than freed, not 700. A fan-out makes and frees tens of thousands of
#: short-lived objects — freed by their reference counts, nearly all — and each young
#: collection in between walked the survivors again.
GC_THRESHOLDS = (10_000, 10, 10)


def _tune_the_collector() -> None:
    """Once serving: move what the process has made so far — modules, classes, the state
    restored from the journal, all living as long as the process — out of the cyclic garbage
    collector's sight (``gc.freeze``), so that each full collection, a pause in whatever the
    coordinator is answering at the time, no longer walks them (a fifth to a third shorter with
    3,000 units); and collect young objects less often (:data:`GC_THRESHOLDS`). Measured in
    stress/README.md, "2026-12-06 day session". Only ``serve``: a program nesting the library
    keeps its collector as it set it."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and the groups nested in it (a coordinator's own task that
    fails, such as the store's membership ending, comes wrapped by each nursery it crosses)."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def _member_id(socket: Path) -> str:
    """This serve's id in a shared store: the host and its socket, the same when it is started
    again, so that it finds the holds it had (and their runs can take them back)."""
    import hashlib
    import socket as sockets

    digest = hashlib.sha256(str(socket).encode()).hexdigest()[:12]
    return f"{sockets.gethostname()}-{digest}"


async def _signal_or_closed(
    signals: AsyncIterator[int], coord: LocalCoordinator
) -> str | None:
    """Wait for SIGINT/SIGTERM (return its name), or for the coordinator to close by itself
    (``--idle-exit``: the RPC server closes it when idle; return None)."""
    import trio

    why = None
    async with trio.open_nursery() as nursery:
        async def closed() -> None:
            await coord.wait_closed()
            nursery.cancel_scope.cancel()

        nursery.start_soon(closed)
        async for signum in signals:
            why = signal.Signals(signum).name
            nursery.cancel_scope.cancel()
            break
    return why

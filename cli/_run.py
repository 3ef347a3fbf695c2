"""``unitsync run UNIT [--after DEP]... -- CMD ARGS...``: a command as a unit.

want + start + complete/fail in one process, with the unit bound to this process by a lease:
if ``run`` dies (even by SIGKILL) before CMD's outcome is recorded, the coordinator fails the
unit with ``holder disconnected`` and its dependents are told at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from coordinator._errors import CoordinatorClosed, UnitsyncError
from coordinator._names import validate_name
from coordinator._status import Status

from ._connect import USAGE, CommandError, across_restarts, call, say
from ._format import names
from ._options import Common, Duration, Requirement
from ._sync import start_when_ready

if TYPE_CHECKING:
    from coordinator.rpc._client import ClientCore

__all__ = ["run"]

#: Signals passed on to CMD while it runs. CMD stays in our process group, so an interactive
#: CMD keeps its terminal.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: The default of ``--reconnect-timeout``: how long ``run`` tries to reach a coordinator that is
#: away when CMD ends, to record the outcome (a restarted coordinator restores the unit from its
#: journal, still started).
RECONNECT_SECONDS = 10.0


def _terminal_delivers_sigint() -> bool:
    """True when we run in the terminal's foreground process group: a Ctrl-C there reaches CMD
    directly (same group), and forwarding it as well would deliver it twice."""
    import os

    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:  # stdin is not a terminal
        return False


def outcome(returncode: int) -> tuple[int, str]:
    """``run``'s exit code and the failure reason ("" for success) for CMD's return code
    (negative: killed by that signal, as asyncio reports it)."""
    if returncode == 0:
        return 0, ""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return 128 - returncode, f"killed by signal {name}"
    return returncode, f"exit code {returncode}"


def run(
    unit: str,
    /,
    *command: str,
    after: Annotated[tuple[str, ...], Parameter(name="--after", negative=())] = (),
    requires: Requirement = "completed",
    timeout: Duration = 300.0,
    reconnect_timeout: Duration = RECONNECT_SECONDS,
    common: Common = Common(),
) -> int:
    """Run CMD as UNIT: declare the --after dependencies (atomically), wait until UNIT is
    ready, start it bound to this process, run CMD with this terminal's stdin/stdout/stderr,
    then complete UNIT if CMD exits 0 and fail it otherwise (reason `exit code N` or
    `killed by signal S`). SIGINT, SIGTERM and SIGHUP are forwarded to CMD (a Ctrl-C typed in
    the terminal reaches CMD directly, once).

    Exits with CMD's code (128+N if killed by signal N); 4 without running CMD if a dependency
    failed; 3 on timeout; 127 (126) if CMD cannot be found (executed). If the coordinator goes
    away while run waits, it reconnects and keeps waiting within the timeout. If it goes away
    while CMD runs, CMD keeps running, run reconnects as soon as the coordinator is back and
    takes its hold over again (a restarted coordinator keeps the unit started for its
    --hold-grace), and CMD's outcome is recorded when it ends (by name if the hold could not be
    taken back; tried for --reconnect-timeout after CMD ends). Its exit code is returned either
    way.

    Parameters
    ----------
    unit
        The unit CMD is.
    command
        The command and its arguments, after `--`.
    after
        A dependency of UNIT (repeatable).
    requires
        What each --after dependency must have reached.
    timeout
        How long to wait for the dependencies (not CMD): 30s, 5m ...; 0 waits forever.
        Default 5m.
    reconnect_timeout
        How long to keep trying to reach a coordinator that is away when CMD ends, to record
        CMD's outcome: 30s, 5m ...; 0 tries until it is back. Default 10s.
    """
    validate_name(unit)
    for dependency in after:
        validate_name(dependency)
    if not command:
        raise CommandError("run needs a command: unitsync run UNIT [--after DEP]... -- CMD ARGS",
                           USAGE)

    def waiting(unmet: object) -> None:
        say(f'Unit "{unit}" is waiting for dependencies to be satisfied: {names(unmet)}')  # type: ignore[arg-type]

    async def body(core: ClientCore) -> int:
        if after:
            await core.want(unit, list(after), Status(requires))
        lease, _, _ = await start_when_ready(
            core, unit, lambda: core.hold(unit), timeout, waiting=waiting,
            taken=lambda: core.hold(unit, resume=True),
        )
        try:
            child = await asyncio.create_subprocess_exec(*command)
        except OSError as exc:
            reason = f"cannot run {command[0]!r}: {exc.strerror or exc}"
            say(reason)
            await core.lease_fail(lease, reason)
            return 126 if isinstance(exc, PermissionError) else 127
        return await _supervise(core, unit, lease, child, reconnect_timeout or None)

    return call(common, body)


class _Hold:
    """The lease ``run`` holds on the current connection; None while it has none (the
    coordinator went away, or the hold could not be taken back)."""

    __slots__ = ("lease",)

    def __init__(self, lease: int) -> None:
        self.lease: int | None = lease


async def _supervise(
    core: ClientCore, unit: str, lease: int, child: asyncio.subprocess.Process,
    reconnect_timeout: float | None,
) -> int:
    """Wait for CMD, forwarding signals and keeping the hold across coordinator restarts;
    record its outcome on the lease — or by name on a new connection if there is none, trying
    for ``reconnect_timeout`` seconds (None: until the coordinator is back)."""
    loop = asyncio.get_running_loop()
    interactive = _terminal_delivers_sigint()
    for signum in FORWARDED:
        if signum == signal.SIGINT and interactive:
            loop.add_signal_handler(signum, lambda: None)  # CMD got it from the terminal
        else:
            loop.add_signal_handler(signum, _forward, child, signum)
    hold = _Hold(lease)
    keeper = asyncio.ensure_future(_keep_the_hold(core, unit, hold))
    try:
        code, reason = outcome(await child.wait())
    finally:
        for signum in FORWARDED:
            loop.remove_signal_handler(signum)
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper  # a bug in it surfaces here
    if hold.lease is not None:
        try:
            if reason:
                await core.lease_fail(hold.lease, reason)
            else:
                await core.lease_complete(hold.lease)
            return code
        except CoordinatorClosed:
            pass
    await _record_by_name(core, unit, reason, reconnect_timeout)
    return code


async def _keep_the_hold(core: ClientCore, unit: str, hold: _Hold) -> None:
    """While CMD runs: each time the connection is lost, reconnect as soon as the coordinator
    is back (a restart) and take the hold over again with ``hold(resume=True)`` — a coordinator
    restarted from its journal keeps the unit started for its hold grace period, then fails it
    with "holder disconnected". CMD keeps running whatever happens here."""
    while True:
        await core.disconnected()
        hold.lease = None
        say(f"lost the coordinator at {core.path}; the command keeps running")
        while hold.lease is None:
            await core.reconnect()
            try:
                hold.lease = await core.hold(unit, resume=True)
            except CoordinatorClosed:
                continue  # gone again before it answered (it was shutting down): retry
            except UnitsyncError as error:  # NotHeld: the grace ran out, or the unit changed
                say(f"reconnected to the coordinator at {core.path} but could not take unit "
                    f'"{unit}" back ({error}); its outcome will be recorded by name')
                return
        say(f'reconnected to the coordinator at {core.path}; unit "{unit}" is held again')


async def _record_by_name(
    core: ClientCore, unit: str, reason: str, reconnect_timeout: float | None
) -> None:
    """The coordinator is away as CMD ends, or the hold could not be taken back: record CMD's
    outcome by name, reconnecting if need be (it may be restarting, and a restarted coordinator
    restores the unit from its journal, still started) for up to ``reconnect_timeout`` seconds
    (None: until it is back); else say it was not recorded."""
    outcome_text = reason or "exit code 0"

    async def record() -> None:
        if reason:
            await core.fail(unit, reason)
        else:
            await core.complete(unit)

    try:
        async with asyncio.timeout(reconnect_timeout):
            if not core.connected:
                await core.reconnect()
                say(f"reconnected to the coordinator at {core.path}")
            await across_restarts(core, record)
    except TimeoutError:
        say(f"the coordinator at {core.path} did not come back; the outcome ({outcome_text}) "
            "was not recorded")
    except UnitsyncError as error:  # e.g. the unit is not there (no journal): say why
        say(f"could not record the outcome ({outcome_text}): {error}")
    else:
        say(f"recorded the outcome ({outcome_text}) by name")


def _forward(child: asyncio.subprocess.Process, signum: int) -> None:
    try:
        child.send_signal(signum)
    except ProcessLookupError:  # already gone; its exit status is on its way
        pass

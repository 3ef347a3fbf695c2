"""The sync commands: ``ping``, ``want``, ``start``, ``complete``, ``fail``, ``wait``.

Wording follows coder's ``coder exp sync`` (``Unit "X" started with no dependencies`` ...) so
a script moving over reads the same lines; waiting is the coordinator's ``ready`` promise, pushed
the moment the last requirement is met — never a poll (``_when_ready.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from coordinator import Status, validate_name

from ._connect import USAGE, CommandError, call, say
from ._format import names
from ._options import Common, Duration, Requirement
from ._when_ready import start_when_ready

if TYPE_CHECKING:
    from coordinator.rpc import AsyncioClient

__all__ = ["complete", "fail", "ping", "say_plain", "skip", "start", "want"]


def ping(*, common: Common = Common()) -> int:
    """Check that the coordinator answers. Prints `Success`."""

    async def body(core: AsyncioClient) -> None:
        await core.ping()
        print("Success")

    return call(common, body)


def want(
    unit: str,
    /,
    *dependencies: str,
    requires: Requirement = "completed",
    common: Common = Common(),
) -> int:
    """Declare that UNIT depends on each DEPENDENCY; registers UNIT.

    All dependencies are added in one atomic step: if one of them would close a cycle, nothing
    changes and the whole cycle is printed (exit 5). Declaring an edge again replaces its
    requirement.

    Parameters
    ----------
    unit
        The dependent unit.
    dependencies
        Units UNIT waits for (need not be registered yet).
    requires
        What each dependency must have reached for UNIT to be ready.
    """
    validate_name(unit)
    for dependency in dependencies:
        validate_name(dependency)
    if not dependencies:
        raise CommandError("want needs at least one dependency: unitsync want UNIT DEP...", USAGE)

    async def body(core: AsyncioClient) -> None:
        await core.want(unit, list(dependencies), Status(requires))
        print(f'Unit "{unit}" declared dependencies: {names(dependencies)}')

    return call(common, body, autostart=True)


def start(
    unit: str, /, *, timeout: Duration = 300.0, progress: Duration = 30.0,
    common: Common = Common(),
) -> int:
    """Wait until UNIT is ready, then mark it started (registers UNIT if needed).

    Blocks on the coordinator's `ready` promise: woken the moment the last dependency is
    satisfied, or answered at once (exit 4) when a dependency fails. If the coordinator goes
    away meanwhile (a restart), reconnects and keeps waiting within the timeout (exit 69 if it
    is not back in time).

    Parameters
    ----------
    unit
        The unit to start.
    timeout
        How long to wait for the dependencies: 30s, 5m, 1h30m ...; 0 waits forever. Default 5m.
    progress
        While waiting, say every so often which dependencies are still unmet, with their
        status (stderr). Default 30s; 0: never.
    """
    validate_name(unit)

    def waiting(unmet: Sequence[str]) -> None:
        say_plain(f'Unit "{unit}" is waiting for dependencies to be satisfied: {names(unmet)}')

    async def body(core: AsyncioClient) -> None:
        async def taken() -> None:
            say(f'unit "{unit}" is started: this start reached the coordinator before it went')

        _, info, waited = await start_when_ready(
            core, unit, lambda: core.start(unit), timeout, waiting=waiting, taken=taken,
            progress=progress,
        )
        dependencies = names(d.depends_on for d in info.dependencies)
        if waited:
            print(f'Unit "{unit}" finished waiting for dependencies: {dependencies}')
        elif info.dependencies:
            print(f'Unit "{unit}" started immediately, dependencies already satisfied: '
                  f"{dependencies}")
        else:
            print(f'Unit "{unit}" started with no dependencies')

    return call(common, body, autostart=True)


def say_plain(message: str) -> None:
    """A coder-worded progress line on stderr (no ``unitsync:`` prefix)."""
    import sys

    print(message, file=sys.stderr, flush=True)


def complete(unit: str, /, *, common: Common = Common()) -> int:
    """Mark UNIT completed. Prints `Success`.

    Parameters
    ----------
    unit
        A registered unit.
    """
    validate_name(unit)

    async def body(core: AsyncioClient) -> None:
        await core.complete(unit)
        print("Success")

    return call(common, body, autostart=True)


def fail(unit: str, /, *, reason: str = "", common: Common = Common()) -> int:
    """Mark UNIT failed. Every unit waiting on it (transitively) is answered at once: their
    `start`/`run` exit 4. A later `start` of UNIT is a re-run and unblocks them. Prints `Success`.

    Parameters
    ----------
    unit
        A registered unit.
    reason
        Why it failed; shown to the units that depended on it.
    """
    validate_name(unit)

    async def body(core: AsyncioClient) -> None:
        await core.fail(unit, reason)
        print("Success")

    return call(common, body, autostart=True)


def skip(unit: str, /, *, reason: str = "", common: Common = Common()) -> int:
    """Mark UNIT skipped: it did not run and will not (yet). Only a unit that has not started
    (exit 1 otherwise). Like a failed unit it meets only `finished` requirements: units that
    need it started or completed are answered at once (exit 4), those that need it finished go
    on. A later `start` of UNIT is a re-run. Prints `Success`.

    Parameters
    ----------
    unit
        A registered unit.
    reason
        Why it is skipped; shown to the units that depended on it.
    """
    validate_name(unit)

    async def body(core: AsyncioClient) -> None:
        await core.skip(unit, reason)
        print("Success")

    return call(common, body, autostart=True)

"""``unitsync wait UNIT... | --all``: wait for units without being one — a workspace's "is it
ready yet" gate for a login shell, a health check or a script."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from coordinator import Status, validate_name

from ._connect import USAGE, CommandError, call, wait_across_restarts, elapsed, with_progress
from ._format import names
from ._options import Common, Duration, Requirement
from ._sync import say_plain

if TYPE_CHECKING:
    from coordinator import UnitInfo
    from coordinator.rpc import AsyncioClient

__all__ = ["wait"]


def wait(
    *units: str,
    for_: Annotated[Requirement, Parameter(name="--for")] = "completed",
    all_: Annotated[bool, Parameter(name="--all", negative=())] = False,
    timeout: Duration = 300.0,
    progress: Duration = 30.0,
    common: Common = Common(),
) -> int:
    """Wait until each UNIT (or with --all, every registered unit) has reached a status,
    without being a unit yourself.

    Once the coordinator holds the wait, says so on stderr for each unit not there yet
    (`Unit "X" is waiting to reach completed (it is started)`). Exits 4 at the first unit that
    fails (or that a dependency's failure blocks) first, naming it; 3 on timeout. --all waits
    for the units registered when it starts, then for any registered meanwhile, until one look
    finds them all there. If the coordinator goes away meanwhile (a restart), reconnects and
    keeps waiting within the timeout (exit 69 if it is not back in time). Every wake-up is a
    pushed promise; only the progress line reads the units' status.

    Parameters
    ----------
    units
        The units to wait for (need not be registered yet).
    for_
        The status to wait for: started (started or completed), completed, or finished (any
        outcome: completed, failed or skipped).
    all_
        Wait for every registered unit instead of the ones named.
    timeout
        How long to wait: 30s, 5m, 1h30m ...; 0 waits forever. Default 5m.
    progress
        While waiting, say every so often how many are there and which are not, with their
        status (stderr). Default 30s; 0: never.
    """
    for unit in units:
        validate_name(unit)
    if all_ == bool(units):
        raise CommandError("wait needs units, or --all (not both): unitsync wait UNIT...", USAGE)
    target = Status(for_)
    wanted = list(dict.fromkeys(units))

    async def body(core: AsyncioClient) -> None:
        targets: list[str] = wanted

        async def attempt() -> None:
            nonlocal targets
            while True:
                if all_:
                    targets = [info.name for info in await core.list()]
                if not await _reach_all(core, targets, target, for_, progress):
                    return  # every one was there at the first look
                if not all_:
                    return

        await wait_across_restarts(core, attempt, timeout, lambda: _what(targets, for_))
        if all_:
            print(f"All {len(targets)} units reached {for_}")
        elif len(targets) == 1:
            print(f'Unit "{targets[0]}" reached {for_}')
        else:
            print(f"Units {names(targets)} reached {for_}")

    return call(common, body, autostart=True)


async def _reach_all(
    core: AsyncioClient, units: Sequence[str], target: Status, for_: str, progress: float
) -> bool:
    """Park a ``reached`` for each unit, say which are waited for, and return once all have
    reached ``target`` (True if any had to be waited for); the first DependencyFailed
    propagates (the others are dropped)."""
    parked = [asyncio.ensure_future(core.reached(unit, target)) for unit in units]
    try:
        # E-order: once each unit's info (sent after its reached, on the same capability) is
        # answered, its wait is parked, so "is waiting" is true when printed
        infos = await asyncio.gather(*(core.info(unit) for unit in units))
        behind = [info for info in infos if not _there(info, target)]
        for info in behind:
            say_plain(f'Unit "{info.name}" is waiting to reach {for_} (it is {info.status.label})')

        async def all_reached() -> None:
            for future in asyncio.as_completed(parked):
                await future  # the first failure ends the wait

        async def report(seconds: float) -> str:
            now = await asyncio.gather(*(core.info(unit) for unit in units))
            late = [f"{i.name} ({i.status.label})" for i in now if not i.status.reaches(target)]
            if len(units) == 1:
                return (f'Unit "{units[0]}" still waiting to reach {for_} (it is '
                        f"{now[0].status.label}) {elapsed(seconds)}")
            return (f"{len(units) - len(late)} of {len(units)} reached {for_}; waiting for: "
                    f"{', '.join(late)} {elapsed(seconds)}")

        await with_progress(all_reached(), progress, report)
        return bool(behind)
    finally:
        for future in parked:
            future.cancel()


def _there(info: UnitInfo, target: Status) -> bool:
    """Nothing to say "waiting" about: there already, or about to be answered with a failure."""
    failed = info.status in (Status.FAILED, Status.SKIPPED)
    return info.status.reaches(target) or failed or bool(info.blocked_by)


def _what(units: Sequence[str], for_: str) -> str:
    if len(units) == 1:
        return f'unit "{units[0]}" to reach {for_}'
    return f"units {names(units)} to reach {for_}"

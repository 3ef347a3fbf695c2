"""Waiting until a unit is ready, then starting or holding it: what ``start``, ``run`` and ``up``
share. The wait is the coordinator's ``ready`` promise (or a hold parked in the coordinator),
pushed the moment the last requirement is met — never a poll — and it survives restarts of the
coordinator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from coordinator import (
    AlreadyInStatus,
    CoordinatorClosed,
    DependencyFailed,
    NotReady,
    Status,
    UnitsyncError,
)

from ._connect import elapsed, say, wait_across_restarts, with_progress
from ._format import names

if TYPE_CHECKING:
    from coordinator import UnitInfo
    from coordinator.rpc import AsyncioClient

__all__ = ["hold_when_ready", "start_when_ready"]

T = TypeVar("T")


async def start_when_ready(
    core: AsyncioClient,
    unit: str,
    begin: Callable[[], Awaitable[T]],
    timeout: float,
    *,
    waiting: Callable[[Sequence[str]], object],
    taken: Callable[[], Awaitable[T]],
    progress: float = 0.0,
) -> tuple[T, UnitInfo, bool]:
    """Run ``begin`` (start or hold ``unit``) as soon as ``unit`` is ready.

    The first attempt is pipelined behind an ``info`` call (one round trip). If it is refused
    with NotReady, the ``ready`` promise is parked, ``waiting(unmet)`` is told once it is
    (a scripts' barrier: the coordinator now holds the waiter), and each time the promise
    resolves ``begin`` is tried again (a dependency may go back in between). Returns
    ``begin``'s result, the unit's info from before the first attempt, and whether it had to
    wait.

    The wait survives restarts of the coordinator (:func:`wait_across_restarts`), within the same
    timeout; after a reconnect it parks again and tells ``waiting`` again. A ``begin`` that was
    in flight when the connection went may have taken effect (the journal has it): if the
    unit is then found started, ``taken()`` makes it ours (a start: nothing to do; a hold:
    take the restored hold over).

    While it waits, every ``progress`` seconds (0: never) it says which dependencies are still
    unmet and their status (one ``info`` each time: the wake-up itself is the pushed promise).

    A timeout (0 = none) raises :class:`CommandError` with exit code 3 — or, when it ran out
    while the coordinator was away, CoordinatorUnreachable (exit 69); a failed (or skipped)
    dependency marks ``unit`` skipped, naming it, and raises DependencyFailed.
    """
    result, info, waited = await _when_ready(
        core, unit, begin, timeout, waiting=waiting, taken=taken, progress=progress, look=True,
    )
    assert info is not None
    return result, info, waited


async def hold_when_ready(
    core: AsyncioClient,
    unit: str,
    begin: Callable[[], Awaitable[T]],
    timeout: float,
    *,
    waiting: Callable[[Sequence[str]], object],
    taken: Callable[[], Awaitable[T]],
    dependencies: bool,
    begin_when_ready: Callable[[], Awaitable[T]],
) -> T:
    """:func:`start_when_ready` for ``up``, which knows from the file whether ``unit`` has
    dependencies, in fewer round trips (and no ``info`` it would not use). Without
    (``dependencies`` false): ``begin`` at once, alone; refused with NotReady (someone declared
    an edge meanwhile), it waits as ``start_when_ready`` does. With: ``begin_when_ready`` (a
    ``hold`` that waits in the coordinator, revision 4) is parked first, with one ``info``
    behind it (once answered, the begin is parked; its unsatisfied dependencies are what
    ``waiting`` is told, unless there are none or one has failed) — no NotReady round trip,
    and no round trip between the unit becoming ready and its start. Same timeout, restarts,
    ``taken`` and skip as ``start_when_ready``; returns the begin's result."""
    result, _, _ = await _when_ready(
        core, unit, begin, timeout, waiting=waiting, taken=taken, look=False,
        parked_begin=begin_when_ready if dependencies else None,
    )
    return result


async def _when_ready(
    core: AsyncioClient,
    unit: str,
    begin: Callable[[], Awaitable[T]],
    timeout: float,
    *,
    waiting: Callable[[Sequence[str]], object],
    taken: Callable[[], Awaitable[T]],
    progress: float = 0.0,
    look: bool,
    parked_begin: Callable[[], Awaitable[T]] | None = None,
) -> tuple[T, UnitInfo | None, bool]:
    """Both: ``look``, an ``info`` pipelined with the first ``begin`` (returned);
    ``parked_begin``, no first ``begin``: that one, which waits in the coordinator until the
    unit is ready, is parked at once and is the start."""
    first_info: UnitInfo | None = None
    unmet: Sequence[str] = ()
    waited = in_flight = False

    async def try_begin(start: Callable[[], Awaitable[T]] = begin) -> T:
        # in flight when the coordinator went (a restart): it may have taken effect, so a
        # unit found started is ours (``taken``); a begin parked until ready counts too
        nonlocal in_flight
        lost_mid_begin, in_flight = in_flight, True
        try:
            result = await start()
        except AlreadyInStatus as already:
            if not (lost_mid_begin and already.status is Status.STARTED):
                in_flight = False
                raise
            result = await taken()  # ours, from before the coordinator went
        except CoordinatorClosed:
            raise  # in flight: its effect is unknown
        except BaseException:
            in_flight = False
            raise
        in_flight = False
        return result

    async def attempt() -> T:
        nonlocal first_info, unmet, waited, in_flight
        info: UnitInfo | None = None
        refused: NotReady | None = None  # the first begin's NotReady (None: not tried)
        if look:
            info, first = await asyncio.gather(core.info(unit), try_begin(),
                                               return_exceptions=True)
            if isinstance(info, BaseException):
                if not isinstance(first, BaseException):
                    # the begin took effect, its answer (a lease) is on the connection that
                    # failed: an attempt after a restart takes it over (``taken``)
                    in_flight = True
                raise info
            first_info = first_info or info
            if not isinstance(first, BaseException):
                return first
            if not isinstance(first, NotReady):
                raise first
            refused = first
        elif parked_begin is None:
            try:
                return await try_begin()
            except NotReady as not_ready:
                refused = not_ready
        if refused is not None:
            unmet, waited = refused.unmet, True
        # parked: the ready promise, or the begin that waits in the coordinator
        parked = asyncio.ensure_future(
            core.ready(unit) if parked_begin is None else try_begin(parked_begin)
        )
        try:
            # E-order: once this info (sent after it, on the same capability) is answered,
            # the call is parked, so "is waiting" is true when printed
            parked_info = await core.info(unit)
            if refused is None:  # parked first: what is unsatisfied now (none: ready at once)
                unmet = [d.depends_on for d in parked_info.dependencies if not d.satisfied]
                waited = bool(unmet)
            # blocked: `ready` answers DependencyFailed at once
            if (refused is not None or unmet) and not (info or parked_info).blocked_by:
                waiting(unmet)
            answer = await with_progress(parked, progress, still_waiting)
        finally:
            parked.cancel()
        if parked_begin is not None:
            return answer  # type: ignore[return-value]  # the begin's result
        while True:
            try:
                return await try_begin()
            except NotReady:  # a dependency went back meanwhile: wait again
                await core.ready(unit)

    async def still_waiting(seconds: float) -> str:
        info = await core.info(unit)
        unmet_now = [f"{d.depends_on} ({d.current.label})" for d in info.dependencies
                     if not d.satisfied]
        return (f'Unit "{unit}" still waiting for dependencies: {names(unmet_now)} '
                f"{elapsed(seconds)}")

    try:
        result = await wait_across_restarts(
            core, attempt, timeout, lambda: f'the dependencies of unit "{unit}": {names(unmet)}'
        )
    except DependencyFailed as failed:
        await _skip_for(core, unit, failed)
        raise
    return result, first_info, waited


async def _skip_for(core: AsyncioClient, unit: str, failed: DependencyFailed) -> None:
    """The wait for ``unit`` ended because a dependency failed or was skipped: mark ``unit``
    skipped, naming it (``dependency "git" failed: clone failed``), so that what needed
    ``unit`` is told too. Not if it has started meanwhile (someone else runs it)."""
    try:
        await core.skip(unit, failed.skip_reason)
    except AlreadyInStatus as already:
        if already.status is not Status.SKIPPED:  # started (or ended) meanwhile: not ours
            say(f'unit "{unit}" was not marked skipped: {already}')
    except UnitsyncError as error:  # gone, an old coordinator ...
        say(f'unit "{unit}" was not marked skipped: {error}')
    else:
        say(f'Unit "{unit}" skipped: {failed.skip_reason}')

"""Holds across a restart, and whose a hold is.

A unit held (``hold()``, which ``unitsync run`` uses) when the coordinator stopped is restored
from the journal still started. Its holder — a ``run`` whose command outlived the old
coordinator — has ``hold_grace`` seconds to take it over with ``hold(resume=True)``; otherwise
the unit fails with "holder disconnected" and its dependents are told. A plain ``start`` is not
a hold: it stays started. Each hold has its own holder token, so a lease dropped after its unit
was re-run has no say over the new run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from coordinator import (
    AlreadyInStatus,
    DependencyFailed,
    LocalCoordinator,
    NotHeld,
    Status,
    open_coordinator,
)
from coordinator._lease import HOLDER_GONE

from .waits import WAIT, settle

GRACE = 10.0
#: Every test here reads the journal (worker threads), which the autojump clock would jump
#: over; a clock running 50× faster than real time makes the 10 s grace period 0.2 s instead.
LIMIT = GRACE * 50  # fail_after, in that clock's time: 10 s of real time


@pytest.fixture
def fast_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(rate=50)


async def stop_while_held(journal: Path, *, held: bool = True) -> None:
    """A journal in which ``job`` is started — by a hold (``held``) or a plain start — and
    ``next`` waits for it; the coordinator stops with the hold still open, as a crash would
    leave it."""
    async with open_coordinator(state=journal) as coord:
        await coord.unit("next").want("job")
        if not held:
            await coord.unit("job").start()
            return
        async with coord.unit("job").hold():
            await coord.aclose()  # the hold's block is left after the coordinator has gone


@asynccontextmanager
async def restarted(journal: Path, *, held: bool = True) -> AsyncIterator[LocalCoordinator]:
    """A coordinator restarted on a journal left by :func:`stop_while_held`."""
    await stop_while_held(journal, held=held)
    async with open_coordinator(state=journal, hold_grace=GRACE) as coord:
        yield coord


async def status(coord: LocalCoordinator, unit: str) -> tuple[Status, str]:
    info = await coord.unit(unit).info()
    return info.status, info.reason


async def test_a_restored_hold_fails_once_its_grace_period_is_over(
    sock_dir: Path, fast_clock: trio.testing.MockClock
) -> None:
    journal = sock_dir / "state"
    with trio.fail_after(LIMIT):
        async with restarted(journal) as coord:
            began = trio.current_time()
            assert await status(coord, "job") == (Status.STARTED, "")
            with pytest.raises(DependencyFailed) as caught:  # parked until the grace ends
                await coord.unit("next").ready()
            assert GRACE <= trio.current_time() - began < GRACE * 2
            assert (caught.value.unit, caught.value.reason) == ("job", HOLDER_GONE)
            assert await status(coord, "job") == (Status.FAILED, HOLDER_GONE)
        async with open_coordinator(state=journal, hold_grace=GRACE) as coord:
            assert await status(coord, "job") == (Status.FAILED, HOLDER_GONE)  # journaled


async def test_a_resumed_hold_belongs_to_its_new_holder(
    sock_dir: Path, fast_clock: trio.testing.MockClock
) -> None:
    journal = sock_dir / "state"
    with trio.fail_after(LIMIT):
        async with restarted(journal) as coord:
            async with coord.unit("job").hold(resume=True) as lease:
                with pytest.raises(AlreadyInStatus):  # taken: nobody else resumes it
                    async with coord.unit("job").hold(resume=True):
                        pass
                await trio.sleep(GRACE * 2)  # the grace period passes
                assert await status(coord, "job") == (Status.STARTED, "")
                await lease.complete()
            assert (await coord.unit("next").ready()).ready
        async with restarted(journal) as coord:
            async with coord.unit("job").hold(resume=True):
                pass  # the new holder goes away without an outcome: as any holder would
            assert await status(coord, "job") == (Status.FAILED, HOLDER_GONE)


async def test_a_restored_hold_recorded_by_name_is_not_failed_later(
    sock_dir: Path, fast_clock: trio.testing.MockClock
) -> None:
    """What ``run`` does when it reconnects only after its command has ended."""
    journal = sock_dir / "state"
    with trio.fail_after(LIMIT):
        async with restarted(journal) as coord:
            await coord.unit("job").complete()
            await trio.sleep(GRACE * 2)
            assert await status(coord, "job") == (Status.COMPLETED, "")


async def test_a_plain_start_is_not_a_hold(
    sock_dir: Path, fast_clock: trio.testing.MockClock
) -> None:
    journal = sock_dir / "state"
    with trio.fail_after(LIMIT):
        async with restarted(journal, held=False) as coord:
            await trio.sleep(GRACE * 2)
            assert await status(coord, "job") == (Status.STARTED, "")
            with pytest.raises(AlreadyInStatus):
                async with coord.unit("job").hold(resume=True):
                    pass


async def test_resume_needs_a_lost_holder(coord: LocalCoordinator) -> None:
    """Locally and over RPC: ``NotHeld`` (with the unit's status) when there is no restored
    hold to take over, ``AlreadyInStatus`` when the unit is started and someone has it."""

    async def resume(unit: str) -> None:
        async with coord.unit(unit).hold(resume=True):
            raise AssertionError("resumed a hold nobody lost")

    with trio.fail_after(WAIT):
        with pytest.raises(NotHeld) as caught:
            await resume("ghost")
        assert (caught.value.name, caught.value.status) == ("ghost", Status.NOT_REGISTERED)
        await coord.unit("job").register()
        with pytest.raises(NotHeld) as caught:
            await resume("job")
        assert caught.value.status is Status.PENDING
        assert "no lost holder" in str(caught.value)
        async with coord.unit("job").hold() as lease:
            with pytest.raises(AlreadyInStatus):
                await resume("job")
            await lease.fail("exit code 1")
        with pytest.raises(NotHeld) as caught:
            await resume("job")
        assert caught.value.status is Status.FAILED
        assert (await coord.unit("job").info()).status is Status.FAILED  # nothing changed


async def test_an_old_lease_has_no_say_over_a_rerun(coord: LocalCoordinator) -> None:
    """Locally and over RPC: a lease dropped after its unit failed and was re-run by another
    holder leaves the new run alone (before, it failed any unit still started)."""
    with trio.fail_after(WAIT):
        async with contextlib.AsyncExitStack() as second:
            async with coord.unit("job").hold():
                await coord.unit("job").fail("timed out")  # by name, not through the lease
                await second.enter_async_context(coord.unit("job").hold())  # the re-run
            # the first lease is dropped here, unreleased
            await settle(coord, "job")
            assert (await coord.unit("job").info()).status is Status.STARTED
        await settle(coord, "job")  # the second one is dropped too: that one counts
        info = await coord.unit("job").info()
        assert (info.status, info.reason) == (Status.FAILED, HOLDER_GONE)

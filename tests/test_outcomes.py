"""Outcomes beyond completed: the ``skipped`` status and the ``finished`` requirement, run
against both coordinators (in process and over RPC) with the same assertions."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from coordinator import (
    AlreadyInStatus,
    DependencyFailed,
    Status,
    UnitNotFound,
    open_coordinator,
)

from .waits import WAIT, settle


async def test_finished_is_met_by_every_outcome_and_by_nothing_else(coord) -> None:
    with trio.fail_after(WAIT):
        ends = ("completed", "failed", "skipped")
        await coord.unit("report").want(*ends, requires=Status.FINISHED)
        await coord.unit("completed").start()
        await coord.unit("failed").start()
        await coord.unit("skipped").register()
        info = await coord.unit("report").info()
        assert [(d.depends_on, d.required, d.satisfied) for d in info.dependencies] == [
            (unit, Status.FINISHED, False) for unit in ends
        ]  # started and pending are no outcome
        await coord.unit("completed").complete()
        await coord.unit("failed").fail("x")
        await coord.unit("skipped").skip("not needed")
        info = await coord.unit("report").info()
        assert [d.satisfied for d in info.dependencies] == [True, True, True], info
        assert info.ready and not info.blocked_by


async def test_a_failed_dependency_does_not_block_a_finished_edge(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("cleanup").want("build", requires=Status.FINISHED)
        await coord.unit("build").start()
        async with trio.open_nursery() as nursery:
            got: list[object] = []

            async def wait_ready() -> None:
                got.append(await coord.unit("cleanup").ready())

            nursery.start_soon(wait_ready)
            await settle(coord, "cleanup")
            assert got == []
            await coord.unit("build").fail("compile error")
        info = got[0]
        assert info.ready and info.dependencies[0].current is Status.FAILED  # type: ignore[attr-defined]
        await coord.unit("cleanup").start()


async def test_a_blocked_dependency_keeps_a_finished_edge_waiting_not_failed(coord) -> None:
    """build is blocked (its dependency failed); it will still have an outcome (its waiter
    marks it skipped), so a finished edge on it waits for that instead of failing."""
    with trio.fail_after(WAIT):
        await coord.unit("build").want("fetch")
        await coord.unit("report").want("build", requires=Status.FINISHED)
        await coord.unit("fetch").start()
        await coord.unit("fetch").fail("offline")
        await settle(coord, "report")
        report = await coord.unit("report").info()
        assert not report.ready and report.blocked_by == ""
        async with trio.open_nursery() as nursery:
            reached: list[str] = []

            async def wait(unit: str, status: Status) -> None:
                await coord.unit(unit).reached(status)
                reached.append(unit)

            nursery.start_soon(wait, "build", Status.FINISHED)
            await settle(coord, "build")
            assert reached == []  # blocked, but not finished: no DependencyFailed either
            await coord.unit("build").skip('dependency "fetch" failed: offline')
        assert reached == ["build"]
        assert (await coord.unit("report").ready()).ready


async def test_skip_only_what_has_not_started(coord) -> None:
    with trio.fail_after(WAIT):
        with pytest.raises(UnitNotFound):
            await coord.unit("ghost").skip()
        await coord.unit("a").register()
        await coord.unit("a").skip("not today")
        info = await coord.unit("a").info()
        assert (info.status, info.reason) == (Status.SKIPPED, "not today")
        for status, make in (
            (Status.SKIPPED, lambda: None),
            (Status.STARTED, lambda: coord.unit("a").start()),
            (Status.COMPLETED, lambda: coord.unit("a").complete()),
            (Status.FAILED, lambda: coord.unit("a").fail("x")),
        ):
            made = make()
            if made is not None:
                await made
            with pytest.raises(AlreadyInStatus) as caught:
                await coord.unit("a").skip()
            assert caught.value.status is status
        await coord.unit("a").start()  # a failed or skipped unit may be re-run
        assert (await coord.unit("a").info()).status is Status.STARTED


async def test_skipped_blocks_started_and_completed_dependents_and_names_the_root(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("claude").want("app")
        await coord.unit("app").want("git", requires=Status.STARTED)
        await coord.unit("git").register()
        async with trio.open_nursery() as nursery:
            errors: list[DependencyFailed] = []

            async def wait_ready(unit: str) -> None:
                with pytest.raises(DependencyFailed) as caught:
                    await coord.unit(unit).ready()
                errors.append(caught.value)

            nursery.start_soon(wait_ready, "claude")
            nursery.start_soon(wait_ready, "app")
            await settle(coord, "claude")
            await coord.unit("git").skip("no network")
        for error in errors:  # answered at once, naming the skipped root
            assert (error.unit, error.status, error.reason) == ("git", Status.SKIPPED, "no network")
            assert "was skipped: no network" in str(error)
        assert error.skip_reason == 'dependency "git" was skipped: no network'
        # app skipped because of git: the root of claude's chain is still git
        await coord.unit("app").skip('dependency "git" was skipped: no network')
        await settle(coord, "claude")
        assert (await coord.unit("claude").info()).blocked_by == "git"
        with pytest.raises(DependencyFailed) as caught:
            await coord.unit("claude").reached(Status.COMPLETED)
        assert caught.value.path == ("claude", "app", "git")
        # a unit skipped on its own account is the root
        await coord.unit("solo").want("quiet")
        await coord.unit("quiet").register()
        await coord.unit("quiet").skip()
        await settle(coord, "solo")
        assert (await coord.unit("solo").info()).blocked_by == "quiet"
        # and re-running git unblocks everything downstream
        await coord.unit("git").start()
        await coord.unit("app").start()
        await settle(coord, "claude")
        assert (await coord.unit("claude").info()).blocked_by == ""


async def test_watch_shows_skips(coord) -> None:
    with trio.fail_after(WAIT):
        async with coord.watch() as events:
            await coord.unit("x").register()
            await coord.unit("x").skip("because")
            seen = [await events.__anext__() for _ in range(2)]
        assert [(e.unit, e.old, e.new, e.reason) for e in seen] == [
            ("x", Status.NOT_REGISTERED, Status.PENDING, ""),
            ("x", Status.PENDING, Status.SKIPPED, "because"),
        ]


async def test_skipped_and_finished_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with trio.fail_after(WAIT):
        async with open_coordinator(state=state) as coord:
            await coord.unit("report").want("build", requires=Status.FINISHED)
            await coord.unit("claude").want("build")
            await coord.unit("build").register()
            await coord.unit("build").skip("not needed")
        async with open_coordinator(state=state) as coord:
            build = await coord.unit("build").info()
            assert (build.status, build.reason) == (Status.SKIPPED, "not needed")
            report = await coord.unit("report").info()
            assert report.ready and report.dependencies[0].required is Status.FINISHED
            claude = await coord.unit("claude").info()
            assert (claude.ready, claude.blocked_by) == (False, "build")
            await trio.testing.wait_all_tasks_blocked()

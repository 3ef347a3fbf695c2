"""Where unitsync differs from coder on purpose, and the promises coder does not have."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from coordinator import (
    CoordinatorClosed,
    CycleError,
    DependencyFailed,
    InvalidArgument,
    Lagged,
    NotReady,
    Status,
    UnitInfo,
    open_coordinator,
)
from coordinator._names import MAX_DEPENDENCIES

from .waits import WAIT, settle

# --- "reached" requirements -----------------------------------------------------------------


async def test_started_requirement_stays_met_when_dependency_completes(coord) -> None:
    # coder compares for equality: its `started` requirement became unmet again here.
    with trio.fail_after(WAIT):
        await coord.unit("claude").want("git", requires=Status.STARTED)
        await coord.unit("git").start()
        assert (await coord.unit("claude").info()).ready
        await coord.unit("git").complete()
        info = await coord.unit("claude").info()
        assert info.ready
        assert info.dependencies[0].current is Status.COMPLETED
        assert info.dependencies[0].satisfied


async def test_dependency_going_back_makes_requirement_unmet(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("claude").want("git")
        await coord.unit("git").start()
        await coord.unit("git").complete()
        assert (await coord.unit("claude").info()).ready
        await coord.unit("git").start()  # a re-run: completed -> started
        assert not (await coord.unit("claude").info()).ready


async def test_start_not_ready_lists_unmet(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("claude").want("git", "dotfiles", "setup")
        await coord.unit("dotfiles").register()
        await coord.unit("dotfiles").complete()
        with pytest.raises(NotReady) as caught:
            await coord.unit("claude").start()
        assert caught.value.unmet == ("git", "setup")
        assert (await coord.unit("claude").info()).status is Status.PENDING


async def test_want_declares_at_most_1000_dependencies_per_call(coord) -> None:
    with trio.fail_after(WAIT):
        deps = [f"d{i}" for i in range(MAX_DEPENDENCIES + 1)]
        with pytest.raises(InvalidArgument, match="1001 dependencies; at most 1000 per call"):
            await coord.unit("big").want(*deps)
        assert (await coord.unit("big").info()).status is Status.NOT_REGISTERED
        await coord.unit("big").want(*deps[:MAX_DEPENDENCIES])  # the limit itself is fine
        await coord.unit("big").want(deps[-1])  # and more calls may add more
        assert len((await coord.unit("big").info()).dependencies) == MAX_DEPENDENCIES + 1


async def test_a_requirement_that_is_not_started_or_completed_is_refused(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("a").want("b")
        for bad in (Status.PENDING, Status.FAILED, Status.NOT_REGISTERED):
            with pytest.raises(InvalidArgument, match="'started', 'completed' or 'finished'"):
                await coord.unit("a").want("new", "b", requires=bad)
        info = await coord.unit("a").info()
        assert [(d.depends_on, d.required) for d in info.dependencies] == [
            ("b", Status.COMPLETED)
        ]
        assert (await coord.unit("new").info()).status is Status.NOT_REGISTERED


async def test_a_long_failure_reason_is_cut_not_refused(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("build").start()
        await coord.unit("build").fail("é" * 6000)  # 12,000 UTF-8 bytes
        info = await coord.unit("build").info()
        assert info.status is Status.FAILED
        assert len(info.reason.encode()) <= 4096
        assert info.reason.startswith("é" * 2000) and info.reason.endswith("[cut: 12000 bytes]")


async def test_want_without_dependencies_registers(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("a").want()
        await coord.unit("a").want()
        assert [(u.name, u.status) for u in await coord.list()] == [("a", Status.PENDING)]


# --- the ready promise ----------------------------------------------------------------------


async def test_ready_is_pushed_when_dependencies_complete(coord) -> None:
    results: list[UnitInfo] = []

    async def waiter() -> None:
        results.append(await coord.unit("claude").ready())

    with trio.fail_after(WAIT):
        await coord.unit("claude").want("git", "dotfiles")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            await coord.unit("git").start()
            await coord.unit("git").complete()
            await settle(coord, "claude")
            assert results == []  # still needs dotfiles
            await coord.unit("dotfiles").start()
            await coord.unit("dotfiles").complete()
    (info,) = results
    assert info.ready and info.name == "claude"
    assert [d.current for d in info.dependencies] == [Status.COMPLETED, Status.COMPLETED]


@pytest.mark.parametrize("outcome", ["complete", "fail"])
async def test_ready_is_answered_the_moment_its_dependency_completes(
    autojump_clock: trio.testing.MockClock, outcome: str
) -> None:
    """Pushed, not polled, timed without a wall clock: under the autojump clock (virtual time
    jumps to the next deadline whenever every task waits), a parked ``ready()`` is answered at
    the same instant as the ``complete`` (or ``fail``) that decides it; a poll or a timer of any
    length between them would show as virtual time passing. (In-process only: over RPC the KJ
    thread runs on real time. The CLI tests check the same wake-up through real processes, by
    order.)"""
    async with open_coordinator() as coord:
        claude, git = coord.unit("claude"), coord.unit("git")
        answered: list[tuple[object, float]] = []

        async def waiter() -> None:
            try:
                answer: object = await claude.ready()
            except DependencyFailed as failed:
                answer = failed
            answered.append((answer, trio.current_time()))

        with trio.fail_after(WAIT):
            await claude.want("git")
            await git.start()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                assert (await coord.statistics()).ready_waiters == 1 and answered == []
                decided = trio.current_time()
                await (git.complete() if outcome == "complete" else git.fail("broken"))
    ((answer, when),) = answered
    assert when == decided
    if outcome == "complete":
        assert isinstance(answer, UnitInfo) and answer.ready, answer
    else:
        assert isinstance(answer, DependencyFailed) and answer.reason == "broken", answer


async def test_ready_resolves_at_once_when_ready(coord) -> None:
    with trio.fail_after(WAIT):
        info = await coord.unit("x").ready()
        assert (info.status, info.ready) == (Status.NOT_REGISTERED, True)
        await coord.unit("y").register()
        assert (await coord.unit("y").ready()).status is Status.PENDING


async def test_cancelled_ready_leaves_no_waiter(coord, server) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("claude").want("git")
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(coord.unit("claude").ready)
            await trio.testing.wait_all_tasks_blocked()
            await settle(coord, "claude")
            assert (await server.statistics()).ready_waiters == 10
            nursery.cancel_scope.cancel()
        await settle(coord, "claude")
        assert (await server.statistics()).ready_waiters == 0
        # and the unit still works
        await coord.unit("git").start()
        await coord.unit("git").complete()
        assert (await coord.unit("claude").ready()).ready


# --- failure propagation --------------------------------------------------------------------


async def test_fail_blocks_dependents_transitively_and_rerun_unblocks(coord, server) -> None:
    errors: dict[str, DependencyFailed] = {}

    async def wait_ready(name: str) -> None:
        with pytest.raises(DependencyFailed) as caught:
            await coord.unit(name).ready()
        errors[name] = caught.value

    with trio.fail_after(WAIT):
        await coord.unit("agent").want("claude")
        await coord.unit("claude").want("git")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_ready, "agent")
            nursery.start_soon(wait_ready, "claude")
            await trio.testing.wait_all_tasks_blocked()
            await settle(coord, "agent")
            await settle(coord, "claude")
            await coord.unit("git").start()
            await coord.unit("git").fail("clone failed: 403")
        assert (errors["claude"].unit, errors["claude"].reason, errors["claude"].path) == (
            "git", "clone failed: 403", ("claude", "git"),
        )
        assert (errors["agent"].unit, errors["agent"].path) == ("git", ("agent", "claude", "git"))
        assert "clone failed: 403" in str(errors["agent"])
        agent = await coord.unit("agent").info()
        assert (agent.blocked_by, agent.ready) == ("git", False)
        assert (await server.statistics()).ready_waiters == 0

        # a blocked unit's ready() fails at once
        with pytest.raises(DependencyFailed):
            await coord.unit("agent").ready()

        # a re-run unblocks everything downstream (blocking is derived, not stored)
        await coord.unit("git").start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(coord.unit("agent").ready)
            await trio.testing.wait_all_tasks_blocked()
            assert (await coord.unit("agent").info()).blocked_by == ""
            await coord.unit("git").complete()
            await coord.unit("claude").ready()
            await coord.unit("claude").start()
            await coord.unit("claude").complete()


async def test_met_requirement_is_not_blocked_by_an_upstream_failure(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("a").want("b")
        await coord.unit("b").want("c")
        await coord.unit("c").start()
        await coord.unit("c").complete()
        await coord.unit("b").start()
        await coord.unit("b").complete()
        await coord.unit("c").start()
        await coord.unit("c").fail("late")
        await trio.testing.wait_all_tasks_blocked()
        a = await coord.unit("a").info()
        assert (a.ready, a.blocked_by) == (True, "")  # b completed; what b needed no longer matters to a
        assert (await coord.unit("b").info()).blocked_by == ""  # b is completed: not waiting


async def test_reached_resolves_and_raises(coord) -> None:
    order: list[str] = []

    async def wait_for(status: Status) -> None:
        await coord.unit("git").reached(status)
        order.append(status.value)

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            for status in (Status.COMPLETED, Status.STARTED, Status.PENDING):
                nursery.start_soon(wait_for, status)
            await trio.testing.wait_all_tasks_blocked()
            await settle(coord, "git")
            await coord.unit("git").register()
            await settle(coord, "git")
            assert order == ["pending"]
            await coord.unit("git").start()
            await settle(coord, "git")
            assert order == ["pending", "started"]
            await coord.unit("git").complete()
        assert order == ["pending", "started", "completed"]
        await coord.unit("git").reached(Status.STARTED)  # completed reaches started: at once

        failures: list[DependencyFailed] = []

        async def expect_failure() -> None:
            with pytest.raises(DependencyFailed) as caught:
                await coord.unit("git").reached(Status.COMPLETED)
            failures.append(caught.value)

        await coord.unit("git").start()  # a re-run: completed -> started
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for, Status.FAILED)
            nursery.start_soon(expect_failure)
            await trio.testing.wait_all_tasks_blocked()
            await settle(coord, "git")
            await coord.unit("git").fail("oops")
        (failure,) = failures
        assert (failure.unit, failure.reason, failure.path) == ("git", "oops", ("git",))
        assert order[-1] == "failed"


async def test_reached_raises_when_blocked(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("claude").want("git")
        await coord.unit("git").start()
        await coord.unit("git").fail("no network")
        with pytest.raises(DependencyFailed) as caught:
            await coord.unit("claude").reached(Status.STARTED)
        assert caught.value.path == ("claude", "git")


# --- atomic multi-dependency want -----------------------------------------------------------


async def test_refused_multi_dependency_want_changes_nothing(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("git").want("setup")
        before = (await coord.graph(), await coord.list())
        with pytest.raises(CycleError) as caught:
            await coord.unit("setup").want("dotfiles", "git", "node")
        assert caught.value.path == ("setup", "git", "setup")
        assert (await coord.graph(), await coord.list()) == before
        assert "dotfiles" not in await coord.graph()


async def test_multi_dependency_want_is_applied_at_once(coord) -> None:
    with trio.fail_after(WAIT):
        await coord.unit("claude").want("git", "dotfiles", requires=Status.STARTED)
        deps = (await coord.unit("claude").info()).dependencies
        assert [(d.depends_on, d.required) for d in deps] == [
            ("dotfiles", Status.STARTED), ("git", Status.STARTED),
        ]


# --- watch ----------------------------------------------------------------------------------


async def test_watch_delivers_every_change_in_order(coord) -> None:
    with trio.fail_after(WAIT):
        async with coord.watch() as events:
            await coord.unit("claude").want("git")
            await coord.unit("git").start()
            await coord.unit("git").fail("boom")
            await coord.unit("git").start()
            await coord.unit("git").complete()
            seen = [await anext(events) for _ in range(6)]
    assert [(e.unit, e.old, e.new, e.reason, e.depends_on, e.requires) for e in seen] == [
        ("claude", Status.NOT_REGISTERED, Status.PENDING, "", "", Status.NOT_REGISTERED),
        ("claude", Status.PENDING, Status.PENDING, "", "git", Status.COMPLETED),  # an edge
        ("git", Status.NOT_REGISTERED, Status.STARTED, "", "", Status.NOT_REGISTERED),
        ("git", Status.STARTED, Status.FAILED, "boom", "", Status.NOT_REGISTERED),
        ("git", Status.FAILED, Status.STARTED, "", "", Status.NOT_REGISTERED),
        ("git", Status.STARTED, Status.COMPLETED, "", "", Status.NOT_REGISTERED),
    ]
    assert [e.is_edge for e in seen] == [False, True, False, False, False, False]
    assert [e.seq for e in seen] == list(range(seen[0].seq, seen[0].seq + 6))
    assert all(a.time <= b.time for a, b in zip(seen, seen[1:]))


async def test_lagging_watcher_is_cut_off_and_coordinator_goes_on(coord, server) -> None:
    with trio.fail_after(WAIT):
        async with coord.watch(buffer=4) as slow, coord.watch() as fast:
            for i in range(10):
                await coord.unit(f"u{i}").register()
            # the slow watcher still gets what was buffered, then Lagged -- never a silent gap
            got = [await anext(slow) for _ in range(4)]
            assert [e.unit for e in got] == ["u0", "u1", "u2", "u3"]
            with pytest.raises(Lagged) as caught:
                await anext(slow)
            assert (caught.value.seq, caught.value.buffer) == (got[-1].seq, 4)
            # the fast one has everything, and the coordinator did not wait for anyone
            assert [(await anext(fast)).unit for _ in range(10)] == [f"u{i}" for i in range(10)]
            await settle(coord)
            assert (await server.statistics()).watchers == 1


async def test_watch_unsubscribes_on_exit(coord, server) -> None:
    with trio.fail_after(WAIT):
        async with coord.watch():
            assert (await server.statistics()).watchers == 1
        await settle(coord)
        assert (await server.statistics()).watchers == 0


# --- nesting, shutdown, exceptions ----------------------------------------------------------


async def test_leaving_the_block_answers_outside_waiters_with_closed() -> None:
    outcomes: list[BaseException] = []

    async def park(coord) -> None:
        try:
            await coord.unit("claude").ready()
        except CoordinatorClosed as exc:
            outcomes.append(exc)

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as outside:
            async with open_coordinator() as coord:
                await coord.unit("claude").want("git")
                for _ in range(3):
                    outside.start_soon(park, coord)
                await trio.testing.wait_all_tasks_blocked()
            assert len(outcomes) == 3
        with pytest.raises(CoordinatorClosed):
            await coord.unit("claude").info()
        with pytest.raises(CoordinatorClosed):
            await coord.ping()
        with pytest.raises(CoordinatorClosed):
            async with coord.watch():
                pass


async def test_watchers_see_closed_when_coordinator_stops() -> None:
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as outside:
            async with open_coordinator() as coord:
                events = await outside.start(_watch_into_list, coord)
                await coord.unit("a").register()
                await trio.testing.wait_all_tasks_blocked()
        assert [type(x).__name__ for x in events] == ["Event", "CoordinatorClosed"]


async def _watch_into_list(coord, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    seen: list[object] = []
    async with coord.watch() as events:
        task_status.started(seen)
        try:
            async for event in events:
                seen.append(event)
        except CoordinatorClosed as exc:
            seen.append(exc)


async def test_exception_in_body_propagates_unwrapped() -> None:
    with trio.fail_after(WAIT):
        with pytest.raises(KeyError, match="body"):
            async with open_coordinator() as coord:
                await coord.unit("a").register()
                raise KeyError("body")


async def test_cancelling_the_caller_stops_everything() -> None:
    with trio.fail_after(WAIT):
        with trio.CancelScope() as scope:
            async with open_coordinator() as coord:
                await coord.unit("claude").want("git")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(coord.unit("claude").ready)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
                    await trio.sleep_forever()
        assert scope.cancelled_caught
        with pytest.raises(CoordinatorClosed):
            await coord.unit("claude").info()


async def test_ping_returns_version(coord) -> None:
    from coordinator import __version__

    with trio.fail_after(WAIT):
        assert await coord.ping() == __version__

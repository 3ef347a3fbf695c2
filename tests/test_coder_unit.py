"""Every behaviour of coder's ``agent/unit`` tests, ported to our API.

Each test is named after its origin (``TestManager_<Group>/<Case>``). Where coder's library
differs from the behaviour its service and CLI settled on (an unregistered unit is ready; ``want``
registers the dependent), we follow the service and say so.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from coordinator import (
    AlreadyInStatus,
    AlreadyRegistered,
    Coordinator,
    CycleError,
    InvalidName,
    Status,
    UnitNotFound,
)

from .waits import WAIT

A, B, C, D = "serviceA", "serviceB", "serviceC", "serviceD"


async def status(coord: Coordinator, name: str) -> Status:
    return (await coord.unit(name).info()).status


async def is_ready(coord: Coordinator, name: str) -> bool:
    return (await coord.unit(name).info()).ready


async def unmet(coord: Coordinator, name: str) -> list[str]:
    return [d.depends_on for d in (await coord.unit(name).info()).dependencies if not d.satisfied]


async def register(coord: Coordinator, *names: str) -> None:
    for name in names:
        await coord.unit(name).register()


# --- empty names ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "x" * 256, "a\nb", "tab\there", "nul\x00", "\x7f"])
async def test_EmptyUnitName_rejected_everywhere(coord: Coordinator, bad: str) -> None:
    with trio.fail_after(WAIT):
        with pytest.raises(InvalidName):
            coord.unit(bad)
        with pytest.raises(InvalidName):
            await coord.unit(A).want(bad)
        # nothing was registered by the refused calls
        assert await coord.list() == []


async def test_longest_and_unicode_names_accepted(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        longest = "é" * 127 + "x"  # 255 bytes
        await coord.unit(longest).register()
        await coord.unit("claude 🤖 \"quoted\" \\ -> {x};").want(longest)
        assert [u.name for u in await coord.list()] == sorted([longest, "claude 🤖 \"quoted\" \\ -> {x};"])


# --- TestManager_Register -----------------------------------------------------------------------


async def test_Register_RegisterNewUnit(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).register()
        info = await coord.unit(A).info()
        assert (info.name, info.status, info.ready) == (A, Status.PENDING, True)


async def test_Register_RegisterDuplicateUnit(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).register()
        await coord.unit(A).start()
        with pytest.raises(AlreadyRegistered, match="already registered"):
            await coord.unit(A).register()
        assert await status(coord, A) is Status.STARTED  # not overwritten back to pending
        assert await is_ready(coord, A)


async def test_Register_RegisterMultipleUnits(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B, C)
        for name in (A, B, C):
            info = await coord.unit(name).info()
            assert (info.status, info.ready) == (Status.PENDING, True)
        assert [u.name for u in await coord.list()] == [A, B, C]


# --- TestManager_AddDependency ------------------------------------------------------------------


async def test_AddDependency_AddDependencyBetweenRegisteredUnits(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B)
        await coord.unit(A).want(B, requires=Status.STARTED)
        assert (await status(coord, A), await is_ready(coord, A)) == (Status.PENDING, False)
        assert (await status(coord, B), await is_ready(coord, B)) == (Status.PENDING, True)
        await coord.unit(B).start()
        assert await is_ready(coord, A)
        # coder sets B back to pending; our way back is a failure (and a re-run after it)
        await coord.unit(B).fail("crashed")
        assert not await is_ready(coord, A)
        await coord.unit(B).start()
        assert await is_ready(coord, A)


async def test_AddDependency_AddDependencyByAnUnregisteredDependentUnit(coord: Coordinator) -> None:
    # coder's library refuses this; its service (and we) register the dependent instead.
    with trio.fail_after(WAIT):
        await coord.unit(B).register()
        await coord.unit(A).want(B, requires=Status.STARTED)
        info = await coord.unit(A).info()
        assert (info.status, info.ready) == (Status.PENDING, False)
        assert [(d.depends_on, d.required, d.current) for d in info.dependencies] == [
            (B, Status.STARTED, Status.PENDING)
        ]


async def test_AddDependency_AddDependencyOnAnUnregisteredUnit(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).register()
        await coord.unit(A).want(B, requires=Status.STARTED)
        assert await status(coord, B) is Status.NOT_REGISTERED
        assert not await is_ready(coord, A)
        await coord.unit(B).register()
        assert not await is_ready(coord, A)  # registered, but not started
        await coord.unit(B).start()
        assert await is_ready(coord, A)
        # B is listed only once it is registered
        assert [u.name for u in await coord.list()] == [A, B]


async def test_AddDependency_AddDependencyCreatesACyclicDependency(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B, C, D)
        await coord.unit(A).want(B, requires=Status.STARTED)
        await coord.unit(B).want(C, requires=Status.STARTED)
        await coord.unit(C).want(D, requires=Status.STARTED)
        with pytest.raises(CycleError) as caught:
            await coord.unit(D).want(A, requires=Status.STARTED)
        assert caught.value.path == (D, A, B, C, D)
        assert f"{D} -> {A} -> {B} -> {C} -> {D}" in str(caught.value)
        assert (await coord.unit(D).info()).dependencies == ()


async def test_AddDependency_RedeclaringReplacesRequirement(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).want(B, requires=Status.STARTED)
        await coord.unit(A).want(B, requires=Status.COMPLETED)
        deps = (await coord.unit(A).info()).dependencies
        assert [(d.depends_on, d.required) for d in deps] == [(B, Status.COMPLETED)]
        await coord.unit(B).start()
        assert not await is_ready(coord, A)  # started no longer suffices
        await coord.unit(A).want(B, requires=Status.STARTED)
        assert await is_ready(coord, A)
        assert len((await coord.unit(A).info()).dependencies) == 1


# --- TestManager_UpdateStatus -------------------------------------------------------------------


async def test_UpdateStatus_UpdateStatusTriggersReadinessRecalculation(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B)
        await coord.unit(A).want(B, requires=Status.STARTED)
        assert (await status(coord, A), await is_ready(coord, A)) == (Status.PENDING, False)
        await coord.unit(B).start()
        # readiness of the dependent changes; its status does not
        assert (await status(coord, A), await is_ready(coord, A)) == (Status.PENDING, True)


async def test_UpdateStatus_UpdateStatusWithUnregisteredUnit(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        with pytest.raises(UnitNotFound) as caught:
            await coord.unit(A).complete()
        assert caught.value.name == A
        with pytest.raises(UnitNotFound):
            await coord.unit(A).fail("x")
        assert await status(coord, A) is Status.NOT_REGISTERED


async def test_UpdateStatus_LinearChainDependencies(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B, C)
        await coord.unit(A).want(B, requires=Status.STARTED)
        await coord.unit(B).want(C, requires=Status.COMPLETED)
        assert [await is_ready(coord, n) for n in (A, B, C)] == [False, False, True]
        await coord.unit(C).complete()
        assert [await is_ready(coord, n) for n in (A, B, C)] == [False, True, True]
        await coord.unit(B).start()
        assert [await is_ready(coord, n) for n in (A, B, C)] == [True, True, True]
        assert [await status(coord, n) for n in (A, B, C)] == [
            Status.PENDING, Status.STARTED, Status.COMPLETED,
        ]


async def test_UpdateStatus_SameStatusRefused(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).start()
        with pytest.raises(AlreadyInStatus, match="already started"):
            await coord.unit(A).start()
        await coord.unit(A).complete()
        with pytest.raises(AlreadyInStatus, match="already completed"):
            await coord.unit(A).complete()
        await coord.unit(A).fail("x")
        with pytest.raises(AlreadyInStatus, match="already failed"):
            await coord.unit(A).fail("y")
        assert (await coord.unit(A).info()).reason == "x"


async def test_UpdateStatus_CompleteFromPending(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).register()
        await coord.unit(A).complete()
        assert await status(coord, A) is Status.COMPLETED


# --- TestManager_GetUnmetDependencies -----------------------------------------------------------


async def test_GetUnmetDependencies_ForUnitWithNoDependencies(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).register()
        assert await unmet(coord, A) == []


async def test_GetUnmetDependencies_ForUnitWithUnsatisfiedDependencies(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B)
        await coord.unit(A).want(B, requires=Status.STARTED)
        (dep,) = (await coord.unit(A).info()).dependencies
        assert (dep.depends_on, dep.required, dep.current, dep.satisfied) == (
            B, Status.STARTED, Status.PENDING, False,
        )


async def test_GetUnmetDependencies_ForUnitWithSatisfiedDependencies(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B)
        await coord.unit(A).want(B, requires=Status.STARTED)
        await coord.unit(B).start()
        assert await unmet(coord, A) == []


async def test_GetUnmetDependencies_ForUnregisteredUnit(coord: Coordinator) -> None:
    # coder's library errors; its service answers "not registered, no dependencies" as we do.
    with trio.fail_after(WAIT):
        info = await coord.unit(A).info()
        assert (info.status, info.ready, info.dependencies) == (Status.NOT_REGISTERED, True, ())


# --- TestManager_MultipleDependencies -----------------------------------------------------------


async def test_MultipleDependencies_UnitWithMultipleDependencies(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B, C, D)
        await coord.unit(A).want(B, requires=Status.STARTED)
        await coord.unit(A).want(C, requires=Status.STARTED)
        assert await unmet(coord, A) == [B, C]
        await coord.unit(B).start()
        assert await unmet(coord, A) == [C]
        await coord.unit(C).start()
        assert await is_ready(coord, A)


async def test_MultipleDependencies_ComplexDependencyChain(coord: Coordinator) -> None:
    """The diamond: A needs B and C started; B and C need D completed."""
    with trio.fail_after(WAIT):
        await register(coord, A, B, C, D)
        await coord.unit(A).want(B, C, requires=Status.STARTED)
        await coord.unit(B).want(D)
        await coord.unit(C).want(D)
        assert [await is_ready(coord, n) for n in (A, B, C, D)] == [False, False, False, True]
        await coord.unit(D).complete()
        assert [await is_ready(coord, n) for n in (A, B, C, D)] == [False, True, True, True]
        await coord.unit(B).start()
        assert not await is_ready(coord, A)
        await coord.unit(C).start()
        assert await is_ready(coord, A)


async def test_MultipleDependencies_DifferentStatusTypes(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B, C)
        await coord.unit(A).want(B, requires=Status.STARTED)
        await coord.unit(A).want(C, requires=Status.COMPLETED)
        await coord.unit(B).start()
        assert await unmet(coord, A) == [C]
        await coord.unit(C).start()
        assert await unmet(coord, A) == [C]  # started does not satisfy completed
        await coord.unit(C).complete()
        assert await is_ready(coord, A)


# --- TestManager_IsReady ------------------------------------------------------------------------


async def test_IsReady_IsReadyWithUnregisteredUnit(coord: Coordinator) -> None:
    # coder's final behaviour (its service): an unregistered unit is ready.
    with trio.fail_after(WAIT):
        assert await status(coord, A) is Status.NOT_REGISTERED
        assert await is_ready(coord, A)
        assert (await coord.unit(A).ready()).status is Status.NOT_REGISTERED


# --- TestManager_ToDOT --------------------------------------------------------------------------


async def test_ToDOT_ExportSimpleGraph(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B)
        await coord.unit(A).want(B, requires=Status.STARTED)
        assert await coord.graph() == (
            "digraph unitsync {\n"
            f'  "{A}" [label="{A}\\npending"];\n'
            f'  "{B}" [label="{B}\\npending"];\n'
            f'  "{A}" -> "{B}" [label="started"];\n'
            "}\n"
        )


async def test_ToDOT_ExportComplexGraph(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await register(coord, A, B, C)
        await coord.unit(A).want(B, C, requires=Status.STARTED)
        await coord.unit(B).want(D)
        await coord.unit(C).want(D)
        await coord.unit(C).fail("boom")
        dot = await coord.graph()
    assert dot.startswith("digraph unitsync {\n")
    assert f'  "{B}" [label="{B}\\npending"];\n' in dot
    assert f'  "{C}" [label="{C}\\nfailed"];\n' in dot
    assert f'  "{D}" [label="{D}\\nnot registered"];\n' in dot
    for edge in (f'"{A}" -> "{B}" [label="started"]', f'"{A}" -> "{C}" [label="started"]',
                 f'"{B}" -> "{D}" [label="completed"]', f'"{C}" -> "{D}" [label="completed"]'):
        assert edge in dot


# --- graph_test.go: cycles ----------------------------------------------------------------------


async def test_Graph_SelfReference_refused_unchanged(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).register()
        before = await coord.graph()
        with pytest.raises(CycleError) as caught:
            await coord.unit(A).want(A)
        assert caught.value.path == (A, A)
        assert await coord.graph() == before


async def test_Graph_Cycle_two_nodes_refused_unchanged(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).want(B)
        before = await coord.graph()
        with pytest.raises(CycleError) as caught:
            await coord.unit(B).want(A)
        assert caught.value.path == (B, A, B)
        assert await coord.graph() == before
        assert await status(coord, B) is Status.NOT_REGISTERED  # the refused want registered nothing


# --- concurrency --------------------------------------------------------------------------------


async def test_Concurrency_50_tasks_add_the_same_cycle_closing_edge(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.unit(A).want(B)
        await coord.unit(B).want(C)
        refused: list[tuple[str, ...]] = []

        async def close_cycle() -> None:
            with pytest.raises(CycleError) as caught:
                await coord.unit(C).want(A)
            refused.append(caught.value.path)

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(close_cycle)
        assert refused == [(C, A, B, C)] * 50
        assert (await coord.unit(C).info()).dependencies == ()


async def test_Concurrency_100_readers_alongside_20_writers(coord: Coordinator) -> None:
    """20 writers each build and run a chain link ``w{i}`` → ``w{i+1}``; 100 readers read all the
    while. Every read is a consistent snapshot: a satisfied dependency really has its status."""
    bad: list[str] = []

    async def writer(i: int) -> None:
        me = coord.unit(f"w{i:02}")
        if i < 19:
            await me.want(f"w{i + 1:02}")
        await me.ready()
        await me.start()
        await me.complete()

    async def reader(i: int) -> None:
        for _ in range(10):
            info = await coord.unit(f"w{i % 20:02}").info()
            for dep in info.dependencies:
                if dep.satisfied != dep.current.reaches(dep.required):
                    bad.append(f"{info.name}: {dep}")
            await trio.lowlevel.checkpoint()

    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(writer, i)
            for i in range(100):
                nursery.start_soon(reader, i)
        assert bad == []
        infos = await coord.list()
        assert [(u.name, u.status) for u in infos] == [(f"w{i:02}", Status.COMPLETED) for i in range(20)]

"""``apply``: several units and their edges declared as one step, all or nothing."""

from __future__ import annotations

import pytest
import trio

from coordinator import (
    Coordinator,
    CycleError,
    InvalidArgument,
    InvalidName,
    Overloaded,
    Status,
    open_coordinator,
)

from .waits import WAIT

C, S, F = Status.COMPLETED, Status.STARTED, Status.FINISHED

WORKSPACE = {
    "ssh-key": {},
    "git": {"ssh-key": C},
    "dotfiles": {},
    "claude": {"git": C, "dotfiles": S},
    "report": {"claude": F},
}


async def shape(coord: Coordinator) -> list[tuple[str, str, tuple[tuple[str, Status], ...]]]:
    return [
        (u.name, u.status.value, tuple((d.depends_on, d.required) for d in u.dependencies))
        for u in await coord.list()
    ]


async def test_apply_registers_every_unit_and_links_every_edge(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.apply(WORKSPACE)
        assert await shape(coord) == [
            ("claude", "pending", (("dotfiles", S), ("git", C))),
            ("dotfiles", "pending", ()),
            ("git", "pending", (("ssh-key", C),)),
            ("report", "pending", (("claude", F),)),
            ("ssh-key", "pending", ()),
        ]
        assert not (await coord.unit("claude").info()).ready


async def test_applying_the_same_graph_again_changes_nothing(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.apply(WORKSPACE)
        await coord.unit("ssh-key").start()
        before, events = await shape(coord), (await coord.history()).last
        await coord.apply(WORKSPACE)
        assert await shape(coord) == before  # ssh-key is still started
        assert (await coord.history()).last == events  # not one event


async def test_a_cycle_anywhere_refuses_the_whole_apply(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await coord.apply({"git": {"ssh-key": C}})
        before, events = await shape(coord), (await coord.history()).last
        with pytest.raises(CycleError) as caught:
            await coord.apply({"new": {"git": C}, "ssh-key": {"claude": C}, "claude": {"git": C}})
        assert caught.value.path == ("claude", "git", "ssh-key", "claude")  # the edge that closed it
        assert await shape(coord) == before and (await coord.history()).last == events
        with pytest.raises(CycleError):  # within the call's own edges
            await coord.apply({"a": {"b": C}, "b": {"a": C}})
        assert await shape(coord) == before


async def test_bad_names_and_requirements_are_refused_before_anything_changes(
    coord: Coordinator,
) -> None:
    with trio.fail_after(WAIT):
        with pytest.raises(InvalidName):
            await coord.apply({"ok": {}, "bad\nname": {}})
        with pytest.raises(InvalidArgument):
            await coord.apply({"ok": {"dep": Status.FAILED}})
        assert await shape(coord) == []


async def test_apply_past_the_unit_limit_changes_nothing() -> None:
    with trio.fail_after(WAIT):
        async with open_coordinator(max_units=4) as coord:
            await coord.apply({"a": {}, "b": {}})
            with pytest.raises(Overloaded):
                await coord.apply({"c": {"d": C}, "e": {}})
            assert [u.name for u in await coord.list()] == ["a", "b"]

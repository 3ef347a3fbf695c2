"""Posted states settled in the poster's turn (``coordinator/_settling.py``): dependents between
messages — their task waiting, or asleep — are settled without a task switch each; the order
ARCHITECTURE §3 promises holds; a chain deeper than Python's recursion limit settles; and a
failing settle leaves nobody's posted state stranded."""

from __future__ import annotations

import itertools
import sys

import pytest
import trio
import trio.testing

from coordinator import DependencyFailed, LocalCoordinator, Status
from coordinator import _operations as operations
from coordinator._settling import Settling

from .waits import WAIT


def actor(coord: LocalCoordinator, name: str):  # type: ignore[no-untyped-def]
    return coord._registry._inboxes[name].sleeper


async def test_every_dependent_is_told_before_any_waiter_hears(server: LocalCoordinator) -> None:
    """The moment a waiter of one dependent is answered (its callback runs in the answering
    turn), every other dependent already knows the dependency completed: the posts all come
    before the first settle."""
    names = [f"w{i}" for i in range(50)]
    told: list[bool] = []

    def answered(result: object) -> None:
        for other in names:
            known = actor(server, other).state.info().dependencies[0].current
            posted = server._registry._inboxes[other].states.get("dep")  # not read yet
            told.append(Status.COMPLETED in (known, posted and posted.status))

    with trio.fail_after(WAIT):
        await server.apply({**{n: {"dep": Status.COMPLETED} for n in names}, "dep": {}})
        for name in names:
            server.submit(operations.ready(name), answered)
        await trio.testing.wait_all_tasks_blocked()
        assert told == []
        await server.unit("dep").start()
        await server.unit("dep").complete()
    assert len(told) == len(names) ** 2 and all(told)


@pytest.mark.parametrize("waiting", [True, False], ids=["awake-with-waiters", "asleep"])
async def test_a_chain_deeper_than_the_recursion_limit_settles(
    server: LocalCoordinator, waiting: bool
) -> None:
    """A failure at the head of a chain of units blocks every one after it, each settled in
    the turn of the one before (a worklist, not recursion); asleep, none of them is woken."""
    depth = sys.getrecursionlimit() + 200
    names = [f"u{i}" for i in range(depth)]
    failures: list[BaseException] = []

    async def wait(name: str) -> None:
        try:
            await server.unit(name).ready()
        except DependencyFailed as error:
            failures.append(error)

    with trio.fail_after(WAIT):
        await server.apply({names[0]: {}, **{
            name: {before: Status.COMPLETED} for before, name in itertools.pairwise(names)
        }})
        async with trio.open_nursery() as nursery:
            if waiting:
                for name in names[1:]:
                    nursery.start_soon(wait, name)
            else:
                await server.sleep_idle()
            await trio.testing.wait_all_tasks_blocked()
            await server.unit(names[0]).fail("broken")
            if not waiting:
                awake = {n for n in names if not server._registry._inboxes[n].asleep}
                assert awake == {names[0]}  # the chain settled without a task
        last = await server.unit(names[-1]).info()
    assert last.blocked_by == names[0] and not last.ready
    assert len(failures) == (depth - 1 if waiting else 0)
    assert all(error.unit == names[0] and error.reason == "broken" for error in failures)
    if waiting:  # each waiter is told the whole chain down to the failure
        assert max(len(error.path) for error in failures) == depth


class _Actor:
    """Stands in for a unit actor: logs what :class:`Settling` asks of it."""

    def __init__(self, name: str, log: list[str], fails: bool = False):
        self.name, self._log, self._fails = name, log, fails

    def settle_posted(self) -> None:
        self._log.append(f"settle {self.name}")
        if self._fails:
            raise RuntimeError(self.name)

    def poke(self) -> None:
        self._log.append(f"poke {self.name}")


def test_a_post_queues_until_the_outermost_post_ends() -> None:
    settling, log = Settling(), []
    a, b = _Actor("a", log), _Actor("b", log)
    assert settling.posting()  # the outermost post
    assert not settling.posting()  # one inside it
    settling.add(a)
    settling.add(b)
    assert log == []
    settling.drain()
    assert log == ["settle a", "settle b"]
    settling.add(a)  # outside any post: at once
    assert log[-1] == "settle a"


def test_a_settle_that_raises_leaves_the_rest_to_their_tasks() -> None:
    settling, log = Settling(), []
    assert settling.posting()
    for name, fails in (("a", False), ("b", True), ("c", False), ("d", False)):
        settling.add(_Actor(name, log, fails))
    with pytest.raises(RuntimeError, match="b"):
        settling.drain()
    assert log == ["settle a", "settle b", "poke c", "poke d"]
    settling.add(_Actor("e", log))  # not left busy
    assert log[-1] == "settle e"

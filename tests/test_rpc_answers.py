"""The server's lean answers (issue 17): ``set_info``'s templates write what ``fill_info``
writes, and an ``Answer`` is a coroutine whether or not the loop's task factory skips its task."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from coordinator._api import Dependency, UnitInfo
from coordinator._status import Status
from coordinator.rpc._bridge import Answer, _Handoff, answer_task_factory
from coordinator.rpc._convert import fill_info, read_info, set_info
from coordinator.rpc._schema import schema

S = schema()
READY_RESULTS = S.Unit.schema.methods["ready"].result_type

INFOS = [
    UnitInfo(name="a", status=Status.PENDING, ready=False, blocked_by="", dependencies=(
        Dependency(depends_on="dep", required=Status.COMPLETED, current=Status.STARTED,
                   satisfied=False),
    )),
    UnitInfo(name="b", status=Status.SKIPPED, ready=True, reason="dependency \"x\" failed",
             blocked_by="x", dependencies=(
        Dependency(depends_on="x", required=Status.FINISHED, current=Status.FAILED,
                   satisfied=True),
        Dependency(depends_on="y", required=Status.STARTED, current=Status.COMPLETED,
                   satisfied=True),
    )),
    UnitInfo(name="", status=Status.NOT_REGISTERED, ready=True),
]


def results() -> object:
    import capnp

    return capnp._MallocMessageBuilder().init_root(READY_RESULTS)


@pytest.mark.parametrize("revision", [1, 2, 3])
def test_set_info_writes_what_fill_info_writes(revision: int) -> None:
    """For every revision, and for many names sharing one template (a fan-out's answers)."""
    for info in INFOS:
        for name in ("w1", "w2", info.name, "ü" * 40):
            named = dataclasses.replace(info, name=name)
            filled, copied = results(), results()
            fill_info(filled.info, named, revision)  # type: ignore[attr-defined]
            set_info(copied, named, revision)
            assert str(copied.info) == str(filled.info)  # type: ignore[attr-defined]
            if revision == 3:
                assert read_info(copied.info) == named  # type: ignore[attr-defined]


async def _answered(factory: bool, cancel: bool) -> asyncio.Future[None]:
    loop = asyncio.get_running_loop()
    if factory:
        loop.set_task_factory(answer_task_factory)
    call: asyncio.Future[None] = loop.create_future()
    task = asyncio.create_task(Answer(call))
    assert (task is call) == factory  # with the factory, the call is its own task
    await asyncio.sleep(0)
    if cancel:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        call.set_result(None)
        assert await task is None
    return call


@pytest.mark.parametrize("factory", [True, False])
@pytest.mark.parametrize("cancel", [True, False])
def test_an_answer_is_a_coroutine_with_or_without_the_factory(factory: bool, cancel: bool) -> None:
    call = asyncio.run(_answered(factory, cancel))
    assert call.cancelled() == cancel  # cancelling the task cancels the call: pycapnp's Finish
    assert asyncio.run(_plain()) == "other coroutines still get a task"


async def _plain() -> str:
    asyncio.get_running_loop().set_task_factory(answer_task_factory)

    async def work() -> str:
        await asyncio.sleep(0)
        return "other coroutines still get a task"

    task = asyncio.create_task(work())
    assert isinstance(task, asyncio.Task)
    return await task


def test_a_handoff_wakes_once_per_burst_and_keeps_order() -> None:
    """What is put while a run goes on is run by that run, in order: a burst costs one
    wake-up; a put after the run schedules the next."""
    wakes: list[object] = []
    ran: list[str] = []
    handoff = _Handoff(wakes.append)

    def first() -> None:
        ran.append("first")
        handoff.put(lambda: ran.append("third"))  # the producer adds during the run

    handoff.put(first)
    handoff.put(lambda: ran.append("second"))
    assert len(wakes) == 1  # one wake-up for the burst
    wakes.pop()()
    assert ran == ["first", "second", "third"]
    assert len(wakes) == 1  # the put during the run asked for a run: it finds nothing left
    wakes.pop()()
    handoff.put(lambda: ran.append("fourth"))
    assert len(wakes) == 1
    wakes.pop()()
    assert ran == ["first", "second", "third", "fourth"] and not wakes

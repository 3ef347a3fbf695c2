"""open_service_nursery: the body's exception is never lost, whatever the services do."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from coordinator._nursery import open_service_nursery

from .waits import WAIT


async def crash_when_cancelled() -> None:
    try:
        await trio.sleep_forever()
    finally:
        raise RuntimeError("service crashed on its way out")


async def test_the_body_s_exception_propagates_unchanged() -> None:
    with trio.fail_after(WAIT), pytest.raises(ValueError, match="body"):
        async with open_service_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise ValueError("body")


async def test_a_service_crashing_while_the_body_raises_keeps_both() -> None:
    with trio.fail_after(WAIT), pytest.raises(ExceptionGroup) as caught:
        async with open_service_nursery() as nursery:
            nursery.start_soon(crash_when_cancelled)
            await trio.testing.wait_all_tasks_blocked()
            raise ValueError("body")
    kinds = sorted(type(e).__name__ for e in caught.value.exceptions)
    assert kinds == ["RuntimeError", "ValueError"]
    assert [str(e) for e in caught.value.exceptions if isinstance(e, ValueError)] == ["body"]


async def test_a_service_crash_cancels_the_body_and_propagates_alone() -> None:
    async def crash() -> None:
        raise RuntimeError("service crashed")

    reached_the_end = False
    with trio.fail_after(WAIT), pytest.raises(ExceptionGroup) as caught:
        async with open_service_nursery() as nursery:
            nursery.start_soon(crash)
            await trio.sleep_forever()  # cancelled by the crash
            reached_the_end = True
    assert [type(e) for e in caught.value.exceptions] == [RuntimeError]
    assert not reached_the_end

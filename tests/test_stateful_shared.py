"""The coordinator's hypothesis model (``test_stateful.py``) against two coordinators sharing
one workspace in a real etcd: each step goes to one or the other in turn, waiters park on
both, and after every step both must agree with the one reference model — the one-machine
semantics, across machines."""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import settings

from coordinator import LocalCoordinator, UnitInfo, open_coordinator

from .etcd_support import EtcdCluster, etcd_node, requires_etcd
from .test_stateful import NAMES, CoordinatorMachine, TrioThread

__all__ = ["etcd_node"]  # fixtures, used by name

pytestmark = requires_etcd

#: The module's etcd (the machine is made by hypothesis, which takes no pytest fixture).
_ENDPOINTS: list[str] = []


@pytest.fixture(autouse=True, scope="module")
def _etcd(etcd_node: EtcdCluster) -> Iterator[None]:
    _ENDPOINTS[:] = etcd_node.endpoints
    yield


class TwoCoordinators(TrioThread):
    """Two coordinators on one fresh workspace, in one Trio run on a thread of its own;
    :attr:`coord` is the one the next call goes to (they alternate)."""

    async def _main(self, started: queue.Queue[Any]) -> None:
        hosts = ",".join(e.removeprefix("http://") for e in _ENDPOINTS)
        url = f"etcd://{hosts}/model-{uuid.uuid4().hex[:12]}"
        stop = trio.Event()
        async with open_coordinator(store=url) as a, open_coordinator(store=url) as b, \
                trio.open_nursery() as nursery:
            self.both = (a, b)
            self.turn = 0
            started.put((a, nursery, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()
            nursery.cancel_scope.cancel()

    def next(self) -> LocalCoordinator:
        self.turn += 1
        self.coord = self.both[self.turn % 2]
        return self.coord


class SharedCoordinatorMachine(CoordinatorMachine):
    """The model against two coordinators sharing a workspace."""

    def __init__(self) -> None:  # CoordinatorMachine's, with two coordinators
        super(CoordinatorMachine, self).__init__()
        self.trio: TwoCoordinators = TwoCoordinators()  # type: ignore[assignment]
        self._answers = {}

    def attempt(self, method: str, name: str, *args: Any) -> BaseException | None:
        self.trio.next()
        return super().attempt(method, name, *args)

    def park(self, waiter: int, name: str, target: Any) -> None:
        self.trio.next()
        super().park(waiter, name, target)

    # (``apply`` goes to the coordinator of the step before: they alternate all the same)

    def observe(self) -> tuple[list[UnitInfo], list[tuple[str, str]]]:
        async def catch_up() -> None:  # each one's copy no older than this, waiters answered
            for coord in self.trio.both:
                await coord.unit(NAMES[0]).info()
            await trio.testing.wait_all_tasks_blocked()

        self.trio.call(catch_up)
        seen = []
        for _ in self.trio.both:
            self.trio.next()
            seen.append(super().observe())
        assert seen[0] == seen[1], seen  # the two copies agree
        return seen[0]


SharedCoordinatorMachine.TestCase.settings = settings(
    max_examples=6, stateful_step_count=20, deadline=None
)
test_two_coordinators_agree_with_model = SharedCoordinatorMachine.TestCase


class LongSharedCoordinatorMachine(SharedCoordinatorMachine):
    """The same, longer (``-m slow``)."""


LongSharedCoordinatorMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=30, deadline=None
)
test_two_coordinators_agree_with_model_at_length = pytest.mark.slow(
    LongSharedCoordinatorMachine.TestCase
)

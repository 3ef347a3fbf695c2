"""A hypothesis state machine: random want/register/start/complete/fail/re-run sequences against
a tiny reference model in plain dicts. After every step, status, ready, blocked-by and the graph
must agree with the model.

Hypothesis drives a synchronous state machine, so the coordinator runs in its own Trio thread
and each step is one ``trio.from_thread.run`` call into it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from coordinator import (
    AlreadyInStatus,
    AlreadyRegistered,
    CycleError,
    NotReady,
    Status,
    UnitNotFound,
    open_coordinator,
)

NAMES = ["a", "b", "c", "d", "e"]
names = st.sampled_from(NAMES)
requirements = st.sampled_from([Status.STARTED, Status.COMPLETED])


class TrioThread:
    """A coordinator in a Trio run on a thread of its own; :meth:`call` runs a coroutine there."""

    def __init__(self) -> None:
        started: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=trio.run, args=(self._main, started), daemon=True)
        self._thread.start()
        self.coord, self._token, self._stop = started.get(timeout=10)

    async def _main(self, started: queue.Queue[Any]) -> None:
        stop = trio.Event()
        async with open_coordinator() as coord:
            started.put((coord, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        async def bounded() -> Any:
            with trio.fail_after(10):
                return await fn(*args)

        return trio.from_thread.run(bounded, trio_token=self._token)

    def close(self) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout=10)


class Model:
    """The semantics of DESIGN §2 in the plainest possible code."""

    def __init__(self) -> None:
        self.status: dict[str, Status] = {}
        self.reason: dict[str, str] = {}
        self.edges: dict[str, dict[str, Status]] = {}

    def get(self, name: str) -> Status:
        return self.status.get(name, Status.NOT_REGISTERED)

    def unmet(self, name: str) -> list[str]:
        return sorted(d for d, req in self.edges.get(name, {}).items() if not self.get(d).reaches(req))

    def blocked_by(self, name: str) -> str:
        if self.get(name) in (Status.STARTED, Status.COMPLETED):
            return ""
        for dep in self.unmet(name):
            if self.get(dep) is Status.FAILED:
                return dep
            if root := self.blocked_by(dep):
                return root
        return ""

    def reaches(self, source: str, target: str) -> bool:
        todo, seen = [source], set()
        while todo:
            node = todo.pop()
            if node == target:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(self.edges.get(node, {}))
        return False


class CoordinatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.trio = TrioThread()
        self.model = Model()

    def teardown(self) -> None:
        self.trio.close()

    def attempt(self, method: str, name: str, *args: Any) -> BaseException | None:
        async def run() -> BaseException | None:
            try:
                await getattr(self.trio.coord.unit(name), method)(*args)
            except Exception as exc:  # compared with the model's expectation by the caller
                return exc
            return None

        return self.trio.call(run)

    @rule(unit=names, deps=st.lists(names, min_size=1, max_size=3), requires=requirements)
    def want(self, unit: str, deps: list[str], requires: Status) -> None:
        m = self.model
        closes = any(d == unit or m.reaches(d, unit) for d in deps)

        async def run() -> BaseException | None:
            try:
                await self.trio.coord.unit(unit).want(*deps, requires=requires)
            except CycleError as exc:
                return exc
            return None

        error = self.trio.call(run)
        if closes:
            assert isinstance(error, CycleError), error
            path = error.path
            assert path[0] == path[-1] == unit and path[1] in deps
            for u, d in zip(path[1:], path[2:]):
                assert d in m.edges.get(u, {}), f"{u}->{d} in {path} is not an edge"
        else:
            assert error is None, error
            m.edges.setdefault(unit, {}).update(dict.fromkeys(deps, requires))
            if m.get(unit) is Status.NOT_REGISTERED:
                m.status[unit] = Status.PENDING

    @rule(unit=names)
    def register(self, unit: str) -> None:
        error = self.attempt("register", unit)
        if self.model.get(unit) is Status.NOT_REGISTERED:
            assert error is None, error
            self.model.status[unit] = Status.PENDING
        else:
            assert isinstance(error, AlreadyRegistered), error

    @rule(unit=names)
    def start(self, unit: str) -> None:
        m = self.model
        error = self.attempt("start", unit)
        if m.get(unit) is Status.STARTED:
            assert isinstance(error, AlreadyInStatus), error
        elif m.unmet(unit):
            assert isinstance(error, NotReady), error
            assert list(error.unmet) == m.unmet(unit)
        else:
            assert error is None, error
            m.status[unit] = Status.STARTED
            m.reason[unit] = ""

    @rule()
    def doze(self) -> None:
        """Idle actors are asked to sleep (DESIGN §3) and the next step races with them acting
        on it: its request may queue behind the idle check. The invariants must hold as before."""
        self.trio.call(self.trio.coord.sleep_idle)

    @rule(unit=names)
    def complete(self, unit: str) -> None:
        self._finish(unit, "complete", Status.COMPLETED)

    @rule(unit=names, reason=st.sampled_from(["boom", "exit code 1"]))
    def fail(self, unit: str, reason: str) -> None:
        self._finish(unit, "fail", Status.FAILED, reason)

    def _finish(self, unit: str, method: str, status: Status, *reason: str) -> None:
        m = self.model
        error = self.attempt(method, unit, *reason)
        if m.get(unit) is Status.NOT_REGISTERED:
            assert isinstance(error, UnitNotFound), error
        elif m.get(unit) is status:
            assert isinstance(error, AlreadyInStatus), error
        else:
            assert error is None, error
            m.status[unit] = status
            m.reason[unit] = reason[0] if reason else ""

    @precondition(lambda self: True)
    @invariant()
    def agrees_with_model(self) -> None:
        async def snapshot() -> tuple[list[Any], str]:
            # transitive blocking travels one actor hop per message: let it settle first
            await trio.testing.wait_all_tasks_blocked()
            coord = self.trio.coord
            return [await coord.unit(n).info() for n in NAMES], await coord.graph()

        infos, dot = self.trio.call(snapshot)
        m = self.model
        for info in infos:
            expected = (
                m.get(info.name), m.reason.get(info.name, "") if m.get(info.name) is Status.FAILED else "",
                not m.unmet(info.name), m.blocked_by(info.name),
            )
            assert (info.status, info.reason, info.ready, info.blocked_by) == expected, info
            assert [(d.depends_on, d.required) for d in info.dependencies] == sorted(
                m.edges.get(info.name, {}).items()
            )
        edges = {(u, d) for u, deps in m.edges.items() for d in deps}
        assert dot.count(" -> ") == len(edges)
        for u, d in edges:
            assert f'"{u}" -> "{d}"' in dot


CoordinatorMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_coordinator_agrees_with_model = CoordinatorMachine.TestCase

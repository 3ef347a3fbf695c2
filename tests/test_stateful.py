"""Hypothesis state machines: random want/register/start/complete/fail/re-run sequences, and
parked ``ready``/``reached`` waiters, against one tiny reference model in plain dicts. After
every step, status, ready, blocked-by, the graph and every waiter's answer must agree with it.

The same rules run against two systems:

* :class:`CoordinatorMachine` — the whole coordinator (actors, inboxes, sleep). Hypothesis
  drives a synchronous state machine, so the coordinator runs in its own Trio thread and each
  step is one ``trio.from_thread.run`` call into it.
* :class:`UnitStateMachine` — the pure part: a :class:`UnitState` per unit, wired together as
  the actors wire them (``state_support.Network``), each step's posted states delivered in an order
  drawn by hypothesis; no coordinator, no Trio.
"""

from __future__ import annotations

import itertools
import queue
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from coordinator import (
    AlreadyInStatus,
    AlreadyRegistered,
    CycleError,
    DependencyFailed,
    NotReady,
    Status,
    UnitInfo,
    UnitNotFound,
    open_coordinator,
)

from .state_support import Network

NAMES = ["a", "b", "c", "d", "e"]
names = st.sampled_from(NAMES)
requirements = st.sampled_from([Status.STARTED, Status.COMPLETED, Status.FINISHED])
statuses = st.sampled_from([
    Status.PENDING, Status.STARTED, Status.COMPLETED, Status.FAILED, Status.SKIPPED,
    Status.FINISHED,
])
#: Outcomes that meet only ``finished``.
FAILURES = (Status.FAILED, Status.SKIPPED)

#: A waiter's answer as the model and the machines describe it: "ok", or the failed unit.
Outcome = str


def outcome_of(error: BaseException | None) -> Outcome:
    if error is None:
        return "ok"
    assert isinstance(error, DependencyFailed), repr(error)
    return f"failed: {error.unit}"


class Model:
    """The semantics of ARCHITECTURE §1 in the plainest possible code."""

    def __init__(self) -> None:
        self.status: dict[str, Status] = {}
        self.reason: dict[str, str] = {}
        self.edges: dict[str, dict[str, Status]] = {}
        #: Parked waiters: id -> (unit, None for ``ready`` or the status ``reached`` waits for).
        self.waiters: dict[int, tuple[str, Status | None]] = {}
        #: Waiters answered, and how.
        self.answered: dict[int, Outcome] = {}

    def get(self, name: str) -> Status:
        return self.status.get(name, Status.NOT_REGISTERED)

    def unmet(self, name: str) -> list[str]:
        return sorted(d for d, req in self.edges.get(name, {}).items() if not self.get(d).reaches(req))

    def blocked_by(self, name: str) -> str:
        """The root of the first chain (by name) that blocks ``name``: a failed unit, or a
        skipped one nothing blocks; a ``finished`` requirement never blocks."""
        if self.get(name) in (Status.STARTED, Status.COMPLETED):
            return ""
        for dep in self.unmet(name):
            if self.edges[name][dep] is Status.FINISHED:
                continue
            if self.get(dep) is Status.FAILED:
                return dep
            if root := self.blocked_by(dep):
                return root
            if self.get(dep) is Status.SKIPPED:
                return dep
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

    def answer(self, name: str, target: Status | None) -> Outcome | None:
        """How a waiter on ``name`` is answered now; None: it stays parked."""
        blocked_by = self.blocked_by(name)
        if target is None:  # ready
            if not self.unmet(name):
                return "ok"
        elif self.get(name).reaches(target):
            return "ok"
        elif self.get(name) in FAILURES:
            return f"failed: {name}"
        elif target is Status.FINISHED:  # a blocked unit still gets an outcome: wait for it
            return None
        return f"failed: {blocked_by}" if blocked_by else None

    def settle(self) -> None:
        """After a step: answer the waiters that can be."""
        for waiter, (name, target) in list(self.waiters.items()):
            if (outcome := self.answer(name, target)) is not None:
                del self.waiters[waiter]
                self.answered[waiter] = outcome


class ModelMachine(RuleBasedStateMachine):
    """The rules and the invariant; a subclass connects them to a system."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self._ids = itertools.count()

    # --- what a system provides ---------------------------------------------------------------

    def attempt(self, method: str, name: str, *args: Any) -> BaseException | None:
        """Call ``method`` of unit ``name``; the error it raised, if any."""
        raise NotImplementedError

    def park(self, waiter: int, name: str, target: Status | None) -> None:
        """Wait (in the background) for ``name`` to be ready (``target`` None) or to reach
        ``target``; the answer shows in :meth:`answers` once given."""
        raise NotImplementedError

    def answers(self) -> dict[int, Outcome]:
        raise NotImplementedError

    def observe(self) -> tuple[list[UnitInfo], list[tuple[str, str]]]:
        """Every unit's info (once everything has settled) and the graph's edges."""
        raise NotImplementedError

    # --- rules --------------------------------------------------------------------------------

    @rule(unit=names, deps=st.lists(names, min_size=1, max_size=3), requires=requirements)
    def want(self, unit: str, deps: list[str], requires: Status) -> None:
        m = self.model
        closes = any(d == unit or m.reaches(d, unit) for d in deps)
        error = self.attempt("want", unit, *deps, requires)
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
        m.settle()

    @rule(unit=names)
    def register(self, unit: str) -> None:
        error = self.attempt("register", unit)
        if self.model.get(unit) is Status.NOT_REGISTERED:
            assert error is None, error
            self.model.status[unit] = Status.PENDING
        else:
            assert isinstance(error, AlreadyRegistered), error
        self.model.settle()

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
        m.settle()

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
        m.settle()

    @rule(unit=names, reason=st.sampled_from(["", "not needed"]))
    def skip(self, unit: str, reason: str) -> None:
        m = self.model
        error = self.attempt("skip", unit, reason)
        if m.get(unit) is Status.NOT_REGISTERED:
            assert isinstance(error, UnitNotFound), error
        elif m.get(unit) is not Status.PENDING:
            assert isinstance(error, AlreadyInStatus), error
        else:
            assert error is None, error
            m.status[unit] = Status.SKIPPED
            m.reason[unit] = reason
        m.settle()

    @rule(unit=names, status=st.none() | statuses)
    def wait(self, unit: str, status: Status | None) -> None:
        """Park a waiter: ``ready()`` (``status`` None), or ``reached(status)``."""
        waiter = next(self._ids)
        self.model.waiters[waiter] = (unit, status)
        self.park(waiter, unit, status)
        self.model.settle()

    # --- the invariant ------------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        infos, edges = self.observe()
        m = self.model
        for info in infos:
            expected = (
                m.get(info.name), m.reason.get(info.name, "") if m.get(info.name) in FAILURES else "",
                not m.unmet(info.name), m.blocked_by(info.name),
            )
            assert (info.status, info.reason, info.ready, info.blocked_by) == expected, info
            assert [(d.depends_on, d.required) for d in info.dependencies] == sorted(
                m.edges.get(info.name, {}).items()
            )
        assert sorted(edges) == sorted((u, d) for u, deps in m.edges.items() for d in deps)
        assert self.answers() == m.answered


class TrioThread:
    """A coordinator in a Trio run on a thread of its own; :meth:`call` runs a coroutine there,
    :attr:`nursery` runs background tasks there."""

    def __init__(self) -> None:
        started: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=trio.run, args=(self._main, started), daemon=True)
        self._thread.start()
        self.coord, self.nursery, self._token, self._stop = started.get(timeout=10)

    async def _main(self, started: queue.Queue[Any]) -> None:
        stop = trio.Event()
        async with open_coordinator() as coord, trio.open_nursery() as nursery:
            started.put((coord, nursery, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()
            nursery.cancel_scope.cancel()

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        async def bounded() -> Any:
            with trio.fail_after(10):
                return await fn(*args)

        return trio.from_thread.run(bounded, trio_token=self._token)

    def close(self) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout=10)


class CoordinatorMachine(ModelMachine):
    """The model against the whole coordinator."""

    def __init__(self) -> None:
        super().__init__()
        self.trio = TrioThread()
        self._answers: dict[int, Outcome] = {}

    def teardown(self) -> None:
        self.trio.close()

    def attempt(self, method: str, name: str, *args: Any) -> BaseException | None:
        async def run() -> BaseException | None:
            unit = self.trio.coord.unit(name)
            try:
                if method == "want":
                    *deps, requires = args
                    await unit.want(*deps, requires=requires)
                else:
                    await getattr(unit, method)(*args)
            except Exception as exc:  # compared with the model's expectation by the caller
                return exc
            return None

        return self.trio.call(run)

    def park(self, waiter: int, name: str, target: Status | None) -> None:
        unit = self.trio.coord.unit(name)

        async def wait() -> None:
            try:
                if target is None:
                    info = await unit.ready()
                    assert info.ready, info
                else:
                    await unit.reached(target)
            except DependencyFailed as exc:
                self._answers[waiter] = outcome_of(exc)
            else:
                self._answers[waiter] = "ok"

        async def start() -> None:
            self.trio.nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()  # parked (or answered) before what follows

        self.trio.call(start)

    def answers(self) -> dict[int, Outcome]:
        return self._answers

    @rule(
        graph=st.dictionaries(names, st.lists(names, max_size=2), min_size=1, max_size=3),
        requires=requirements,
    )
    def apply(self, graph: dict[str, list[str]], requires: Status) -> None:
        """Several units and edges as one step: all of them, or (a cycle anywhere, with the
        graph or among themselves) none."""
        m = self.model
        before = {u: dict(deps) for u, deps in m.edges.items()}
        for unit, deps in graph.items():
            m.edges.setdefault(unit, {}).update(dict.fromkeys(deps, requires))
        closes = any(m.reaches(d, u) for u in graph for d in graph[u])

        async def run() -> BaseException | None:
            try:
                await self.trio.coord.apply(
                    {u: dict.fromkeys(deps, requires) for u, deps in graph.items()}
                )
            except Exception as exc:  # compared with the model's expectation below
                return exc
            return None

        error = self.trio.call(run)
        if closes:
            assert isinstance(error, CycleError), error
            path = error.path
            assert path[0] == path[-1]
            for u, d in zip(path, path[1:]):
                assert d in m.edges.get(u, {}), f"{u}->{d} in {path} is not an edge"
            m.edges = before
        else:
            assert error is None, error
            for unit in graph:
                if m.get(unit) is Status.NOT_REGISTERED:
                    m.status[unit] = Status.PENDING
        m.settle()

    @rule()
    def doze(self) -> None:
        """Idle actors are asked to sleep (ARCHITECTURE §2) and the next step races with them acting
        on it: its request may queue behind the idle check. The invariants must hold as before."""
        self.trio.call(self.trio.coord.sleep_idle)

    def observe(self) -> tuple[list[UnitInfo], list[tuple[str, str]]]:
        async def snapshot() -> tuple[list[UnitInfo], str]:
            # transitive blocking travels one actor hop per message: let it settle first
            await trio.testing.wait_all_tasks_blocked()
            coord = self.trio.coord
            return [await coord.unit(n).info() for n in NAMES], await coord.graph()

        infos, dot = self.trio.call(snapshot)
        edges = re.findall(r'"([^"]*)" -> "([^"]*)"', dot)
        assert len(edges) == dot.count(" -> ")
        return infos, edges


class UnitStateMachine(ModelMachine):
    """The model against the pure state machines, wired without actors."""

    @initialize(seed=st.integers(0, 2**32 - 1))
    def wire(self, seed: int) -> None:
        self.network = Network(seed)

    def attempt(self, method: str, name: str, *args: Any) -> BaseException | None:
        if method == "want":
            *deps, requires = args
            return self.network.want(name, deps, requires)
        return self.network.request(name, lambda state: getattr(state, method)(*args))

    def park(self, waiter: int, name: str, target: Status | None) -> None:
        self.network.park(waiter, name, target)

    def answers(self) -> dict[int, Outcome]:
        return {
            waiter: outcome_of(error) for waiter, (_, error) in self.network.answers.items()
        }

    def observe(self) -> tuple[list[UnitInfo], list[tuple[str, str]]]:
        assert self.network.quiet()  # each step delivers everything it set off
        for waiter, (info, error) in self.network.answers.items():
            assert error is not None or info is None or info.ready, (waiter, info)
        infos = [self.network.request_info(name) for name in NAMES]
        return infos, [(u, d) for u, d, _ in self.network.graph.edges()]


CoordinatorMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None
)
test_coordinator_agrees_with_model = CoordinatorMachine.TestCase

UnitStateMachine.TestCase.settings = settings(
    max_examples=250, stateful_step_count=25, deadline=None
)
test_unit_states_agree_with_model = UnitStateMachine.TestCase


class LongUnitStateMachine(UnitStateMachine):
    """The same, ten times as long (``-m slow``): a wrong root through a skipped unit, or a
    ``finished`` edge that blocks, took a few thousand examples to show up."""


LongUnitStateMachine.TestCase.settings = settings(
    max_examples=5000, stateful_step_count=25, deadline=None
)
test_unit_states_agree_with_model_at_length = pytest.mark.slow(LongUnitStateMachine.TestCase)

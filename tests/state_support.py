"""Unit state machines wired together as the actors wire them, with no Trio and no coordinator:
the pure system the hypothesis model of ``test_stateful.py`` runs against."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from coordinator import CycleError, DependencyFailed, Status, UnitInfo, UnitsyncError
from coordinator._graph import DependencyGraph
from coordinator._messages import NOT_REGISTERED, Published
from coordinator._unit_state import UnitState


class Network:
    """What the registry and the unit actors do around each :class:`UnitState`, synchronously.

    * A message to a unit (:meth:`request`): it reads the states posted to it (one slot per
      dependency, the latest wins), applies the message, and settles — a changed state goes
      to its subscribers' slots and the registry's copy, answers are recorded.
    * ``want`` (:meth:`want`): the cycle check first (nothing changes when refused); then the
      dependent gets its requirements with the registry's copy of each dependency's state, and
      each dependency subscribes it (posting the state it last settled).
    * Between messages, units with posted states unread are delivered (read and settled) in an
      order drawn from ``seed``, some at a time; at the end of each call, all of them — as the
      actors would in whatever order Trio runs them.
    """

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self.graph = DependencyGraph()
        self.states: dict[str, UnitState[int]] = {}
        self._slots: dict[str, dict[str, Published]] = {}  # unit -> dependency -> latest posted
        self._subscribers: dict[str, dict[str, None]] = {}
        self._registry: dict[str, Published] = {}  # the latest state each unit posted
        #: Waiters answered: id -> (value, error).
        self.answers: dict[int, tuple[UnitInfo | None, DependencyFailed | None]] = {}

    def quiet(self) -> bool:
        return not self._slots

    def request(self, name: str, call: Callable[[UnitState[int]], Any]) -> UnitsyncError | None:
        """Send ``name`` a message that does ``call`` to its state; the refusal it raised."""
        try:
            self._message(name, call)
        except UnitsyncError as refused:
            self._settle(name)
            return refused
        finally:
            self._deliver_all()
        return None

    def request_info(self, name: str) -> UnitInfo:
        infos: list[UnitInfo] = []
        self.request(name, lambda state: infos.append(state.info()))
        return infos[0]

    def want(self, unit: str, deps: list[str], requires: Status) -> CycleError | None:
        requirements = dict.fromkeys(deps, requires)
        try:
            self.graph.add(unit, requirements)
        except CycleError as refused:
            return refused
        registry = self._registry
        self._message(unit, lambda state: state.add_requirements(
            (d, r, registry.get(d, NOT_REGISTERED)) for d, r in requirements.items()
        ))
        for dependency in requirements:
            self._deliver_some()

            def subscribe(state: UnitState[int], dependency: str = dependency) -> None:
                self._subscribers[dependency][unit] = None
                self._post(unit, dependency, state.published)

            self._message(dependency, subscribe)
        self._deliver_all()
        return None

    def park(self, waiter: int, name: str, target: Status | None) -> None:
        if target is None:
            self.request(name, lambda state: state.wait_ready(waiter))
        else:
            self.request(name, lambda state: state.wait_reached(waiter, target))

    # --- the actors' part ---------------------------------------------------------------------

    def _state(self, name: str) -> UnitState[int]:
        if name not in self.states:
            self.states[name] = UnitState(name)
            self._subscribers[name] = {}
        return self.states[name]

    def _message(self, name: str, call: Callable[[UnitState[int]], Any]) -> None:
        """Read the posted states, apply ``call``, settle (skipped if ``call`` raises)."""
        state = self._state(name)
        for dependency, posted in self._slots.pop(name, {}).items():
            state.dependency_changed(dependency, posted)
        call(state)
        self._settle(name)

    def _settle(self, name: str) -> None:
        def publish(published: Published) -> None:
            self._registry[name] = published
            for subscriber in self._subscribers[name]:
                self._post(subscriber, name, published)

        def ok(waiter: int, value: UnitInfo | None) -> None:
            assert waiter not in self.answers, f"waiter {waiter} answered twice"
            self.answers[waiter] = (value, None)

        def fail(waiter: int, error: DependencyFailed) -> None:
            assert waiter not in self.answers, f"waiter {waiter} answered twice"
            self.answers[waiter] = (None, error)

        self.states[name].settle(publish, ok, fail)

    def _post(self, unit: str, dependency: str, published: Published) -> None:
        self._slots.setdefault(unit, {})[dependency] = published

    def _deliver_one(self) -> None:
        self._message(self._random.choice(sorted(self._slots)), lambda state: None)

    def _deliver_some(self) -> None:
        for _ in range(self._random.randrange(3)):
            if self._slots:
                self._deliver_one()

    def _deliver_all(self) -> None:
        while self._slots:
            self._deliver_one()

"""UnitState: one unit's semantics as a pure, synchronous state machine.

It holds what the unit is — status and reason, the holder of a hold, its requirements with the
last known state of each dependency, its parked ``ready``/``reached`` waiters — and derives
what follows: ready, blocked and by what, which waiters to answer. It does no I/O and uses no
Trio, inbox, journal or event hub; each call says what happened and the actor (``_unit.py``)
acts on it:

* a mutation returns the :class:`Change` of status to journal and publish (None: the status
  stays), or raises the refusal (``NotReady``, ``AlreadyInStatus``, ...) with nothing changed;
* after each message, :meth:`UnitState.settle` hands the :class:`Published` state to push to
  dependents, if it changed, to a callback, then each waiter it can answer, with its answer,
  to another (callbacks, not lists: a fan-out should allocate nothing per waiter).

Kept incrementally, so a unit with thousands of dependencies pays O(1) per dependency update:

* ready — no requirement is unmet (``_unmet`` is empty);
* blocked — the unit is not running (pending, failed, skipped or unregistered) and an unmet
  ``started``/``completed`` requirement's dependency has failed, was skipped or is blocked
  itself (``_blocking``; a ``finished`` requirement waits for an outcome, never blocks). The
  blocker is derived, never stored: re-running the failed unit unblocks everything downstream.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Final, Generic, NamedTuple, TypeVar

from ._api import Dependency, UnitInfo
from ._errors import (
    AlreadyInStatus,
    AlreadyRegistered,
    DependencyFailed,
    NotHeld,
    NotReady,
    UnitNotFound,
)
from ._messages import NOT_REGISTERED, Blocker, Published
from ._status import FAILURES, Status

__all__ = ["ORPHAN", "REFUSALS", "REMOTE", "Change", "UnitState"]

W = TypeVar("W", bound=Hashable)

#: The holder token of a hold restored from the journal: its holder (a ``run`` of the old
#: coordinator) may come back and take it over (:meth:`UnitState.resume`) until the grace
#: period ends it (``fail(holder=ORPHAN)``). Live holders get tokens 1, 2, ...
ORPHAN: Final = 0

#: The holder token of a unit held through another coordinator sharing the store (etcd): not
#: this coordinator's to end by token; it ends when the unit's status changes, or its holder's
#: lease does (``fail(holder=REMOTE)``, which every coordinator tries and one wins).
REMOTE: Final = -1


class Change(NamedTuple):
    """A status change, to journal and to publish as an event. ``held``: the new status is
    the start of a hold."""

    old: Status
    new: Status
    reason: str
    held: bool


#: What the mutations raise when they refuse (nothing changed then).
REFUSALS: Final = (AlreadyInStatus, AlreadyRegistered, NotHeld, NotReady, UnitNotFound)


_FINISHED: Final = Status.FINISHED  # (a class attribute of an Enum costs ~0.1 µs a read)
_MET: Final = "met"
_WAITS: Final = "waits"
_BLOCKS: Final = "blocks"


def _verdict(state: Published, required: Status) -> str:
    """What a dependency in ``state`` means to a unit that requires ``required`` of it: met,
    still awaited, or blocking the unit (a ``finished`` requirement waits for an outcome and
    never blocks; a blocked unit still gets one, skipped)."""
    status = state.status
    if status.reaches(required):
        return _MET
    if required is _FINISHED or not (status in FAILURES or state.blocker is not None):
        return _WAITS
    return _BLOCKS


#: Dependency values already made, by their fields, shared since they are immutable: the units
#: answered in a fan-out differ by their names, not by their edge to the unit that changed.
#: Bounded: emptied when full.
_DEPENDENCIES: dict[tuple[str, Status, Status, bool], Dependency] = {}
_DEPENDENCIES_KEPT: Final = 4096


def _dependency(depends_on: str, required: Status, current: Status, satisfied: bool) -> Dependency:
    """``Dependency(...)`` of these fields, the one made before if it is kept (a lookup against
    ~1.3 µs for a frozen dataclass's construction)."""
    key = (depends_on, required, current, satisfied)
    found = _DEPENDENCIES.get(key)
    if found is None:
        if len(_DEPENDENCIES) >= _DEPENDENCIES_KEPT:
            _DEPENDENCIES.clear()
        found = _DEPENDENCIES[key] = Dependency(
            depends_on=depends_on, required=required, current=current, satisfied=satisfied
        )
    return found


class UnitState(Generic[W]):
    """One unit. ``status``, ``reason``, ``holder`` and ``published`` are for reading; every
    change goes through the methods. Waiters are opaque to it (the actor parks its replies;
    any hashable will do)."""

    __slots__ = (
        "name", "status", "reason", "holder", "_holds", "published", "_requirements", "_known",
        "_unmet", "_blocking", "_ready_waiters", "_reached_waiters",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.status = Status.NOT_REGISTERED
        self.reason = ""
        #: Who holds the started unit: a token (see :data:`ORPHAN`), None if nobody. Any status
        #: change ends a hold; ``fail(holder=...)`` fails only if that token still holds it.
        self.holder: int | None = None
        self._holds = 0  # tokens given so far
        #: The state last settled, as dependents know it (its blocker is the unit's).
        self.published = NOT_REGISTERED
        self._requirements: dict[str, Status] = {}
        self._known: dict[str, Published] = {}
        self._unmet: set[str] = set()
        #: None while no dependency blocks (most units, most of the time: an empty set would
        #: cost each of them 216 bytes).
        self._blocking: set[str] | None = None
        self._ready_waiters: dict[W, None] = {}
        self._reached_waiters: dict[W, Status] = {}

    # --- reads --------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return not self._unmet

    @property
    def orphaned(self) -> bool:
        """A hold restored from the journal that no holder has taken over (yet)."""
        return self.holder == ORPHAN

    @property
    def requirements(self) -> Mapping[str, Status]:
        return self._requirements

    @property
    def parked(self) -> bool:
        """Whether a waiter is parked."""
        return bool(self._ready_waiters or self._reached_waiters)

    def waiting(self) -> tuple[int, int]:
        """How many ``ready`` and ``reached`` waiters are parked."""
        return len(self._ready_waiters), len(self._reached_waiters)

    def blocker(self) -> Blocker | None:
        """Why the unit cannot become ready (its first blocking dependency by name), if it is
        blocked; a running (started or completed) unit never is."""
        if not self._blocking or self.status in (Status.STARTED, Status.COMPLETED):
            return None
        dependency = min(self._blocking)  # not None: tested above
        state = self._known[dependency]
        # the root of the chain: a failed unit, or a skipped one that nothing blocks (a unit
        # skipped because its own dependency failed leads on to that one)
        if state.status is Status.FAILED or (state.status is Status.SKIPPED and not state.blocker):
            return Blocker(dependency, state.reason, (self.name, dependency), state.status)
        blocker = state.blocker
        assert blocker is not None
        return Blocker(blocker.unit, blocker.reason, (self.name, *blocker.path), blocker.status)

    def info(self) -> UnitInfo:
        blocker = self.blocker()
        return UnitInfo(
            name=self.name,
            status=self.status,
            ready=not self._unmet,
            reason=self.reason,
            blocked_by=blocker.unit if blocker else "",
            dependencies=tuple(
                _dependency(dependency, required, self._known[dependency].status,
                            dependency not in self._unmet)
                for dependency, required in sorted(self._requirements.items())
            ),
        )

    # --- mutations: a Change, None, or the refusal raised ---------------------------------------

    def register(self) -> Change:
        if self.status is not Status.NOT_REGISTERED:
            raise AlreadyRegistered(self.name)
        return self._set(Status.PENDING)

    def start(self, *, held: bool = False) -> Change:
        """Start (from completed or failed: a re-run). ``held``: the start of a hold, whose new
        token is then :attr:`holder`."""
        if self.status is Status.STARTED:
            raise AlreadyInStatus(self.name, self.status)
        if self._unmet:
            raise NotReady(self.name, sorted(self._unmet))
        change = self._set(Status.STARTED, held=held)
        if held:
            self._holds += 1
            self.holder = self._holds
        return change

    def resume(self) -> int:
        """Take over a hold restored from the journal whose holder has not come back: its new
        token. The status stays (no Change)."""
        if self.holder != ORPHAN:
            status = self.status
            if status is Status.STARTED:
                raise AlreadyInStatus(self.name, status)
            raise NotHeld(self.name, status)
        self._holds += 1
        self.holder = self._holds
        return self.holder

    def complete(self) -> Change:
        if self.status is Status.NOT_REGISTERED:
            raise UnitNotFound(self.name)
        if self.status is Status.COMPLETED:
            raise AlreadyInStatus(self.name, self.status)
        return self._set(Status.COMPLETED)

    def fail(self, reason: str, *, holder: int | None = None) -> Change | None:
        """Fail with ``reason``. ``holder``: only if that token still holds the unit — None
        (nothing changes) when it was completed, failed or re-run since."""
        if holder is not None and holder != self.holder:
            return None
        if self.status is Status.NOT_REGISTERED:
            raise UnitNotFound(self.name)
        if self.status is Status.FAILED:
            raise AlreadyInStatus(self.name, self.status)
        return self._set(Status.FAILED, reason)

    def skip(self, reason: str) -> Change:
        """Mark skipped: it did not run. Only a pending unit (what has started, or ended, was
        not skipped)."""
        if self.status is Status.NOT_REGISTERED:
            raise UnitNotFound(self.name)
        if self.status is not Status.PENDING:
            raise AlreadyInStatus(self.name, self.status)
        return self._set(Status.SKIPPED, reason)

    def add_requirements(
        self, requirements: Iterable[tuple[str, Status, Published]]
    ) -> Change | None:
        """Require each dependency to reach its status (replacing an earlier requirement on
        it), given the registry's copy of its state; registers the unit if needed (the Change).
        A state already known is kept: it is at least as fresh as the registry's copy."""
        change = self._set(Status.PENDING) if self.status is Status.NOT_REGISTERED else None
        for dependency, required, state in requirements:
            self._known.setdefault(dependency, state)
            self._requirements[dependency] = required
            self._classify(dependency)
        return change

    def dependency_changed(self, dependency: str, state: Published) -> None:
        """``dependency`` published ``state`` (the latest: earlier ones may have been skipped)."""
        self._known[dependency] = state
        if dependency in self._requirements:
            self._classify(dependency)

    def moved_by(self, dependency: str, state: Published) -> bool:
        """Whether learning ``state`` of ``dependency`` could change what the unit answers or
        publishes: whether the requirement is met, or whether (and by what) the dependency
        blocks it. When not (a dependency starting under a ``completed`` requirement: the first
        wave of every fan-out), the only change is that dependency's ``current`` in the unit's
        info, and its actor need not be woken for it (``Inbox.post_state``)."""
        required = self._requirements.get(dependency)
        if required is None:
            return False
        verdict = _verdict(state, required)
        if verdict is _BLOCKS:
            return True
        # the known state's verdict is filed already (_classify): blocking, met or awaited
        blocking = self._blocking
        if blocking is not None and dependency in blocking:
            return True
        return (verdict is _MET) is (dependency in self._unmet)

    def _set(self, status: Status, reason: str = "", *, held: bool = False) -> Change:
        """Change status, ending any hold."""
        change = Change(self.status, status, reason, held)
        self.status = status
        self.reason = reason
        self.holder = None
        return change

    def _classify(self, dependency: str) -> None:
        verdict = _verdict(self._known[dependency], self._requirements[dependency])
        if verdict is _MET:
            self._unmet.discard(dependency)
        else:
            self._unmet.add(dependency)
        blocking = self._blocking
        if verdict is _BLOCKS:
            if blocking is None:
                self._blocking = {dependency}
            else:
                blocking.add(dependency)
        elif blocking is not None:
            blocking.discard(dependency)

    # --- waiters --------------------------------------------------------------------------------

    def wait_ready(self, waiter: W) -> None:
        """Park ``waiter`` until the unit is ready (answered with its info) or blocked (with
        ``DependencyFailed``); the next :meth:`settle` decides, even if that is at once."""
        self._ready_waiters[waiter] = None

    def wait_reached(self, waiter: W, target: Status) -> None:
        """Park ``waiter`` until the status reaches ``target`` (answered with None), or the
        unit fails or is blocked first (``DependencyFailed``)."""
        self._reached_waiters[waiter] = target

    def forget(self, waiter: W) -> None:
        """Drop a parked waiter (its caller gave up)."""
        self._ready_waiters.pop(waiter, None)
        self._reached_waiters.pop(waiter, None)

    def drop_waiters(self) -> list[W]:
        """Every parked waiter, removed (the coordinator is stopping)."""
        waiters = [*self._ready_waiters, *self._reached_waiters]
        self._ready_waiters.clear()
        self._reached_waiters.clear()
        return waiters

    # --- after each message ---------------------------------------------------------------------

    def settle(
        self,
        publish: Callable[[Published], object],
        ok: Callable[[W, UnitInfo | None], object],
        fail: Callable[[W, DependencyFailed], object],
    ) -> bool:
        """After each message: if the unit's state changed, ``publish`` it (for dependents);
        then answer each parked waiter that can be answered now — ``ok(waiter, value)`` or
        ``fail(waiter, error)`` — removing it first. In that order, so that a caller told of a
        change never finds a dependent that was not. True when it answered the last parked
        waiter (the unit has none left)."""
        blocker = self.blocker()
        published = Published(self.status, self.reason, blocker)
        if published != self.published:
            self.published = published
            publish(published)
        if not (self._ready_waiters or self._reached_waiters):
            return False
        answered = False
        if self._ready_waiters and (blocker is not None or not self._unmet):
            waiters, self._ready_waiters = self._ready_waiters, {}
            answered = True
            if blocker is None:
                info = self.info()
                for waiter in waiters:
                    ok(waiter, info)
            else:
                for waiter in waiters:
                    fail(waiter, blocker.error())
        if self._reached_waiters:
            for waiter, target in list(self._reached_waiters.items()):
                if self.status.reaches(target):
                    del self._reached_waiters[waiter]
                    ok(waiter, None)
                elif self.status in FAILURES:
                    del self._reached_waiters[waiter]
                    fail(waiter, DependencyFailed(self.name, self.reason, (self.name,), self.status))
                elif blocker is not None and target is not Status.FINISHED:
                    # (a blocked unit still gets an outcome — skipped, when its waiter gives
                    # up —, so a wait for any outcome goes on)
                    del self._reached_waiters[waiter]
                    fail(waiter, blocker.error())
                else:
                    continue
                answered = True
        return answered and not (self._ready_waiters or self._reached_waiters)

    # --- a shared store: decide, commit, then keep or roll back -------------------------------------

    def checkpoint(self) -> tuple[Status, str, int | None, int]:
        """What a status mutation changes, to :meth:`rollback` to if the store refuses it."""
        return self.status, self.reason, self.holder, self._holds

    def rollback(self, saved: tuple[Status, str, int | None, int]) -> None:
        """Undo the mutations since :meth:`checkpoint` (before anything was settled)."""
        self.status, self.reason, self.holder, self._holds = saved

    def adopt(self, status: Status, reason: str, *, held: bool) -> None:
        """Take the status another coordinator stored (a shared store's record; its events
        are the registry's, made from the store's changes). A unit started and held stays ours
        if we held it already started (or had lost its holder in a restart: :data:`ORPHAN`);
        otherwise it is held elsewhere (:data:`REMOTE`). Any other status ends a hold."""
        if held and status is Status.STARTED:
            # a hold that was ours (a live token, or one lost in a restart and still to be
            # taken back) stays ours while the unit stays started
            ours = self.status is Status.STARTED and self.holder is not None \
                and self.holder >= ORPHAN
            self.holder = self.holder if ours else REMOTE
        else:
            self.holder = None
        self.status, self.reason = status, reason

    # --- restoring from the journal -------------------------------------------------------------

    def restore(
        self, status: Status, reason: str, requirements: Mapping[str, Status], *, held: bool,
        holder: int = ORPHAN,
    ) -> None:
        """Before anything else: take the stored status, reason and requirements (and a hold,
        as ``holder``: :data:`ORPHAN`, or :data:`REMOTE` when another coordinator sharing the
        store holds it). Dependencies' states follow with :meth:`dependency_changed`."""
        self.status, self.reason = status, reason
        self._requirements = dict(requirements)
        if held and status is Status.STARTED:
            self.holder = holder

    def publish_now(self) -> Published:
        """Recompute :attr:`published` without settling (restoring: nothing is pushed)."""
        self.published = Published(self.status, self.reason, self.blocker())
        return self.published


"""The state machine of one unit (``UnitState``), driven directly: no coordinator, no Trio.

Dependencies are played by hand with ``dependency_changed`` (what the actor does with each
state a dependency posts); waiters are plain strings. The whole-system model in
``test_stateful.py`` runs against networks of these states too.
"""

from __future__ import annotations

import pytest

from coordinator import (
    AlreadyInStatus,
    AlreadyRegistered,
    DependencyFailed,
    NotHeld,
    NotReady,
    Status,
    UnitNotFound,
)
from coordinator._messages import NOT_REGISTERED, Blocker, Published
from coordinator._unit_state import ORPHAN, REMOTE, Change, UnitState

PENDING = Published(Status.PENDING)
STARTED = Published(Status.STARTED)
COMPLETED = Published(Status.COMPLETED)


def failed(reason: str) -> Published:
    return Published(Status.FAILED, reason)


def unit(name: str = "claude", *deps: str, requires: Status = Status.COMPLETED) -> UnitState:
    """A settled unit requiring ``deps`` (each not registered yet)."""
    state: UnitState = UnitState(name)
    if deps:
        state.add_requirements((d, requires, NOT_REGISTERED) for d in deps)
    settle(state)
    return state


def settle(state: UnitState) -> tuple[Published | None, list[tuple[object, object, object]]]:
    """What the actor does after each message: the state it pushes (None: unchanged) and the
    answers ``(waiter, value, error)``."""
    pushed: list[Published] = []
    answered: list[tuple[object, object, object]] = []
    left_none = state.settle(
        pushed.append,
        lambda waiter, value: answered.append((waiter, value, None)),
        lambda waiter, error: answered.append((waiter, None, error)),
    )
    assert left_none is (bool(answered) and state.waiting() == (0, 0)) and len(pushed) <= 1
    return (pushed[0] if pushed else None), answered


def published(state: UnitState) -> Published | None:
    return settle(state)[0]


def answers(state: UnitState) -> list[tuple[object, str]]:
    """Settle and describe each answer: ``(waiter, "ready: name" | "ok" | "failed: unit path")``."""
    out: list[tuple[object, str]] = []
    for waiter, value, error in settle(state)[1]:
        if isinstance(error, DependencyFailed):
            out.append((waiter, f"failed: {error.unit} {'>'.join(error.path)}"))
        else:
            assert error is None
            out.append((waiter, "ok" if value is None else f"ready: {value.name}"))  # type: ignore[attr-defined]
    return out


# --- transitions ------------------------------------------------------------------------------


def test_a_new_unit_is_not_registered_ready_and_publishes_nothing_new() -> None:
    state: UnitState = UnitState("git")
    info = state.info()
    assert (info.status, info.ready, info.reason, info.blocked_by, info.dependencies) == (
        Status.NOT_REGISTERED, True, "", "", ()
    )
    assert state.published == NOT_REGISTERED
    assert settle(state) == (None, [])


def test_register_once() -> None:
    state: UnitState = UnitState("git")
    assert state.register() == Change(Status.NOT_REGISTERED, Status.PENDING, "", False)
    with pytest.raises(AlreadyRegistered):
        state.register()
    assert published(state) == PENDING
    assert published(state) is None  # published once per change


def test_start_complete_fail_and_rerun() -> None:
    state = unit("git")
    with pytest.raises(UnitNotFound):
        state.complete()
    with pytest.raises(UnitNotFound):
        state.fail("boom")
    assert state.status is Status.NOT_REGISTERED  # refusals change nothing

    assert state.start() == Change(Status.NOT_REGISTERED, Status.STARTED, "", False)
    with pytest.raises(AlreadyInStatus) as caught:
        state.start()
    assert caught.value.status is Status.STARTED
    assert state.fail("disk full") == Change(Status.STARTED, Status.FAILED, "disk full", False)
    assert (state.status, state.reason, state.info().reason) == (Status.FAILED, "disk full",
                                                                 "disk full")
    with pytest.raises(AlreadyInStatus):
        state.fail("again")
    assert state.start().old is Status.FAILED  # a re-run
    assert state.reason == ""
    assert state.complete() == Change(Status.STARTED, Status.COMPLETED, "", False)
    with pytest.raises(AlreadyInStatus):
        state.complete()
    assert state.start().old is Status.COMPLETED  # a re-run from completed too


def test_complete_is_allowed_from_pending() -> None:
    state = unit("git")
    state.register()
    assert state.complete().old is Status.PENDING


# --- requirements -----------------------------------------------------------------------------


def test_add_requirements_registers_and_keeps_the_fresher_known_state() -> None:
    state: UnitState = UnitState("claude")
    change = state.add_requirements([("git", Status.COMPLETED, NOT_REGISTERED)])
    assert change == Change(Status.NOT_REGISTERED, Status.PENDING, "", False)
    assert not state.ready
    state.dependency_changed("git", COMPLETED)
    assert state.ready
    # the registry's copy is older than what git posted to us: ours stays
    assert state.add_requirements([("git", Status.STARTED, PENDING)]) is None
    info = state.info()
    assert info.ready and info.dependencies[0].current is Status.COMPLETED
    assert info.dependencies[0].required is Status.STARTED  # re-declared: replaced


def test_what_each_status_reaches() -> None:
    """``Status.reaches``, every pair, against the rules its docstring states, written out."""
    N, P, S, C, F, K, D = (Status.NOT_REGISTERED, Status.PENDING, Status.STARTED,
                           Status.COMPLETED, Status.FAILED, Status.SKIPPED, Status.FINISHED)
    reached = {
        N: {N}, P: {N, P}, S: {N, P, S}, C: {N, P, S, C, D},  # pending < started < completed
        F: {F, D}, K: {K, D},  # an outcome that meets no requirement but "finished"
        D: set(),  # not a unit's status
    }
    for status in Status:
        for target in Status:
            assert status.reaches(target) is (target in reached[status]), (status, target)


def test_a_change_that_moves_nothing_is_told_apart() -> None:
    """``moved_by``: only a change of what the requirement makes of the dependency (met,
    awaited, blocking), or any change of a blocking one, matters to the unit."""
    state = unit("claude", "git")  # completed required; git not registered
    assert not state.moved_by("git", PENDING) and not state.moved_by("git", STARTED)
    assert state.moved_by("git", COMPLETED) and state.moved_by("git", failed("x"))
    assert not state.moved_by("other", COMPLETED)  # not a requirement
    state.dependency_changed("git", failed("x"))
    assert state.moved_by("git", failed("y"))  # blocking still, by another reason
    assert state.moved_by("git", PENDING)  # a re-run: no longer blocking
    finished = unit("report", "git", requires=Status.FINISHED)
    assert not finished.moved_by("git", STARTED) and finished.moved_by("git", failed("x"))


def test_started_requirement_is_reached_by_started_and_completed_only() -> None:
    state = unit("claude", "git", requires=Status.STARTED)
    for posted, ready in [
        (PENDING, False), (STARTED, True), (COMPLETED, True), (failed("x"), False),
        (STARTED, True), (NOT_REGISTERED, False),
    ]:
        state.dependency_changed("git", posted)
        assert state.ready is ready, posted
        assert state.info().dependencies[0].satisfied is ready


def test_a_dependency_going_back_makes_its_requirement_unmet_again() -> None:
    state = unit("claude", "git")
    state.dependency_changed("git", COMPLETED)
    assert state.ready
    state.dependency_changed("git", STARTED)  # a re-run
    assert not state.ready


def test_start_lists_unmet_requirements_sorted() -> None:
    state = unit("claude", "setup", "git", "dotfiles")
    state.dependency_changed("dotfiles", COMPLETED)
    with pytest.raises(NotReady) as caught:
        state.start()
    assert caught.value.unmet == ("git", "setup")
    assert state.status is Status.PENDING


def test_a_state_of_a_unit_not_required_is_kept_for_later() -> None:
    state = unit("claude")
    state.dependency_changed("git", COMPLETED)  # posted before the requirement arrived
    state.add_requirements([("git", Status.COMPLETED, NOT_REGISTERED)])
    assert state.ready


# --- blocking ---------------------------------------------------------------------------------


def test_a_failed_dependency_blocks_until_it_is_rerun() -> None:
    state = unit("claude", "git")
    state.dependency_changed("git", failed("exit 3"))
    assert state.blocker() == Blocker("git", "exit 3", ("claude", "git"))
    assert state.info().blocked_by == "git"
    assert published(state) == Published(Status.PENDING, "", state.blocker())
    state.dependency_changed("git", STARTED)
    assert state.blocker() is None
    assert published(state) == PENDING


def test_blocking_is_transitive_through_the_dependency_published_blocker() -> None:
    state = unit("app", "claude")
    upstream = Blocker("git", "exit 3", ("claude", "git"))
    state.dependency_changed("claude", Published(Status.PENDING, "", upstream))
    assert state.blocker() == Blocker("git", "exit 3", ("app", "claude", "git"))


def test_the_blocker_is_the_first_blocking_dependency_by_name() -> None:
    state = unit("claude", "zsh", "git")
    state.dependency_changed("zsh", failed("a"))
    state.dependency_changed("git", failed("b"))
    assert state.blocker() == Blocker("git", "b", ("claude", "git"))
    state.dependency_changed("git", COMPLETED)
    assert state.blocker() == Blocker("zsh", "a", ("claude", "zsh"))


def test_a_running_unit_is_not_blocked() -> None:
    state = unit("claude", "git")
    state.dependency_changed("git", COMPLETED)
    state.start()
    state.dependency_changed("git", failed("boom"))  # after the start: unmet again, failed
    assert not state.ready and state.blocker() is None
    state.complete()
    assert state.blocker() is None
    state.fail("own reason")  # no longer running: blocked again
    assert state.blocker() == Blocker("git", "boom", ("claude", "git"))


# --- waiters ----------------------------------------------------------------------------------


def test_ready_waiters_are_answered_when_ready_with_one_info() -> None:
    state = unit("claude", "git")
    state.wait_ready("w1")
    state.wait_ready("w2")
    assert answers(state) == [] and state.waiting() == (2, 0)
    state.dependency_changed("git", STARTED)
    assert answers(state) == []
    state.dependency_changed("git", COMPLETED)
    _, [(w1, info1, error1), (w2, info2, error2)] = settle(state)
    assert (w1, w2, error1, error2) == ("w1", "w2", None, None)
    assert info1 is info2  # one info for all
    assert info1 is not None and info1.ready
    assert state.waiting() == (0, 0)


def test_a_ready_waiter_of_a_ready_unit_is_answered_at_the_next_settle() -> None:
    state = unit("claude")
    state.wait_ready("w")
    assert answers(state) == [("w", "ready: claude")]


def test_ready_waiters_fail_when_blocked() -> None:
    state = unit("claude", "git")
    state.wait_ready("w")
    state.dependency_changed("git", failed("exit 3"))
    new, [(_, _, error)] = settle(state)
    assert new is not None
    assert isinstance(error, DependencyFailed)
    assert (error.unit, error.reason, error.path) == (
        "git", "exit 3", ("claude", "git")
    )


def test_reached_waiters() -> None:
    state = unit("claude")
    state.register()
    state.wait_reached("started", Status.STARTED)
    state.wait_reached("completed", Status.COMPLETED)
    state.wait_reached("pending", Status.PENDING)
    assert answers(state) == [("pending", "ok")]
    state.start()
    assert answers(state) == [("started", "ok")]
    state.fail("boom")
    assert answers(state) == [("completed", "failed: claude claude")]
    state.wait_reached("failed", Status.FAILED)
    assert answers(state) == [("failed", "ok")]


def test_reached_waiters_fail_when_blocked_but_not_while_running() -> None:
    state = unit("claude", "git")
    state.dependency_changed("git", COMPLETED)
    state.start()
    state.wait_reached("w", Status.COMPLETED)
    state.dependency_changed("git", failed("x"))
    assert answers(state) == []  # started: not blocked
    state.fail("own")
    assert answers(state) == [("w", "failed: claude claude")]


def test_a_reached_waiter_of_a_blocked_unit_fails_with_the_path() -> None:
    state = unit("claude", "git")
    state.wait_reached("w", Status.STARTED)
    state.dependency_changed("git", failed("x"))
    assert answers(state) == [("w", "failed: git claude>git")]


def test_a_forgotten_waiter_is_never_answered() -> None:
    state = unit("claude", "git")
    state.wait_ready("gone")
    state.wait_reached("gone too", Status.STARTED)
    state.forget("gone")
    state.forget("gone too")
    assert state.waiting() == (0, 0)
    state.dependency_changed("git", COMPLETED)
    state.start()
    assert answers(state) == []


def test_drop_waiters_hands_every_waiter_back() -> None:
    state = unit("claude", "git")
    state.wait_ready("a")
    state.wait_reached("b", Status.COMPLETED)
    assert state.drop_waiters() == ["a", "b"]
    assert state.waiting() == (0, 0)


def test_settle_answers_after_publishing_and_publishes_only_changes() -> None:
    state = unit("claude", "git")
    state.wait_ready("w")
    state.dependency_changed("git", COMPLETED)
    assert settle(state) == (None, [("w", state.info(), None)])  # claude itself: unchanged


def test_settle_pushes_the_new_state_before_it_answers_a_waiter() -> None:
    """The actor relies on it: a caller told of a change never finds a dependent not told."""
    state = unit("claude")
    state.register()
    state.wait_reached("w", Status.STARTED)
    settle(state)
    state.start()
    order: list[object] = []
    state.settle(order.append, lambda waiter, _: order.append(waiter), pytest.fail)
    assert order == [STARTED, "w"]


# --- holds ------------------------------------------------------------------------------------


def test_each_hold_has_its_own_token_and_any_change_ends_it() -> None:
    state = unit("claude")
    assert state.start(held=True) == Change(Status.NOT_REGISTERED, Status.STARTED, "", True)
    first = state.holder
    assert first is not None and first != ORPHAN
    state.complete()
    assert state.holder is None
    state.start(held=True)
    second = state.holder
    assert second not in (None, first)
    assert state.fail("holder disconnected", holder=first) is None  # an old lease: no say
    assert state.status is Status.STARTED and state.holder == second
    assert state.fail("holder disconnected", holder=second) == Change(
        Status.STARTED, Status.FAILED, "holder disconnected", False
    )
    assert state.holder is None
    state.start()  # a plain start holds nothing
    assert state.holder is None
    assert state.fail("late", holder=second) is None


def test_a_restored_hold_is_orphaned_until_resumed() -> None:
    state: UnitState = UnitState("claude")
    state.restore(Status.STARTED, "", {}, held=True)
    assert state.orphaned and state.holder == ORPHAN
    token = state.resume()
    assert token != ORPHAN and state.holder == token and not state.orphaned
    with pytest.raises(AlreadyInStatus):  # someone holds it
        state.resume()
    assert state.fail("holder disconnected", holder=ORPHAN) is None  # the grace period ends
    assert state.status is Status.STARTED


def test_an_orphaned_hold_fails_when_its_grace_period_ends() -> None:
    state: UnitState = UnitState("claude")
    state.restore(Status.STARTED, "", {}, held=True)
    assert state.fail("holder disconnected", holder=ORPHAN) is not None
    with pytest.raises(NotHeld) as caught:
        state.resume()
    assert caught.value.status is Status.FAILED


def test_only_a_started_unit_is_restored_held() -> None:
    state: UnitState = UnitState("claude")
    state.restore(Status.COMPLETED, "", {}, held=True)
    assert not state.orphaned
    with pytest.raises(NotHeld):
        state.resume()
    with pytest.raises(NotHeld):
        UnitState("nobody").resume()


def test_restore_then_learn_dependencies_and_publish_without_settling() -> None:
    state: UnitState = UnitState("claude")
    state.restore(Status.PENDING, "", {"git": Status.COMPLETED}, held=False)
    state.dependency_changed("git", failed("exit 3"))
    assert state.publish_now() == Published(
        Status.PENDING, "", Blocker("git", "exit 3", ("claude", "git"))
    )
    assert published(state) is None  # already published


# --- a shared store: rollback, and records taken from other coordinators ------------------------


def test_a_refused_commit_rolls_the_mutation_back() -> None:
    unit: UnitState[int] = UnitState("git")
    unit.register()
    saved = unit.checkpoint()
    unit.start(held=True)
    assert unit.status is Status.STARTED and unit.holder == 1
    unit.rollback(saved)
    assert (unit.status, unit.reason, unit.holder) == (Status.PENDING, "", None)
    unit.start(held=True)
    assert unit.holder == 1  # the token given and taken back is given again


def test_adopting_a_record_keeps_our_hold_and_marks_another_s() -> None:
    ours: UnitState[int] = UnitState("git")
    ours.start(held=True)
    ours.adopt(Status.STARTED, "", held=True)  # our own record again: still ours
    assert ours.holder == 1
    lost: UnitState[int] = UnitState("build")
    lost.restore(Status.STARTED, "", {}, held=True)
    lost.adopt(Status.STARTED, "", held=True)  # a hold lost in a restart stays to be taken back
    assert lost.holder == ORPHAN and lost.orphaned
    theirs: UnitState[int] = UnitState("lint")
    theirs.register()
    theirs.adopt(Status.STARTED, "", held=True)  # started and held by another coordinator
    assert theirs.holder == REMOTE and theirs.fail("gone", holder=REMOTE) is not None
    ours.adopt(Status.FAILED, "holder disconnected", held=False)  # any other status ends it
    assert (ours.status, ours.reason, ours.holder) == (
        Status.FAILED, "holder disconnected", None)


def test_infos_share_their_dependency_values_and_the_store_of_them_is_bounded() -> None:
    """Dependents told of one change answer with equal edges: one immutable value serves them
    all (a frozen dataclass costs ~1.3 µs to make); the values kept are bounded."""
    from coordinator import _unit_state

    a, b = unit("a", "git"), unit("b", "git")
    for state in (a, b):
        state.dependency_changed("git", COMPLETED)
    assert a.info().dependencies[0] is b.info().dependencies[0]
    assert a.info().dependencies[0].satisfied and a.info().dependencies[0].current is Status.COMPLETED
    for n in range(_unit_state._DEPENDENCIES_KEPT + 10):
        unit(f"u{n}", f"dep{n}").info()
    assert 0 < len(_unit_state._DEPENDENCIES) <= _unit_state._DEPENDENCIES_KEPT

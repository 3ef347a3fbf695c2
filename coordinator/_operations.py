"""The operations on a unit: the one typed way into the core.

Each function checks its arguments and returns an :class:`Operation`: the message to send,
to be built around the caller's reply. This is the only place where a dependency list, a
requirement, a status to wait for and a reason are checked; a unit's name is checked once by
``coord.unit(name)``, which every caller goes through, so the functions take it as valid.

Callers do not send messages themselves. ``LocalCoordinator.call(op)`` awaits an operation
(``LocalUnit``'s methods); ``LocalCoordinator.submit(op, on_answer)`` posts it without waiting
and calls ``on_answer(outcome)`` in the answering actor's task (the RPC bridge). A new verb
gets one function here; README "How it is built" lists every place a verb touches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._api import UnitInfo
from ._errors import InvalidArgument
from ._messages import (
    Apply,
    Complete,
    Fail,
    Hold,
    Info,
    Reached,
    Ready,
    Register,
    RegistryMessage,
    Skip,
    Start,
    ToUnit,
    Want,
)
from ._names import (
    MAX_APPLY_UNITS,
    check_dependency_count,
    check_requirement,
    limit_reason,
    validate_dependencies,
    validate_name,
)
from ._reply import Reply
from ._status import Status

__all__ = [
    "Operation",
    "apply",
    "complete",
    "fail",
    "hold",
    "info",
    "reached",
    "ready",
    "register",
    "release",
    "skip",
    "start",
    "want",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """A checked request whose answer is a ``T``: ``message(reply)`` is what the registry gets."""

    message: Callable[[Reply[T]], RegistryMessage]


def register(unit: str) -> Operation[None]:
    """Register as pending; ``AlreadyRegistered`` if it is."""
    return Operation(lambda reply: ToUnit(unit, Register(reply)))


def want(unit: str, dependencies: Iterable[str], requires: Status) -> Operation[None]:
    """Link ``unit`` to each dependency with ``requires`` (checked: names, at most
    ``MAX_DEPENDENCIES``, STARTED or COMPLETED; duplicates dropped)."""
    requirements = tuple((d, requires) for d in validate_dependencies(dependencies, requires))
    return Operation(lambda reply: Want(unit, requirements, reply))


def apply(graph: Mapping[str, Mapping[str, Status]]) -> Operation[None]:
    """Register every unit of ``graph`` and link each to its dependencies with their
    requirements, as one step (one cycle check: all or nothing). Checked: names, at most
    ``MAX_APPLY_UNITS`` units and ``MAX_DEPENDENCIES`` per unit, requirements."""
    if len(graph) > MAX_APPLY_UNITS:
        raise InvalidArgument(f"apply declares {len(graph)} units; at most {MAX_APPLY_UNITS}")
    units = []
    for unit, requirements in graph.items():
        checked = []
        for dependency, required in requirements.items():  # (a mapping: no duplicates)
            check_requirement(required)
            checked.append((validate_name(dependency), required))
        check_dependency_count(len(checked))
        units.append((validate_name(unit), tuple(checked)))
    frozen = tuple(units)
    return Operation(lambda reply: Apply(frozen, reply))


def start(unit: str) -> Operation[None]:
    """Mark started; ``NotReady``, ``AlreadyInStatus``."""
    return Operation(lambda reply: ToUnit(unit, Start(reply)))


def hold(unit: str, *, resume: bool = False) -> Operation[int]:
    """Start bound to a new holder; the answer is its token (see :func:`release`).
    ``resume``: take over a hold restored from the journal instead."""
    if not isinstance(resume, bool):
        raise InvalidArgument(f"resume is true or false, not {resume!r}")
    return Operation(lambda reply: ToUnit(unit, Hold(resume, reply)))


def complete(unit: str) -> Operation[None]:
    """Mark completed; ``UnitNotFound``, ``AlreadyInStatus``."""
    return Operation(lambda reply: ToUnit(unit, Complete(reply)))


def fail(unit: str, reason: str) -> Operation[None]:
    """Mark failed with ``reason`` (cut to ``MAX_REASON_BYTES``)."""
    kept = _reason(reason)
    return Operation(lambda reply: ToUnit(unit, Fail(kept, reply)))


def skip(unit: str, reason: str) -> Operation[None]:
    """Mark skipped with ``reason`` (cut to ``MAX_REASON_BYTES``): it did not run."""
    kept = _reason(reason)
    return Operation(lambda reply: ToUnit(unit, Skip(kept, reply)))


def release(unit: str, holder: int, reason: str) -> Operation[None]:
    """A holder let go without completing or failing: fail ``unit`` with ``reason`` only if
    ``holder`` (a token :func:`hold` answered) still holds it; else nothing happens."""
    kept = _reason(reason)
    return Operation(lambda reply: ToUnit(unit, Fail(kept, reply, holder)))


def info(unit: str) -> Operation[UnitInfo]:
    """The unit's info now."""
    return Operation(lambda reply: ToUnit(unit, Info(reply)))


def ready(unit: str) -> Operation[UnitInfo]:
    """Answered once the unit is ready (its info then); ``DependencyFailed`` once blocked."""
    return Operation(lambda reply: ToUnit(unit, Ready(reply)))


def reached(unit: str, status: Status) -> Operation[None]:
    """Answered once the unit's status reaches ``status``; ``DependencyFailed`` if it fails or
    is blocked first."""
    if not isinstance(status, Status):
        raise InvalidArgument(f"a status to wait for is a Status, not {status!r}")
    return Operation(lambda reply: ToUnit(unit, Reached(status, reply)))


def _reason(reason: str) -> str:
    if not isinstance(reason, str):
        raise InvalidArgument(f"a reason is text, not {type(reason).__name__}")
    return limit_reason(reason)

"""The messages the actors exchange: one closed union per actor.

Every request that expects an answer carries a :class:`~._reply.Reply`; the actor answers it,
the caller awaits it. Messages are frozen and slotted; the reply is excluded from equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._api import UnitInfo
from ._errors import CoordinatorClosed, DependencyFailed
from ._reply import Reply
from ._status import Status

if TYPE_CHECKING:
    from ._inbox import Inbox
    from ._journal import UnitRecord

__all__ = [
    "AddRequirements",
    "Adopt",
    "Apply",
    "Blocker",
    "Complete",
    "EdgesCommitted",
    "Fail",
    "Hold",
    "Info",
    "Inspect",
    "Ping",
    "SleepIdle",
    "Skip",
    "Published",
    "Reached",
    "Ready",
    "Register",
    "RemoteChange",
    "RegistryMessage",
    "RegistrySnapshot",
    "Snapshot",
    "Start",
    "Subscribe",
    "ToUnit",
    "UnitRequest",
    "UnitStatistics",
    "Want",
    "answer_closed",
]

def _reply() -> Any:
    return field(repr=False, compare=False)


# --- what a unit publishes to the units that depend on it -----------------------------------


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why a unit cannot become ready: ``unit`` failed (or was skipped: ``status``) with
    ``reason``; ``path`` leads from the blocked unit to it through unmet requirements
    (``("claude", "git")``)."""

    unit: str
    reason: str
    path: tuple[str, ...]
    status: Status = Status.FAILED

    def error(self) -> DependencyFailed:
        """What a waiter that this blocker keeps from its goal is answered with."""
        return DependencyFailed(self.unit, self.reason, self.path, self.status)


@dataclass(frozen=True, slots=True)
class Published:
    """The state a unit pushes to its dependents: status is state, so only the latest counts."""

    status: Status
    reason: str = ""
    blocker: Blocker | None = None


NOT_REGISTERED = Published(Status.NOT_REGISTERED)

# --- requests a UnitActor handles -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Register:
    reply: Reply[None] = _reply()


@dataclass(frozen=True, slots=True)
class Start:
    reply: Reply[None] = _reply()


@dataclass(frozen=True, slots=True)
class Hold:
    """Start bound to a holder (a lease): answered with the holder's token, which a later
    ``Fail(holder=token)`` names. ``resume``: instead, take over a hold restored from the
    journal whose holder has not come back (``NotHeld`` if there is none)."""

    resume: bool
    reply: Reply[int] = _reply()


@dataclass(frozen=True, slots=True)
class Complete:
    reply: Reply[None] = _reply()


@dataclass(frozen=True, slots=True)
class Fail:
    """Mark failed. ``holder``: a lease was dropped (or a restored hold's grace period ran
    out) — fail only if that holder still holds the unit."""

    reason: str
    reply: Reply[None] = _reply()
    holder: int | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """Mark skipped (it did not run) with ``reason``: only a unit that has not started."""

    reason: str
    reply: Reply[None] = _reply()


@dataclass(frozen=True, slots=True)
class Info:
    reply: Reply[UnitInfo] = _reply()


@dataclass(frozen=True, slots=True)
class Ready:
    """Answer when the unit is ready; error with ``DependencyFailed`` when it is blocked."""

    reply: Reply[UnitInfo] = _reply()


@dataclass(frozen=True, slots=True)
class Reached:
    """Answer when the unit's status reaches ``status``; error when it fails or is blocked."""

    status: Status
    reply: Reply[None] = _reply()


@dataclass(frozen=True, slots=True)
class AddRequirements:
    """From the registry, after the cycle check: the unit now requires these dependencies, each
    given with the registry's copy of its latest state. Applied at once, atomically.
    ``dependents``: for an apply, the :class:`Subscribe` of each unit that newly requires this
    one, in the same message (one message per unit instead of one more per edge)."""

    requirements: tuple[tuple[str, Status, Published], ...]
    reply: Reply[None] = _reply()
    dependents: tuple[Subscribe, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Adopt:
    """A shared store (etcd) holds ``record`` for the unit at ``revision``: another
    coordinator's change, the echo of one of ours, or edges the registry committed. Taken if
    newer than the actor's copy; ``requirements``: the dependencies it newly requires, each
    with the registry's copy of its state. ``reply`` (the registry's commit) is answered once
    the message is settled."""

    record: UnitRecord
    revision: int
    requirements: tuple[tuple[str, Status, Published], ...] = ()
    reply: Reply[None] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """From the registry: push your state to ``dependent`` on every change, and now unless
    it is ``known``: the registry's copy of your state that ``dependent`` was given with the
    requirement (None: push it now whatever it is)."""

    dependent: str
    inbox: Inbox = field(repr=False, compare=False)
    known: Published | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitStatistics:
    name: str
    status: Status
    requirements: int
    subscribers: int
    ready_waiters: int
    reached_waiters: int


@dataclass(frozen=True, slots=True)
class Inspect:
    reply: Reply[UnitStatistics] = _reply()


UnitRequest = (
    Register | Start | Hold | Complete | Fail | Skip | Info | Ready | Reached | AddRequirements
    | Adopt | Subscribe | Inspect
)

#: The requests that change a unit's stored state: with a shared store, each is committed
#: before it is applied.
MUTATIONS = (Register, Start, Hold, Complete, Fail, Skip)

# --- requests the RegistryActor handles -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToUnit:
    """Route ``request`` to the actor of ``unit`` (creating it if the request needs one)."""

    unit: str
    request: UnitRequest


@dataclass(frozen=True, slots=True)
class Want:
    """Check for cycles, then link ``unit`` to each dependency with its requirement."""

    unit: str
    requirements: tuple[tuple[str, Status], ...]
    reply: Reply[None] = _reply()


@dataclass(frozen=True, slots=True)
class Apply:
    """:class:`Want` for several units as one step: one cycle check for every edge, then
    each unit linked (and registered, with or without edges); all or nothing."""

    units: tuple[tuple[str, tuple[tuple[str, Status], ...]], ...]
    reply: Reply[None] = _reply()


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySnapshot:
    inboxes: dict[str, Inbox]
    edges: list[tuple[str, str, Status]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every actor's address, and the edges when ``edges`` is true."""

    edges: bool
    reply: Reply[RegistrySnapshot] = _reply()


@dataclass(frozen=True, slots=True)
class Ping:
    reply: Reply[None] = _reply()


@dataclass(frozen=True, slots=True)
class SleepIdle:
    """Ask every awake unit actor to sleep if it is idle, now (tests, benchmarks); the reply
    comes once the requests are queued, the actors act on them when they next run."""

    reply: Reply[None] = _reply()


@dataclass(frozen=True, slots=True)
class RemoteChange:
    """From a shared store's mirror: what one store revision changed. ``units``: each written
    unit's new record; ``graph``: edges were added; ``holds_gone``: units whose hold vanished
    without their record changing (their holder's lease ended)."""

    revision: int
    units: tuple[tuple[str, UnitRecord], ...] = ()
    graph: bool = False
    holds_gone: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EdgesCommitted:
    """From the registry's own commit task: ``writes`` of ``batch`` (wants and applies, each
    with the units it needs written) were committed, the last part at ``revision``; all of
    it, unless the store refused a part (``error``) or the state changed under it (``retry``:
    decide the rest again, the mirror has caught up)."""

    batch: tuple[tuple[Want | Apply, frozenset[str]], ...]
    writes: dict[str, UnitRecord]
    revision: int = 0
    error: BaseException | None = None
    retry: bool = False


RegistryMessage = (
    ToUnit | Want | Apply | Snapshot | Ping | SleepIdle | RemoteChange | EdgesCommitted
)


def answer_closed(message: Any) -> None:
    """Answer ``message`` (either actor's) with :class:`CoordinatorClosed`, if it expects an answer."""
    if isinstance(message, ToUnit):
        message = message.request
    reply = getattr(message, "reply", None)
    if reply is not None:
        reply.error(CoordinatorClosed())

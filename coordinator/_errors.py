"""The exceptions unitsync raises: one root, subclasses that carry data.

Each class has a stable ``code`` (``unitsync.cycle`` ...), so clients in any language can tell
errors apart; how errors are written on the wire is the RPC layer's business
(``coordinator/rpc/_error_codec.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._status import Status

__all__ = [
    "AlreadyInStatus",
    "AlreadyRegistered",
    "CoordinatorClosed",
    "CycleError",
    "DependencyFailed",
    "InvalidName",
    "InvalidArgument",
    "Lagged",
    "NotHeld",
    "NotReady",
    "Overloaded",
    "CoordinatorUnreachable",
    "StoreUnavailable",
    "UnitNotFound",
    "UnitsyncError",
]


class UnitsyncError(Exception):
    """Root of every error unitsync raises on purpose.

    ``code`` is the stable name of the kind of error (``unitsync.cycle`` ...), the same in every
    language (see ``coordinator.rpc``). Every error keeps the arguments it was made with, so it
    can be rebuilt as the same class with the same data: ``pickle`` works, and so does the RPC
    layer's codec.
    """

    code = "unitsync.error"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._made_with = args

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # keep each error's constructor arguments (a __new__ would do it more simply, but
        # OSError subclasses then take the arguments as errno and strerror)
        super().__init_subclass__(**kwargs)
        init = cls.__init__

        def __init__(self: UnitsyncError, *args: Any) -> None:
            init(self, *args)
            self._made_with = args

        cls.__init__ = __init__  # type: ignore[method-assign]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._made_with, self.__dict__)


class InvalidName(UnitsyncError, ValueError):
    """A unit name is empty, longer than 255 UTF-8 bytes, not valid UTF-8 or has control characters."""

    code = "unitsync.invalid-name"

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        shown = name if len(name) <= 64 else name[:61] + "..."
        super().__init__(f"invalid unit name {shown!r}: {why}")


class InvalidArgument(UnitsyncError, ValueError):
    """An argument other than a name is out of range (an unknown status, a requirement that is not
    ``started``/``completed``)."""

    code = "unitsync.invalid-argument"


class CycleError(UnitsyncError):
    """Adding a dependency would close a cycle; nothing was changed.

    ``path`` is the whole cycle, first and last element equal: ``("claude", "git", "claude")``.
    """

    code = "unitsync.cycle"

    def __init__(self, path: Sequence[str]) -> None:
        self.path = tuple(path)
        super().__init__("dependency cycle refused: " + " -> ".join(self.path))


class DependencyFailed(UnitsyncError):
    """A unit can no longer become ready (or reach a status) because a unit it depends on failed
    or was skipped.

    ``unit`` is that unit (the root of the chain), ``status`` its status (``FAILED`` or
    ``SKIPPED``), ``reason`` its reason and ``path`` the chain of dependencies from the unit that
    was waited on down to ``unit`` (``("claude", "git")``; ``("git",)`` when the unit waited on
    failed itself).
    """

    code = "unitsync.dependency-failed"

    def __init__(
        self, unit: str, reason: str, path: Sequence[str], status: Status | str = "failed"
    ) -> None:
        self.unit = unit
        self.reason = reason
        self.path = tuple(path)
        self.status = Status(status) if isinstance(status, str) else status
        chain = " -> ".join(self.path)
        because = f": {reason}" if reason else ""
        what = "was skipped" if self.status is Status.SKIPPED else "failed"
        super().__init__(f"unit {unit!r} {what}{because} (via {chain})")

    @property
    def skip_reason(self) -> str:
        """The reason a unit that waited for it is skipped with:
        ``dependency "git" failed: clone failed``, ``dependency "app" was skipped: ...``."""
        what = "was skipped" if self.status is Status.SKIPPED else "failed"
        because = f": {self.reason}" if self.reason else ""
        return f'dependency "{self.unit}" {what}{because}'



class UnitNotFound(UnitsyncError, LookupError):
    """The operation needs a registered unit and ``name`` is not registered."""

    code = "unitsync.not-found"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unit {name!r} not found")


class AlreadyRegistered(UnitsyncError):
    """``register`` of a unit that is already registered."""

    code = "unitsync.already"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unit {name!r} is already registered")


class AlreadyInStatus(UnitsyncError):
    """A transition to the status the unit is already in (``start`` twice, ``complete`` twice)."""

    code = "unitsync.already"

    def __init__(self, name: str, status: Status | str) -> None:
        self.name = name
        self.status = Status(status) if isinstance(status, str) else status
        label = self.status.label
        super().__init__(f"unit {name!r} is already {label}")


class NotReady(UnitsyncError):
    """``start`` of a unit whose dependencies are not satisfied; ``unmet`` lists them by name."""

    code = "unitsync.not-ready"

    def __init__(self, name: str, unmet: Sequence[str]) -> None:
        self.name = name
        self.unmet = tuple(unmet)
        super().__init__(
            f"unit {name!r} is not ready: unsatisfied dependencies [{', '.join(self.unmet)}]"
        )


class NotHeld(UnitsyncError):
    """``hold(resume=True)`` of a unit that no lost holder holds: nothing to take over. The
    unit is ``status`` now (failed, say, once a restored hold's grace period ran out)."""

    code = "unitsync.not-held"

    def __init__(self, name: str, status: Status | str) -> None:
        self.name = name
        self.status = Status(status) if isinstance(status, str) else status
        super().__init__(
            f"unit {name!r} has no lost holder to take over (it is {self.status.label})"
        )


class CoordinatorClosed(UnitsyncError):
    """The coordinator has shut down (or the connection to it was lost) before answering."""

    code = "unitsync.closed"

    def __init__(self, message: str = "the coordinator is closed") -> None:
        super().__init__(message)


class Lagged(UnitsyncError):
    """A watch subscriber fell more than its buffer behind and was cut off, or asked to replay
    history that is no longer kept.

    ``seq`` is the sequence number of the last event it was given (or asked to start after; 0
    if none). The coordinator never waits for a slow watcher; it drops the subscription instead
    of dropping events silently. ``oldest`` (non-zero only for a replay): the oldest seq the
    history still keeps; events between ``seq`` and it were dropped.
    """

    code = "unitsync.lagged"

    def __init__(self, seq: int, buffer: int, oldest: int = 0) -> None:
        self.seq = seq
        self.buffer = buffer
        self.oldest = oldest
        if oldest:
            message = (f"the history no longer keeps the events after {seq}: the oldest kept"
                       f" is {oldest}")
        else:
            message = (f"watcher fell more than {buffer} events behind after event {seq} and"
                       " was cut off")
        super().__init__(message)


class Overloaded(UnitsyncError):
    """The coordinator refused the request to protect itself (too many queued requests); nothing
    was changed. Retry later."""

    code = "unitsync.overloaded"

    def __init__(self, what: str) -> None:
        super().__init__(f"coordinator overloaded: {what}")


class CoordinatorUnreachable(UnitsyncError, ConnectionError):
    """No coordinator answers on ``path`` (no socket file, or nobody listening)."""

    code = "unitsync.unreachable"

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"no unitsync coordinator at {path} ({why}); is `unitsync serve` running?")


class StoreUnavailable(UnitsyncError):
    """The shared store (etcd, ``serve --store``) did not take the change: no quorum, no
    endpoint answering, the store full, or too many concurrent changes to the same unit.
    ``applied`` says whether the change may have been applied all the same (its answer was
    lost): ``"no"`` (it was not: retry), ``"unknown"`` (check with ``status`` before retrying).
    The coordinator's state follows the store, whatever happened."""

    code = "unitsync.unavailable"

    def __init__(self, why: str, applied: str = "no") -> None:
        self.why = why
        self.applied = applied
        tail = ("it was not applied" if applied == "no"
                else "it may or may not have been applied: check before retrying")
        super().__init__(f"the shared store did not confirm the change ({why}); {tail}")

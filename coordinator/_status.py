"""The status of a unit and what a requirement on it means."""

from __future__ import annotations

import enum

__all__ = ["Status"]


class Status(enum.Enum):
    """Where a unit is in its life.

    ``NOT_REGISTERED`` → ``PENDING`` → ``STARTED`` → ``COMPLETED``, or one of the other two
    outcomes: ``FAILED`` (with a reason) or ``SKIPPED`` (it did not run because a dependency
    failed or was skipped, or someone said so; with a reason). ``FINISHED`` is never a unit's
    status: it is the requirement (and the status to wait for) met by any outcome. The value is
    the string used in JSON output (coder's spelling: ``""`` for a unit nobody has registered);
    :attr:`label` is the human spelling used in tables.

    A *requirement* on a dependency edge is ``STARTED``, ``COMPLETED`` or ``FINISHED``; see
    :meth:`reaches`.
    """

    NOT_REGISTERED = ""
    PENDING = "pending"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    FINISHED = "finished"

    #: Members are singletons compared by identity, so they hash by identity: in C, where
    #: Enum's own ``hash(self._name_)`` is a Python call on every dict and set lookup (the
    #: wire tables, the requirement checks; stress/README.md, "Fan-out and the bridge").
    __hash__ = object.__hash__

    @property
    def label(self) -> str:
        """Human spelling: ``not registered`` for :attr:`NOT_REGISTERED`, else the value."""
        return self.value or "not registered"

    def reaches(self, target: Status) -> bool:
        """True when a unit in this status has *reached* ``target``.

        ``PENDING < STARTED < COMPLETED``: started is reached by started or completed, completed
        only by completed. ``FINISHED`` is reached by any outcome (completed, failed, skipped).
        ``FAILED`` and ``SKIPPED`` reach only themselves and ``FINISHED`` (such a unit meets no
        other requirement until it is re-run). This is where we differ from coder, which
        compares for equality, so that a ``started`` requirement became unmet again when its
        dependency completed.
        """
        return target in _REACHED[self]  # a table: this runs for every dependent told of a change

    @classmethod
    def parse(cls, text: str) -> Status:
        """The status spelled ``text`` (its value or its label, any case); ``ValueError`` if none."""
        wanted = text.strip().lower()
        for status in cls:
            if wanted in (status.value, status.label, status.name.lower()):
                return status
        raise ValueError(f"unknown status {text!r}")


_RANK = {
    Status.NOT_REGISTERED: 0,
    Status.PENDING: 1,
    Status.STARTED: 2,
    Status.COMPLETED: 3,
}

_OUTCOMES = frozenset({Status.COMPLETED, Status.FAILED, Status.SKIPPED})
#: The outcomes that meet no requirement but ``FINISHED`` (and block the others).
FAILURES = (Status.FAILED, Status.SKIPPED)


def _reached_by(status: Status) -> frozenset[Status]:
    """The targets ``status`` reaches, by the rules :meth:`Status.reaches` states."""
    if status is Status.FINISHED:  # not a unit's status: reaches nothing
        return frozenset()
    reached = {Status.FINISHED} if status in _OUTCOMES else set()
    if status in FAILURES:
        return frozenset(reached | {status})
    return frozenset(reached | {t for t in _RANK if _RANK[status] >= _RANK[t]})


#: What each status reaches (:meth:`Status.reaches`, a lookup instead of four tests: ~0.4 µs
#: a call otherwise, three calls for each dependent told of a change).
_REACHED = {status: _reached_by(status) for status in Status}

#: The statuses a dependency edge may require.
REQUIREMENTS = (Status.STARTED, Status.COMPLETED, Status.FINISHED)

#: What a unit may be in (``FINISHED`` is only a requirement or a status to wait for).
UNIT_STATUSES = tuple(status for status in Status if status is not Status.FINISHED)

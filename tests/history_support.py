"""A scripted run as a list of events with a fake clock, shared by the timeline and Gantt tests.

``repo`` starts and keeps running; ``git`` requires ``repo`` started and runs 0.1 → 2.1;
``claude`` requires ``git`` completed, waits for it and runs 2.104 → 4.604 (an edge on
``docs``, a unit only mentioned, is added while it runs); ``lint`` fails at 1.3, which skips
``deploy``, and is re-run 5.0 → 5.5.
"""

from __future__ import annotations

from coordinator import Event, Status

__all__ = ["T0", "edge", "run_events", "status"]

#: The fake clock's zero: 2023-11-14 22:13:20 UTC.
T0 = 1_700_000_000.0

N = Status.NOT_REGISTERED
P = Status.PENDING
S = Status.STARTED
C = Status.COMPLETED
F = Status.FAILED
K = Status.SKIPPED


def status(seq: int, at: float, unit: str, old: Status, new: Status, reason: str = "") -> Event:
    return Event(seq=seq, time=T0 + at, unit=unit, old=old, new=new, reason=reason)


def edge(seq: int, at: float, unit: str, on: str, requires: Status, current: Status) -> Event:
    return Event(seq=seq, time=T0 + at, unit=unit, old=current, new=current, depends_on=on,
                 requires=requires)


def run_events() -> list[Event]:
    return [
        status(1, 0.000, "repo", N, P),
        status(2, 0.000, "git", N, P),
        edge(3, 0.000, "git", "repo", S, P),
        status(4, 0.010, "claude", N, P),
        edge(5, 0.010, "claude", "git", C, P),
        status(6, 0.050, "repo", P, S),
        status(7, 0.100, "git", P, S),
        status(8, 0.200, "lint", N, P),
        status(9, 0.250, "deploy", N, P),
        edge(10, 0.250, "deploy", "lint", C, P),
        status(11, 0.300, "lint", P, S),
        status(12, 1.300, "lint", S, F, "exit code 1"),
        status(13, 1.300, "deploy", P, K, "dependency lint failed"),
        status(14, 2.100, "git", S, C),
        status(15, 2.104, "claude", P, S),
        edge(16, 3.000, "claude", "docs", S, S),
        status(17, 4.604, "claude", S, C),
        status(18, 5.000, "lint", F, S),
        status(19, 5.500, "lint", S, C),
    ]

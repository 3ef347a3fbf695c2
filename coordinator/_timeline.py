"""What a list of events says about a run: each unit's last run, blame, the critical chain.

Pure functions of a list of :class:`~coordinator._api.Event` (no Trio, no coordinator): the
``history``, ``timeline``, ``blame`` and ``critical-chain`` commands and the Gantt chart all
read the coordinator's history through them, and tests feed them events built by hand.

The list may be a *window* (it starts in the middle of history): what happened before its
first event is unknown. A unit's status before its first event in the window is that event's
``old``; an edge added before the window is unknown; a requirement whose dependency already
reached it when the window opened was met "before the window" (``Met.at`` is None). Events are
taken in ``seq`` order, the coordinator's order, even if the wall clock stepped back.

Words used throughout (all times are wall-clock seconds since the epoch, as in ``Event.time``):

* a unit's *wait* begins when it is registered, when its previous run ended (a re-run), or at
  its first event in the window, whichever is latest; it ends when the unit starts.
* a requirement is *met* at the event of its dependency that made it reach the required status
  (and it stayed there since); the *critical* requirement of a start is the one met last.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ._api import Event
from ._status import REQUIREMENTS, Status

__all__ = [
    "Analysis",
    "BlameRow",
    "Link",
    "Met",
    "PastRun",
    "Run",
    "Start",
    "TimelineRow",
    "blame",
    "critical_chain",
    "runs",
    "timeline",
]

_OUTCOMES = (Status.COMPLETED, Status.FAILED, Status.SKIPPED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Met:
    """A requirement in force when a unit started: ``depends_on`` had reached ``requires``.

    ``at``/``seq``: the time and seq of the dependency's event that met it; None when it was
    met before the window (or the dependency has no status event in it).
    """

    depends_on: str
    requires: Status
    at: float | None
    seq: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    """One start of a unit (seq and time of its ``-> started`` event).

    ``since``: when the wait before it began. ``requirements``: the edges in force at the start
    (added before it, in the window), sorted by dependency. ``critical``: the one met last
    (None if none was met inside the window).
    """

    unit: str
    seq: int
    time: float
    since: float
    requirements: tuple[Met, ...]
    critical: Met | None

    @property
    def waited_for(self) -> Met | None:
        """The critical requirement if the unit was waiting for it (met after its wait began),
        else None: the unit started as soon as it was asked to, as far as the window shows."""
        critical = self.critical
        if critical is None or critical.at is None or critical.at <= self.since:
            return None
        return critical


class PastRun(NamedTuple):
    """A run that ended before the unit's last one: when, and how (outcome and reason)."""

    started: float
    ended: float
    outcome: Status
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """A unit's last run, as the window shows it.

    ``first_seen``: its first own event in the window (None: only mentioned as a dependency,
    the unit has no event of its own). ``since``: when the wait of its last run began.
    ``started``: its last start (None: never started in the window). A unit that existed when
    the window opened (its first event's ``old`` is not ``NOT_REGISTERED``) is taken to be in
    that status since the window's first event: its wait began then, or, if it was running,
    it started then (with no :class:`Start`: what it waited for is unknown). ``ended``: the first
    outcome after that start, or, for a unit that never started, its first outcome after its
    wait began (a skip, or a fail/complete while pending); None while running or waiting.
    ``status``/``reason``: the unit's status after the window's last event.
    ``start``: the last :class:`Start` (requirements and critical dependency), if any.
    ``earlier``: the window's runs before the last, oldest first (a re-run's history: the
    failure it followed, say).
    """

    unit: str
    first_seen: float | None
    since: float | None
    started: float | None
    ended: float | None
    status: Status
    reason: str
    start: Start | None
    earlier: tuple[PastRun, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BlameRow:
    """One unit in :func:`blame`, durations in seconds.

    ``waiting``: its wait (``since`` → started; never started: ``since`` → its outcome, or →
    now while pending). ``running``: started → ended (or → now while running); None if it never
    started. ``total``: waiting + running. ``ongoing``: the last interval is still open (it
    was measured up to now).
    """

    unit: str
    waiting: float
    running: float | None
    total: float
    status: Status
    ongoing: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """One link of :func:`critical_chain`.

    ``at``: seconds since the window's first event when the unit reached the status that met
    its dependent's requirement (``requires``; for the top unit, None, and ``at`` is when it
    reached its outcome, or started if it is still running). None: before the window.
    ``took``: seconds from its start (the last one at or before that moment) to that moment;
    None if it did not start in the window before then.
    """

    unit: str
    at: float | None
    took: float | None
    requires: Status | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineRow:
    """One event with its ``elapsed`` seconds since the window's first event; for a start,
    its :class:`Start` (what it waited for), else None."""

    event: Event
    elapsed: float
    start: Start | None = None


@dataclass(slots=True)
class _Track:
    """What the pass over the events knows of one unit so far."""

    name: str
    first_seen: float | None = None
    status: Status = Status.NOT_REGISTERED
    reason: str = ""
    since: float | None = None  # when the current wait began
    run_since: float | None = None
    started: float | None = None
    ended: float | None = None
    outcome: Status = Status.NOT_REGISTERED  # the status the run ended with
    #: requirement -> (time, seq) it was met at, None (before the window), or absent (unmet);
    #: None as a whole until the unit's first own event (unknown: a mention only)
    met: dict[Status, tuple[float, int] | None] | None = None
    edges: dict[str, Status] = field(default_factory=dict)
    starts: list[Start] = field(default_factory=list)
    earlier: list[PastRun] = field(default_factory=list)

    def see(self, event: Event, origin: float) -> None:
        """Its first own event: the status before it is the event's ``old``, held since the
        window opened (``origin``) unless the event registers the unit."""
        if self.first_seen is not None:
            return
        self.first_seen = event.time
        self.since = event.time if event.old is Status.NOT_REGISTERED else origin
        self.status = event.old
        if event.old is Status.STARTED:  # running when the window opened
            self.run_since = self.started = origin
        self.met = {r: None for r in REQUIREMENTS if event.old.reaches(r)}

    def change(self, event: Event) -> None:
        """A status change of this unit (``see`` first)."""
        assert self.met is not None
        for requirement in REQUIREMENTS:
            if not event.new.reaches(requirement):
                self.met.pop(requirement, None)
            elif requirement not in self.met:
                self.met[requirement] = (event.time, event.seq)
        if event.new is Status.STARTED:
            if self.started is not None and self.ended is not None:
                self.earlier.append(PastRun(self.started, self.ended, self.outcome, self.reason))
            self.run_since, self.started, self.ended = self.since, event.time, None
        elif event.new in _OUTCOMES:
            if self.ended is None:
                if self.started is None:
                    self.run_since = self.since
                self.ended, self.outcome = event.time, event.new
            self.since = event.time
        elif event.new is Status.PENDING:
            self.since = event.time
        self.status, self.reason = event.new, event.reason

    def met_at(self, requirement: Status) -> tuple[float, int] | None | bool:
        """When ``requirement`` was met: (time, seq), None (before the window), False (unmet)."""
        if self.met is None:
            return None  # no event of its own: a start proves it was met, before the window
        return self.met.get(requirement, False)

    def run(self) -> Run:
        waiting_now = self.started is None and self.ended is None
        return Run(
            unit=self.name,
            first_seen=self.first_seen,
            since=self.since if waiting_now else self.run_since,
            started=self.started,
            ended=self.ended,
            status=self.status,
            reason=self.reason,
            start=self.starts[-1] if self.starts and self.started is not None else None,
            earlier=tuple(self.earlier),
        )


class Analysis:
    """The analysis built one event at a time, for a reader that follows a live stream
    (``timeline --watch``): :meth:`add` each event in seq order and get its row at once. The
    functions below build one over a whole list."""

    __slots__ = ("origin", "last", "tracks", "rows")

    def __init__(self) -> None:
        self.origin: float | None = None  # the window's first event
        self.last = 0.0  # the window's last event
        #: in order of first appearance (own event or mention)
        self.tracks: dict[str, _Track] = {}
        self.rows: list[TimelineRow] = []

    def _track(self, name: str) -> _Track:
        found = self.tracks.get(name)
        if found is None:
            found = self.tracks[name] = _Track(name)
        return found

    def add(self, event: Event) -> TimelineRow:
        """Take the next event (seq order) and return its row."""
        if self.origin is None:
            self.origin = event.time
        origin = self.origin
        unit = self._track(event.unit)
        unit.see(event, origin)
        start = None
        if event.is_edge:
            self._track(event.depends_on)
            unit.edges[event.depends_on] = event.requires
        else:
            if event.new is Status.STARTED:
                start = _start(event, unit, self.tracks)
                unit.starts.append(start)
            unit.change(event)
        row = TimelineRow(event=event, elapsed=event.time - origin, start=start)
        self.rows.append(row)
        self.last = event.time
        return row


def _analyse(events: Iterable[Event]) -> Analysis:
    analysis = Analysis()
    for event in sorted(events, key=lambda e: e.seq):
        analysis.add(event)
    return analysis


def _start(event: Event, unit: _Track, tracks: dict[str, _Track]) -> Start:
    """``unit`` starts now: its requirements in force and which was met last."""
    requirements = []
    for dependency, required in sorted(unit.edges.items()):
        met = tracks[dependency].met_at(required)
        if met is False:
            continue  # the coordinator refuses such a start; a window may still show one
        at, seq = met if met else (None, None)
        requirements.append(Met(depends_on=dependency, requires=required, at=at, seq=seq))
    timed = [m for m in requirements if m.at is not None]
    critical = max(timed, key=lambda m: (m.at, m.seq)) if timed else None
    since = unit.since if unit.since is not None else event.time
    return Start(unit=unit.name, seq=event.seq, time=event.time, since=since,
                 requirements=tuple(requirements), critical=critical)


def runs(events: Iterable[Event]) -> list[Run]:
    """Each unit's last run, in order of first appearance (its own event, or a mention as a
    dependency: such a unit has ``first_seen`` None)."""
    return [t.run() for t in _analyse(events).tracks.values()]


def timeline(events: Iterable[Event]) -> list[TimelineRow]:
    """Every event in seq order, with its elapsed time since the window's first event and,
    for a start, what the unit waited for."""
    return _analyse(events).rows


def blame(events: Iterable[Event], *, now: float | None = None) -> list[BlameRow]:
    """Each unit with an event of its own, slowest first: by running time (never started last),
    then total, then name. ``now`` (default: the last event's time) closes the intervals still
    open: a unit still running, or still waiting to start. See :class:`BlameRow`."""
    analysis = _analyse(events)
    now = analysis.last if now is None else now
    rows = []
    for run in (t.run() for t in analysis.tracks.values()):
        if run.first_seen is None or run.since is None:
            continue
        end = run.started if run.started is not None else run.ended
        waiting = (now if end is None else end) - run.since
        running = None
        if run.started is not None:
            running = (now if run.ended is None else run.ended) - run.started
        rows.append(BlameRow(
            unit=run.unit, waiting=waiting, running=running, total=waiting + (running or 0.0),
            status=run.status, ongoing=run.ended is None,
        ))
    rows.sort(key=lambda r: (-(-1.0 if r.running is None else r.running), -r.total, r.unit))
    return rows


def critical_chain(events: Sequence[Event], unit: str | None = None) -> list[Link]:
    """The chain of waits that decided when ``unit`` could run, as ``systemd-analyze
    critical-chain``: ``unit``, then the dependency whose requirement was met last before
    ``unit``'s last start, then that dependency's own critical dependency at the start
    before that moment, and so on, until a start waited for nothing in the window.

    ``unit`` defaults to the unit whose outcome came last (or, if none ended, the last to
    start). ``ValueError`` if it has no event in the window (nor is mentioned); [] for no
    events. See :class:`Link` for ``at`` and ``took``.
    """
    analysis = _analyse(events)
    if not analysis.tracks:
        return []
    if unit is None:
        unit = _latest(analysis.tracks.values())
    top = analysis.tracks.get(unit)
    if top is None:
        raise ValueError(f"no event of unit {unit!r} in the history")
    origin = analysis.origin
    assert origin is not None  # there are tracks: there was an event
    run = top.run()
    moment = run.ended if run.ended is not None else run.started
    took = None if moment is None or run.started is None else moment - run.started
    chain = [Link(unit=unit, at=_since(moment, origin), took=took)]
    start = run.start
    # each step goes to an earlier seq (met before the start, the next start before the met)
    while start is not None and start.critical is not None:
        met = start.critical
        assert met.at is not None and met.seq is not None
        dependency = analysis.tracks[met.depends_on]
        start = next((s for s in reversed(dependency.starts) if s.seq <= met.seq), None)
        chain.append(Link(
            unit=met.depends_on, at=met.at - origin, requires=met.requires,
            took=None if start is None else met.at - start.time,
        ))
    return chain


def _latest(tracks: Iterable[_Track]) -> str:
    """The unit whose outcome came last, else the last to start, else the first seen."""
    tracks = list(tracks)
    ended = [t for t in tracks if t.ended is not None]
    if ended:
        return max(ended, key=lambda t: t.ended or 0.0).name
    started = [t for t in tracks if t.started is not None]
    if started:
        return max(started, key=lambda t: t.started or 0.0).name
    return tracks[0].name


def _since(moment: float | None, origin: float) -> float | None:
    return None if moment is None else moment - origin

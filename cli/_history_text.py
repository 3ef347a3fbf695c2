"""What the history commands print: pure functions of a list of events, text or JSON.

``status UNIT``'s History section (coder's layout), ``timeline``, ``blame`` and
``critical-chain`` (``systemd-analyze``'s layouts). The analysis is
:mod:`coordinator._timeline`'s (public as ``coordinator.blame`` ...); this module only lays it out.

JSON: ``time`` is the event's wall-clock time in seconds since the epoch (a float, as in
``watch -o json``); durations (``elapsed``, ``waiting``, ``at``, ...) are float seconds
rounded to the microsecond; keys
follow :func:`cli._format.event_json` (``unit_name``, ``old_status`` ...), statuses are their
JSON spelling (``""`` for not registered).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from coordinator import (
    BlameRow,
    Event,
    Link,
    Status,
    TimelineRow,
    blame,
    critical_chain,
    timeline,
)

from ._format import _table

__all__ = [
    "blame_json",
    "blame_text",
    "chain_json",
    "chain_text",
    "duration",
    "event_summary",
    "history_json",
    "history_objects",
    "history_text",
    "timeline_header",
    "timeline_json",
    "timeline_line",
    "timeline_object",
    "timeline_text",
]


def duration(seconds: float, *, digits: int = 3) -> str:
    """``2.104s``, ``1min 3.204s``, ``2h 0min 5.000s``: seconds as systemd prints them, with
    ``digits`` decimals (rounded once, so 59.9996 is ``1min 0.000s``, never ``60.000s``)."""
    sign = "-" if seconds < 0 else ""
    scale = 10**digits
    units = round(abs(seconds) * scale)
    whole, fraction = divmod(units, scale)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{secs}.{fraction:0{digits}d}s" if digits else f"{secs}s"
    if hours:
        return f"{sign}{hours}h {minutes}min {text}"
    if minutes:
        return f"{sign}{minutes}min {text}"
    return sign + text


def _clock(moment: float) -> str:
    """``11:43:14.295``: local wall-clock time to the millisecond."""
    seconds, millis = divmod(round(moment * 1000), 1000)  # 0.010 is not 0.009999...
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{millis:03d}"


def _elapsed(seconds: float) -> str:
    return ("+" if seconds >= 0 else "") + duration(seconds, digits=1)


def event_summary(event: Event) -> str:
    """What happened, in words: ``registered (pending)``, ``depends on git (completed)``,
    ``pending -> started``, ``started -> failed: exit code 1``."""
    if event.is_edge:
        return f"depends on {event.depends_on} ({event.requires.label})"
    if event.old is Status.NOT_REGISTERED and event.new is Status.PENDING:
        return "registered (pending)"
    line = f"{event.old.label} -> {event.new.label}"
    return f"{line}: {event.reason}" if event.reason else line


def _row_text(row: TimelineRow) -> str:
    """The event's summary; a start adds what it waited for (``waited 2.1s for git``)."""
    text = event_summary(row.event)
    start = row.start
    if start is not None and (met := start.waited_for) is not None:
        text += f" (waited {duration(row.event.time - start.since, digits=1)} for {met.depends_on})"
    return text


def _event_json(row: TimelineRow, elapsed: float) -> dict[str, Any]:
    event = row.event
    start = row.start
    waited_for = start.waited_for if start is not None else None
    return {
        "seq": event.seq,
        "time": event.time,
        "elapsed": _seconds(elapsed),
        "unit_name": event.unit,
        "event": event_summary(event),
        "old_status": event.old.value,
        "new_status": event.new.value,
        "reason": event.reason,
        "depends_on": event.depends_on,
        "required_status": event.requires.value if event.is_edge else "",
        "waited": None if start is None else _seconds(event.time - start.since),
        "waited_for": waited_for.depends_on if waited_for is not None else "",
    }


def _seconds(value: float | None) -> float | None:
    """A duration for JSON, to the microsecond (no ``0.04999995231628418``)."""
    return None if value is None else round(value, 6)


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _unit_rows(events: Sequence[Event], unit: str) -> list[TimelineRow]:
    """The timeline rows of ``unit``'s own events (analysed with everything: what it waited
    for needs its dependencies' events)."""
    return [row for row in timeline(events) if row.event.unit == unit]


def history_text(events: Sequence[Event], unit: str) -> str:
    """``status UNIT``'s History section: ``History:``, then ``TIME  ELAPSED  EVENT`` rows of
    the unit's own events, ELAPSED since its first one; ``No events`` if it has none."""
    rows = _unit_rows(events, unit)
    if not rows:
        return "History:\nNo events"
    first = rows[0].event.time
    table = _table(("TIME", "ELAPSED", "EVENT"), (
        (_clock(r.event.time), _elapsed(r.event.time - first), event_summary(r.event))
        for r in rows
    ))
    return "History:\n" + table


def history_objects(events: Sequence[Event], unit: str) -> list[dict[str, Any]]:
    """The History section as JSON objects, one per event (``elapsed`` since the unit's
    first event; the keys of :func:`timeline_json`): ``status -o json``'s ``"history"``."""
    rows = _unit_rows(events, unit)
    first = rows[0].event.time if rows else 0.0
    return [_event_json(r, r.event.time - first) for r in rows]


def history_json(events: Sequence[Event], unit: str) -> str:
    """:func:`history_objects` as a JSON list."""
    return _dump(history_objects(events, unit))


def timeline_text(events: Sequence[Event]) -> str:
    """``TIME  ELAPSED  UNIT  EVENT``, one row per event, ELAPSED since the first."""
    rows = timeline(events)
    if not rows:
        return "No events"
    return _table(("TIME", "ELAPSED", "UNIT", "EVENT"), (
        (_clock(r.event.time), _elapsed(r.elapsed), r.event.unit, _row_text(r)) for r in rows
    ))


TIMELINE_HEADER = ("TIME", "ELAPSED", "UNIT", "EVENT")


def timeline_line(row: TimelineRow, unit_width: int) -> str:
    """One row of :func:`timeline_text` with fixed widths, for a stream (``--watch``), whose
    later names are not known yet: the UNIT column is ``unit_width`` wide (longer names
    push the line)."""
    cells = (_clock(row.event.time), _elapsed(row.elapsed), row.event.unit, _row_text(row))
    return _fixed(cells, unit_width)


def timeline_header(unit_width: int) -> str:
    return _fixed(TIMELINE_HEADER, unit_width)


def _fixed(cells: Sequence[str], unit_width: int) -> str:
    time_, elapsed, unit, text = cells
    return f"{time_:<12}  {elapsed:>9}  {unit:<{unit_width}}  {text}".rstrip()


def timeline_object(row: TimelineRow) -> str:
    """One row of :func:`timeline_json` as a line of compact JSON (JSON Lines: ``--watch``)."""
    return json.dumps(_event_json(row, row.elapsed), ensure_ascii=False)


def timeline_json(events: Sequence[Event]) -> str:
    """One object per event: ``seq``, ``time``, ``elapsed`` (since the first event),
    ``unit_name``, ``event`` (the text), ``old_status``, ``new_status``, ``reason``,
    ``depends_on`` and ``required_status`` (``""`` unless an edge), and for a start
    ``waited`` (seconds since its wait began) and ``waited_for`` (else null and ``""``)."""
    return _dump([_event_json(r, r.elapsed) for r in timeline(events)])


def _blame_status(row: BlameRow) -> str:
    if row.ongoing and row.status is Status.STARTED:
        return "still running"
    if row.ongoing and row.running is None:
        return f"still {row.status.label}"
    return row.status.label


def blame_text(events: Sequence[Event], *, now: float | None = None) -> str:
    """``systemd-analyze blame``: running time first (slowest first), then waiting and total,
    the unit and its status (``still running`` when measured up to now)."""
    rows = blame(events, now=now)
    if not rows:
        return "No units"
    cells = [
        ("-" if r.running is None else duration(r.running), duration(r.waiting),
         duration(r.total), r.unit, _blame_status(r))
        for r in rows
    ]
    lines = [("RUNNING", "WAITING", "TOTAL", "UNIT", "STATUS"), *cells]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return "\n".join(
        "  ".join([*(c.rjust(w) for c, w in zip(line[:3], widths)), line[3].ljust(widths[3]),
                   line[4]]).rstrip()
        for line in lines
    )


def blame_json(events: Sequence[Event], *, now: float | None = None) -> str:
    """``[{"unit_name", "status", "waiting", "running", "total", "ongoing"}]``, slowest first;
    ``running`` is null for a unit that never started."""
    return _dump([
        {"unit_name": r.unit, "status": r.status.value, "waiting": _seconds(r.waiting),
         "running": _seconds(r.running), "total": _seconds(r.total), "ongoing": r.ongoing}
        for r in blame(events, now=now)
    ])


CHAIN_HEADER = (
    'The time when a unit reached what its dependent required is printed after the "@" '
    "character\n(for the first unit: its outcome, or its start if still running), counted from "
    "the first event.\n"
    'The time the unit took from its start to then is printed after the "+" character.'
)


def _link_text(link: Link) -> str:
    at = "@before the window" if link.at is None else f"@{duration(link.at)}"
    took = f" +{duration(link.took)}" if link.took else ""
    return f"{link.unit} {at}{took}"


def chain_text(events: Sequence[Event], unit: str | None = None) -> str:
    """``systemd-analyze critical-chain``: the header, then the chain as a tree."""
    chain = critical_chain(events, unit)
    if not chain:
        return "No events"
    lines = [CHAIN_HEADER, "", _link_text(chain[0])]
    lines += [f"{'  ' * (depth - 1)}└─{_link_text(link)}" for depth, link in enumerate(chain)
              if depth]
    return "\n".join(lines)


def chain_json(events: Sequence[Event], unit: str | None = None) -> str:
    """``[{"unit_name", "at", "took", "required_status"}]``, from the unit down its chain
    (``required_status``: what the link met for the one above; ``""`` for the first)."""
    return _dump([
        {"unit_name": link.unit, "at": _seconds(link.at), "took": _seconds(link.took),
         "required_status": link.requires.value if link.requires else ""}
        for link in critical_chain(events, unit)
    ])

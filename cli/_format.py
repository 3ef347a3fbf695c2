"""What the commands print: coder's tables and JSON keys, pure functions of the library's values.

Tables follow coder's layout (columns left-aligned, separated by two spaces) without its
trailing padding; JSON keeps coder's keys (``unit_name``, ``is_ready`` ...) so scripts port
unchanged, and adds ours (``reason``, ``blocked_by``) after them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from coordinator import Dependency, Event, UnitInfo

__all__ = [
    "event_json",
    "event_text",
    "graph_json",
    "list_json",
    "list_table",
    "names",
    "status_json",
    "status_table",
]


def names(items: Iterable[str]) -> str:
    """``[a, b]``, coder's way of printing a list of units."""
    return "[" + ", ".join(items) + "]"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _dependency_json(dependency: Dependency) -> dict[str, Any]:
    return {
        "depends_on": dependency.depends_on,
        "required_status": dependency.required.value,
        "current_status": dependency.current.value,
        "is_satisfied": dependency.satisfied,
    }


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def status_table(info: UnitInfo) -> str:
    lines = [f"Unit: {info.name}", f"Status: {info.status.label}", f"Ready: {_bool(info.ready)}"]
    if info.reason:
        lines.append(f"Reason: {info.reason}")
    if info.blocked_by:
        lines.append(f"Blocked by: {info.blocked_by}")
    lines.append("")
    if info.dependencies:
        lines.append(_table(
            ("DEPENDS ON", "REQUIRED STATUS", "CURRENT STATUS", "SATISFIED"),
            ((d.depends_on, d.required.label, d.current.label, _bool(d.satisfied))
             for d in info.dependencies),
        ))
    else:
        lines.append("No dependencies found")
    return "\n".join(lines)


def status_json(info: UnitInfo, history: list[dict[str, Any]] | None = None) -> str:
    """coder's keys, plus reason, blocked_by and (given) the unit's ``history``."""
    shown = {
        "unit_name": info.name,
        "status": info.status.value,
        "is_ready": info.ready,
        "dependencies": [_dependency_json(d) for d in info.dependencies],
        "reason": info.reason,
        "blocked_by": info.blocked_by,
    }
    if history is not None:
        shown["history"] = history
    return _dump(shown)


def _unit_json(info: UnitInfo) -> dict[str, Any]:
    return {"unit_name": info.name, "status": info.status.value, "is_ready": info.ready}


def list_table(units: Sequence[UnitInfo]) -> str:
    if not units:
        return "No units registered"
    return _table(("UNIT", "STATUS", "READY"),
                  ((u.name, u.status.label, _bool(u.ready)) for u in units))


def list_json(units: Sequence[UnitInfo]) -> str:
    return _dump([_unit_json(u) for u in units])


def graph_json(units: Sequence[UnitInfo]) -> str:
    """Registered units as in ``list``, and every edge (its dependency may be unregistered),
    sorted by unit, then dependency."""
    edges = [
        {"unit_name": u.name, **_dependency_json(d)}
        for u in sorted(units, key=lambda u: u.name)
        for d in u.dependencies
    ]
    return _dump({"units": [_unit_json(u) for u in units], "edges": edges})


def event_json(event: Event) -> str:
    """One line: ``{"seq", "time", "unit_name", "old_status", "new_status", "reason",
    "depends_on", "required_status"}``; the last two are "" except for an edge added (the
    keys ``status -o json``'s dependencies and ``timeline -o json`` use)."""
    return json.dumps({
        "seq": event.seq,
        "time": event.time,
        "unit_name": event.unit,
        "old_status": event.old.value,
        "new_status": event.new.value,
        "reason": event.reason,
        "depends_on": event.depends_on,
        "required_status": event.requires.value,
    }, ensure_ascii=False)


def event_text(event: Event) -> str:
    """``2026-11-25T02:38:26.123Z git: pending -> started`` (`` (reason)`` if there is one), or
    for an edge added ``... claude: depends on git (completed)``."""
    seconds, millis = divmod(round(event.time * 1000), 1000)  # .010, never .009
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if event.depends_on:
        return (f"{stamp}.{millis:03d}Z {event.unit}: depends on {event.depends_on}"
                f" ({event.requires.label})")
    line = f"{stamp}.{millis:03d}Z {event.unit}: {event.old.label} -> {event.new.label}"
    return f"{line} ({event.reason})" if event.reason else line

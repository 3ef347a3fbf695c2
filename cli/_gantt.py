"""A Gantt chart of a run: SVG written directly (rects, lines, text), or an HTML page holding it.

One row per unit, in order of first appearance: a grey bar while it waited (its wait began →
started), then a bar while it ran, coloured by its outcome (completed, failed, still running);
a unit that never started ends its wait with a narrow mark of its outcome (skipped, or failed
or completed while pending). A thin arrow runs from the moment a dependency met a requirement
to the dependent's start; the critical chain (of the unit whose outcome came last) has a dark
outline, bold labels and thick arrows. Colours are the Okabe–Ito palette (told apart with
colour-blindness) and a legend names them. A failed or skipped unit's reason is its bar's
``<title>`` (a tooltip).

Elements carry stable classes and data attributes for tests and stylesheets: each unit is a
``<g class="unit" data-unit="git" data-status="completed">`` (plus ``critical``) holding
``rect.bar.waiting``, ``rect.bar.running.<completed|failed|still-running>`` or
``rect.bar.outcome.<skipped|failed|completed>`` (earlier runs of a re-run unit:
``rect.bar.running.<outcome>.earlier``), each with ``data-start``/``data-end`` in
seconds since the first event; arrows are ``line.dependency`` with ``data-from``/``data-to``.

Standard library only, and the CLI imports it lazily: it costs nothing until a picture is drawn.
"""

from __future__ import annotations

import html
import itertools
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from coordinator import Event, Run, critical_chain, runs

from ._history_text import duration

__all__ = ["render_html", "render_svg"]

#: Okabe–Ito colours: distinct with the common colour-vision deficiencies.
COLOURS = {
    "waiting": "#D9D9D9",
    "completed": "#0072B2",
    "failed": "#D55E00",
    "skipped": "#CC79A7",
    "still-running": "#E69F00",
}
LEGEND = (
    ("waiting", "waiting"), ("completed", "completed"), ("failed", "failed"),
    ("skipped", "skipped"), ("still-running", "still running"),
)
LABEL_WIDTH = 180
MARGIN = 20
TITLE_HEIGHT = 34
AXIS_HEIGHT = 26
ROW_HEIGHT = 26
BAR_HEIGHT = 14
OUTCOME_MARK = 6  # width of the mark ending a wait that never started
LEGEND_HEIGHT = 44
LABEL_CHARS = 26  # a longer name is cut in the label (its tooltip has it whole)

_STEPS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # no XML 1.0 character may be one


def _text(value: str) -> str:
    """``value`` escaped for XML text or an attribute (quotes too); control characters, which
    XML cannot carry even escaped, become U+FFFD."""
    return html.escape(_CONTROL.sub("\ufffd", value), quote=True)


def _num(value: float) -> str:
    """A coordinate: at most two decimals, no ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True, slots=True)
class _Scale:
    """Seconds since the first event → x, over ``[0, end]`` (a whole number of ``step``)."""

    left: float
    width: float
    end: float
    step: float

    def x(self, seconds: float) -> float:
        return self.left + self.width * max(seconds, 0.0) / self.end


def _scale(span: float, left: float, width: float) -> _Scale:
    """The smallest step of :data:`_STEPS` giving at most 10 ticks over ``span``."""
    step = next((s for s in _STEPS if span / s <= 10), None)
    if step is None:  # more than 10 days: whole days
        step = 86400 * math.ceil(span / 86400 / 10)
    end = max(step, step * math.ceil(span / step - 1e-9))
    return _Scale(left, width, end, step)


def tick_label(seconds: float, step: float) -> str:
    """``0s``, ``0.5s``, ``1min 30s``, ``2h``: a tick at ``seconds`` on an axis of ``step``."""
    if step >= 60:
        hours, minutes = divmod(round(seconds / 60), 60)
        parts = [f"{hours}h" if hours else "", f"{minutes}min" if minutes else ""]
        return " ".join(p for p in parts if p) or "0s"
    digits = max(0, -math.floor(math.log10(step) + 1e-9))
    minutes, secs = divmod(round(seconds, digits), 60)
    text = f"{secs:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{secs:.0f}"
    if minutes:
        return f"{int(minutes)}min" + ("" if float(text) == 0 else f" {text}s")
    return text + "s"


def _rect(classes: str, scale: _Scale, start: float, end: float, y: float, fill: str,
          tooltip: str = "", *, critical: bool, width: float | None = None) -> str:
    x = scale.x(start)
    w = max(scale.x(end) - x, 0.0) if width is None else width
    stroke = ' stroke="#000000" stroke-width="2"' if critical else ""
    title = f"<title>{_text(tooltip)}</title>" if tooltip else ""
    return (f'<rect class="{classes}" x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" '
            f'height="{BAR_HEIGHT}" fill="{fill}"{stroke} data-start="{_num_s(start)}" '
            f'data-end="{_num_s(end)}">{title}</rect>')


def _num_s(seconds: float) -> str:
    return f"{seconds:.6f}".rstrip("0").rstrip(".") or "0"


def _summary(run: Run, origin: float, now: float) -> str:
    """The unit's tooltip: status, waited, ran, reason."""
    parts = [f"{run.unit}: {run.status.label}"]
    if run.since is not None:
        waited_until = run.started if run.started is not None else (run.ended or now)
        parts.append(f"waited {duration(waited_until - run.since)}")
    if run.started is not None:
        parts.append(f"ran {duration((run.ended or now) - run.started)}")
    if run.start is not None and (met := run.start.waited_for) is not None:
        parts.append(f"waited for {met.depends_on} ({met.requires.label})")
    if run.reason:
        parts.append(run.reason)
    return "; ".join(parts)


def _unit_row(run: Run, row: int, scale: _Scale, origin: float, now: float,
              critical: bool) -> str:
    y_mid = TITLE_HEIGHT + AXIS_HEIGHT + row * ROW_HEIGHT + ROW_HEIGHT / 2
    y = y_mid - BAR_HEIGHT / 2
    classes = "unit critical" if critical else "unit"
    label = run.unit if len(run.unit) <= LABEL_CHARS else run.unit[:LABEL_CHARS - 1] + "…"
    weight = ' font-weight="bold"' if critical else ""
    parts = [
        f'<g class="{classes}" data-unit="{_text(run.unit)}" data-status="{run.status.value}">',
        f"<title>{_text(_summary(run, origin, now))}</title>",
        f'<text class="label" x="{MARGIN}" y="{_num(y_mid + 4)}"{weight}>{_text(label)}</text>',
    ]
    if run.since is None:
        parts.append(f'<text class="not-registered" x="{_num(scale.left + 4)}" '
                     f'y="{_num(y_mid + 4)}" fill="#666666" font-style="italic">'
                     "not registered (only a dependency)</text>")
    else:
        since = run.since - origin
        if run.started is not None:
            started = run.started - origin
            end = (run.ended if run.ended is not None else now) - origin
            outcome = "still-running" if run.ended is None else run.status.value
            if outcome not in COLOURS:
                outcome = "completed"
            reason = f"{run.unit}: {run.status.label}: {run.reason}" if run.reason else ""
            for past in run.earlier:
                kind = past.outcome.value if past.outcome.value in COLOURS else "completed"
                tip = f"{run.unit}: an earlier run, {past.outcome.label}"
                parts.append(_rect(
                    f"bar running {kind} earlier", scale, past.started - origin,
                    past.ended - origin, y, COLOURS[kind],
                    f"{tip}: {past.reason}" if past.reason else tip, critical=False))
            parts.append(_rect("bar waiting", scale, since, started, y, COLOURS["waiting"],
                               critical=critical))
            parts.append(_rect(f"bar running {outcome}", scale, started, end, y,
                               COLOURS[outcome], reason, critical=critical))
        elif run.ended is not None:
            ended = run.ended - origin
            outcome = run.status.value if run.status.value in COLOURS else "completed"
            reason = f"{run.unit}: {run.status.label}" + (f": {run.reason}" if run.reason else "")
            parts.append(_rect("bar waiting", scale, since, ended, y, COLOURS["waiting"],
                               critical=critical))
            parts.append(_rect(f"bar outcome {outcome}", scale, ended, ended, y,
                               COLOURS[outcome], reason, critical=critical,
                               width=OUTCOME_MARK))
        else:  # still waiting
            parts.append(_rect("bar waiting", scale, since, now - origin, y, COLOURS["waiting"],
                               f"{run.unit}: still {run.status.label}", critical=critical))
    parts.append("</g>")
    return "".join(parts)


def _arrows(all_runs: Sequence[Run], rows: dict[str, int], scale: _Scale, origin: float,
            chain: set[tuple[str, str]]) -> list[str]:
    """A line from each requirement met (in the window) to the dependent's last start."""
    def mid(unit: str) -> float:
        return TITLE_HEIGHT + AXIS_HEIGHT + rows[unit] * ROW_HEIGHT + ROW_HEIGHT / 2

    lines = []
    for run in all_runs:
        if run.start is None:
            continue
        for met in run.start.requirements:
            if met.at is None:
                continue
            critical = (met.depends_on, run.unit) in chain
            classes = "dependency critical" if critical else "dependency"
            colour, width = ("#000000", 2) if critical else ("#555555", 1)
            lines.append(
                f'<line class="{classes}" data-from="{_text(met.depends_on)}" '
                f'data-to="{_text(run.unit)}" data-requires="{met.requires.value}" '
                f'x1="{_num(scale.x(met.at - origin))}" y1="{_num(mid(met.depends_on))}" '
                f'x2="{_num(scale.x(run.start.time - origin))}" y2="{_num(mid(run.unit))}" '
                f'stroke="{colour}" stroke-width="{width}" marker-end="url(#arrow)">'
                f"<title>{_text(run.unit)} needed {_text(met.depends_on)} "
                f"{met.requires.label}</title></line>")
    return lines


def _axis(scale: _Scale, bottom: float) -> list[str]:
    top = TITLE_HEIGHT + AXIS_HEIGHT - 6
    parts = ['<g class="axis" font-size="11" fill="#333333">',
             (f'<line x1="{_num(scale.left)}" y1="{top}" x2="{_num(scale.left + scale.width)}" '
             f'y2="{top}" stroke="#333333"/>')]
    count = round(scale.end / scale.step)
    for i in range(count + 1):
        seconds = i * scale.step
        x = _num(scale.x(seconds))
        parts.append(f'<line class="grid" x1="{x}" y1="{top}" x2="{x}" y2="{_num(bottom)}" '
                     'stroke="#EEEEEE"/>')
        parts.append(f'<text class="tick" x="{x}" y="{top - 5}" text-anchor="middle">'
                     f"{_text(tick_label(seconds, scale.step))}</text>")
    parts.append("</g>")
    return parts


def _legend(y: float) -> list[str]:
    parts = [f'<g class="legend" font-size="12" transform="translate({MARGIN},{_num(y)})">']
    x = 0
    for key, label in LEGEND:
        parts.append(f'<rect class="swatch {key}" x="{x}" y="0" width="14" height="14" '
                     f'fill="{COLOURS[key]}" stroke="#999999"/>'
                     f'<text x="{x + 19}" y="11">{label}</text>')
        x += 28 + 7 * len(label)
    parts.append(f'<line x1="{x}" y1="7" x2="{x + 26}" y2="7" stroke="#555555" '
                 f'marker-end="url(#arrow)"/><text x="{x + 32}" y="11">requirement met → '
                 "start</text>")
    x += 32 + 7 * len("requirement met -> start") + 14
    parts.append(f'<rect x="{x}" y="0" width="14" height="14" fill="#FFFFFF" stroke="#000000" '
                 f'stroke-width="2"/><text x="{x + 19}" y="11" font-weight="bold">'
                 "critical chain</text>")
    parts.append("</g>")
    return parts


def render_svg(events: Sequence[Event], *, title: str = "unitsync timeline",
               now: float | None = None, width: int = 1000, chain_of: str | None = None) -> str:
    """The chart of ``events`` as a standalone SVG document (``width`` pixels wide; the
    height grows with the units). ``now`` (default: the last event's time) ends the bars of
    what is still running or waiting. ``chain_of``: the unit whose critical chain is
    highlighted (default: the one whose outcome came last, as ``critical-chain``)."""
    ordered = sorted(events, key=lambda e: e.seq)
    all_runs = runs(ordered)
    origin = ordered[0].time if ordered else 0.0
    last = ordered[-1].time if ordered else 0.0
    now = max(last, now if now is not None else last)
    scale = _scale(max(now - origin, 0.001), LABEL_WIDTH + MARGIN,
                   width - LABEL_WIDTH - 3 * MARGIN)
    chain = critical_chain(ordered, chain_of) if ordered else []
    chain_units = {link.unit for link in chain}
    chain_edges = {(below.unit, above.unit) for above, below in itertools.pairwise(chain)}
    rows = {run.unit: i for i, run in enumerate(all_runs)}
    plot_bottom = TITLE_HEIGHT + AXIS_HEIGHT + max(len(all_runs), 1) * ROW_HEIGHT
    height = plot_bottom + LEGEND_HEIGHT
    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="unitsync-gantt" width="{width}" '
        f'height="{_num(height)}" viewBox="0 0 {width} {_num(height)}" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">'),
        f"<title>{_text(title)}</title>",
        ('<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="6" '
        'markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" '
        'fill="#555555"/></marker></defs>'),
        f'<rect class="background" width="{width}" height="{_num(height)}" fill="#FFFFFF"/>',
        (f'<text class="title" x="{MARGIN}" y="22" font-size="16" font-weight="bold">'
        f"{_text(title)}</text>"),
        *_axis(scale, plot_bottom),
    ]
    if not all_runs:
        parts.append(f'<text x="{MARGIN}" y="{TITLE_HEIGHT + AXIS_HEIGHT + 16}">No events</text>')
    parts.append('<g class="units">')
    parts += [_unit_row(run, i, scale, origin, now, run.unit in chain_units)
              for i, run in enumerate(all_runs)]
    parts.append('</g><g class="dependencies">')
    parts += _arrows(all_runs, rows, scale, origin, chain_edges)
    parts.append("</g>")
    parts += _legend(plot_bottom + 16)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


_PAGE_STYLE = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.summary { margin: 0 0 12px; color: #555; }
svg.unitsync-gantt { max-width: 100%; height: auto; }
svg .unit:hover text.label { text-decoration: underline; }
svg text.title { display: none; }  /* the page's h1 says it */
"""


def render_html(events: Sequence[Event], *, title: str = "unitsync timeline",
                now: float | None = None, width: int = 1000, chain_of: str | None = None) -> str:
    """One self-contained HTML page: the title, a line saying what it shows, the SVG of
    :func:`render_svg` inline and its CSS; no script, no external resource."""
    ordered = sorted(events, key=lambda e: e.seq)
    if ordered:
        first, last = ordered[0].time, ordered[-1].time
        units = len({e.unit for e in ordered} | {e.depends_on for e in ordered if e.is_edge})
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first))
        summary = (f"{units} units, {len(ordered)} events (seq {ordered[0].seq}–"
                   f"{ordered[-1].seq}) over {duration(last - first)}, from {stamp} local time.")
    else:
        summary = "No events."
    svg = render_svg(ordered, title=title, now=now, width=width, chain_of=chain_of)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_text(title)}</title>\n<style>{_PAGE_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{_text(title)}</h1>\n<p class=\"summary\">{_text(summary)}</p>\n{svg}"
        "</body>\n</html>\n"
    )


"""The history commands: ``timeline``, ``blame``, ``critical-chain``; and the reads that
``status`` (its History section) and ``why`` (how long each unit has been as it is) share.

Each reads the coordinator's kept history (``serve --history N``) in pages and lays it out with
``_history_text`` (text, JSON) or ``_gantt`` (SVG, HTML: imported only by the command that
draws, so no other command pays for it).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from cyclopts import Parameter

from coordinator import validate_name

from ._connect import ERROR, OK, USAGE, CommandError, call, say
from ._duration import parse_duration
from ._options import Common

if TYPE_CHECKING:
    from collections.abc import Sequence

    from coordinator import Event
    from coordinator.rpc import AsyncioClient

__all__ = ["blame", "critical_chain", "last_changes", "read_history", "timeline"]


@dataclass(frozen=True)
class Since:
    """``--since``: a seq (``1234``: the events after it) or a duration (``10m``: the events
    of the last ten minutes)."""

    seq: int = 0
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> Since:
        if text is None:
            return cls()
        if text.strip().isdigit():
            return cls(seq=int(text))
        try:
            return cls(seconds=parse_duration(text))
        except ValueError:
            raise CommandError(
                f"invalid --since {text!r}: a seq (e.g. 1234) or a duration (e.g. 10m, 1h30m)",
                USAGE,
            ) from None



async def read_history(
    core: AsyncioClient, since: Since = Since(), *, unit: str = ""
) -> tuple[list[Event], int]:
    """The kept events after ``since`` (of ``unit`` only, if given), every page of them, and
    the seq of the last event published (where a watch goes on from)."""
    events: list[Event] = []
    after = since.seq
    while True:
        page = await core.history(after=after, unit=unit)  # pages as large as the server gives
        if after == since.seq > 0 and page.oldest > after + 1:
            say(f"events {after + 1} to {page.oldest - 1} are no longer kept (serve --history)")
        events.extend(page.events)
        if not page.more or not page.events:
            break
        after = page.events[-1].seq
    if since.seconds is not None:
        cutoff = time.time() - since.seconds
        events = [event for event in events if event.time >= cutoff]
    return events, page.last


async def last_changes(core: AsyncioClient, units: Sequence[str]) -> dict[str, float]:
    """When each of ``units`` last changed status (its newest status change kept), asked
    together; units without one are left out."""

    async def last(unit: str) -> tuple[str, float | None]:
        page = await core.history(unit=unit, newest=True, limit=100)
        changes = [event.time for event in page.events if not event.is_edge]
        return unit, changes[-1] if changes else None

    found = await asyncio.gather(*(last(unit) for unit in units))
    return {unit: moment for unit, moment in found if moment is not None}


def timeline(
    *,
    output: Annotated[
        Literal["text", "json", "svg", "html"], Parameter(name=["--output", "-o"])
    ] = "text",
    watch: bool = False,
    since: str | None = None,
    common: Common = Common(),
) -> int:
    """Show every kept event in time order: one row each with its elapsed time since the
    first, and for a start what the unit waited for (`pending -> started (waited 2.1s for
    git)`).

    `-o svg` / `-o html` draw it as a Gantt chart (one row per unit: waiting, running and the
    outcome in distinct colours, dependency arrows, the critical chain outlined):
    `unitsync timeline -o html > run.html`.

    Parameters
    ----------
    output
        text (`TIME ELAPSED UNIT EVENT`), json (a list of objects; with --watch one object per
        line), svg, or html (one self-contained page).
    watch
        Then keep printing new events as they happen (pushed, not polled) until SIGINT/SIGTERM
        (exit 0); text and json only.
    since
        Only the events after this seq (e.g. 1234), or of the last DURATION (e.g. 10m, 1h).
    """
    window = Since.parse(since)
    if watch and output in ("svg", "html"):
        raise CommandError("--watch prints rows as they come: use -o text or -o json", USAGE)

    async def body(core: AsyncioClient) -> int:
        events, last = await read_history(core, window)
        if watch:
            return await _follow(core, events, last, json=output == "json")
        if output in ("svg", "html"):
            from . import _gantt

            render = _gantt.render_svg if output == "svg" else _gantt.render_html
            print(render(events, now=time.time()))
        else:
            from ._history_text import timeline_json, timeline_text

            print(timeline_json(events) if output == "json" else timeline_text(events))
        return OK

    return call(common, body)


async def _follow(core: AsyncioClient, events: list[Event], last: int, *, json: bool) -> int:
    """``timeline --watch``: the rows so far, then each new one as it is pushed."""
    from coordinator import Analysis

    from ._history_text import timeline_header, timeline_line, timeline_object

    watch = await core.watch(after=last)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, watch.close)
    analysis = Analysis()
    width = max([12, *(len(event.unit) for event in events)])
    if not json:
        print(timeline_header(width))
    say(f"watching {core.path}")
    try:
        for event in events:
            row = analysis.add(event)
            print(timeline_object(row) if json else timeline_line(row, width))
        sys.stdout.flush()
        async for event in watch:  # ends with Lagged (exit 1) or CoordinatorClosed (69)
            row = analysis.add(event)
            print(timeline_object(row) if json else timeline_line(row, width), flush=True)
    except BrokenPipeError:  # `unitsync timeline --watch | head`: the reader is done
        pass
    return OK


def blame(
    *,
    output: Annotated[Literal["text", "json"], Parameter(name=["--output", "-o"])] = "text",
    since: str | None = None,
    common: Common = Common(),
) -> int:
    """Show each unit with how long it ran (started to its outcome), how long it waited to
    start and the total, slowest first, as `systemd-analyze blame`. A unit still running or
    waiting is measured up to now (`still running`).

    Parameters
    ----------
    output
        text or json.
    since
        Only the events after this seq (e.g. 1234), or of the last DURATION (e.g. 10m, 1h).
    """
    window = Since.parse(since)

    async def body(core: AsyncioClient) -> None:
        from ._history_text import blame_json, blame_text

        events, _ = await read_history(core, window)
        render = blame_json if output == "json" else blame_text
        print(render(events, now=time.time()))

    return call(common, body)


def critical_chain(
    unit: str | None = None,
    /,
    *,
    output: Annotated[Literal["text", "json"], Parameter(name=["--output", "-o"])] = "text",
    since: str | None = None,
    common: Common = Common(),
) -> int:
    """Show the chain of waits that decided when UNIT could run, as `systemd-analyze
    critical-chain`: UNIT, the dependency it waited for last, the one that waited for in
    turn, and so on; `@` when each got there, `+` how long it ran to get there.

    Exits 1 if UNIT has no event in the kept history.

    Parameters
    ----------
    unit
        Default: the unit whose outcome came last.
    output
        text or json.
    since
        Only the events after this seq (e.g. 1234), or of the last DURATION (e.g. 10m, 1h).
    """
    if unit is not None:
        validate_name(unit)
    window = Since.parse(since)

    async def body(core: AsyncioClient) -> None:
        from ._history_text import chain_json, chain_text

        events, _ = await read_history(core, window)
        try:
            print(chain_json(events, unit) if output == "json" else chain_text(events, unit))
        except ValueError:
            raise CommandError(f'unit "{unit}" has no event in the kept history', ERROR) from None

    return call(common, body)

"""The read-only commands: ``status``, ``list``, ``graph``, ``watch``."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated, Literal

from cyclopts import Parameter

from coordinator import validate_name

from ._connect import OK, USAGE, CommandError, say
from ._connect import call
from ._format import event_json, event_text, graph_json, list_json, list_table, status_json
from ._format import status_table
from ._options import Common

if TYPE_CHECKING:
    from coordinator import Event
    from coordinator.rpc import AsyncioClient

__all__ = ["graph", "list_", "status", "watch"]


def status(
    unit: str,
    /,
    *,
    output: Annotated[Literal["table", "json"], Parameter(name=["--output", "-o"])] = "table",
    common: Common = Common(),
) -> int:
    """Show UNIT: its status, whether it is ready, each dependency with its required and
    current status, and its History (coder's layout: `TIME ELAPSED EVENT`, one row per kept
    event of the unit: registered, each edge added, each status change with its reason). An
    unregistered unit shows `not registered` (`""` in JSON).

    Parameters
    ----------
    unit
        Any unit name.
    output
        table (coder's layout) or json (coder's keys plus reason, blocked_by and history: one
        object per event, as `timeline -o json`).
    """
    validate_name(unit)

    async def body(core: AsyncioClient) -> None:
        from ._history import read_history
        from ._history_text import history_objects, history_text

        info = await core.info(unit)
        events: list[Event] = []
        if core.revision >= 3:  # a coordinator from before the history has none to give
            # the unit's events, and its dependencies' (what each start waited for)
            names = (unit, *(d.depends_on for d in info.dependencies))
            for found, _ in await asyncio.gather(*(read_history(core, unit=n) for n in names)):
                events.extend(found)
            events.sort(key=lambda event: event.seq)
        if output == "json":
            print(status_json(info, history_objects(events, unit)))
        else:
            print(status_table(info) + "\n\n" + history_text(events, unit))

    return call(common, body)


def list_(
    *,
    output: Annotated[Literal["table", "json"], Parameter(name=["--output", "-o"])] = "table",
    common: Common = Common(),
) -> int:
    """List the registered units, sorted by name, with their status and readiness.

    Parameters
    ----------
    output
        table (`UNIT STATUS READY`) or json (`[{"unit_name", "status", "is_ready"}]`).
    """

    async def body(core: AsyncioClient) -> None:
        units = await core.list()
        print(list_json(units) if output == "json" else list_table(units))

    return call(common, body)


def graph(
    *,
    output: Annotated[Literal["dot", "json"], Parameter(name=["--output", "-o"])] = "dot",
    common: Common = Common(),
) -> int:
    """Print the dependency graph: Graphviz DOT (`unitsync graph | dot -Tsvg > g.svg`) with
    units labelled by status and edges by requirement, or JSON units and edges.

    Parameters
    ----------
    output
        dot or json (`{"units": [...], "edges": [...]}`).
    """

    async def body(core: AsyncioClient) -> None:
        if output == "json":
            print(graph_json(await core.list()))
        else:
            print((await core.graph()).rstrip("\n"))

    return call(common, body)


def watch(
    *,
    output: Annotated[Literal["text", "json"], Parameter(name=["--output", "-o"])] = "text",
    since: int | None = None,
    common: Common = Common(),
) -> int:
    """Print every change (status changes, edges added) as it happens, until SIGINT/SIGTERM
    (exit 0).

    Prints `unitsync: watching PATH` on stderr once subscribed. Exits 1 if this watcher falls
    too far behind and the coordinator cuts it off (or --since asks for events no longer
    kept), 69 if the coordinator goes away (shuts down, or the connection is lost).

    Parameters
    ----------
    output
        text (`TIME UNIT: OLD -> NEW (reason)`, `TIME UNIT: depends on DEP (REQUIREMENT)`) or
        json (one object per line: seq, time, unit_name, old_status, new_status, reason,
        depends_on, required_status).
    since
        First print the kept events after this seq (0: all of them), then go on live, with
        no gap and no duplicate: a watcher that stopped after seq N resumes with --since N.
    """
    render = event_json if output == "json" else event_text
    if since is not None and since < 0:
        raise CommandError(f"--since must be a seq, 0 or more, not {since}", USAGE)

    async def body(core: AsyncioClient) -> int:
        # a lost connection ends it too (CoordinatorClosed)
        watch = await core.watch(after=since)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, watch.close)
        say(f"watching {core.path}")
        async for event in watch:  # ends with Lagged (exit 1) or CoordinatorClosed (69)
            try:
                print(render(event), flush=True)
            except BrokenPipeError:  # `unitsync watch | head`: the reader is done
                break
        return OK

    return call(common, body)

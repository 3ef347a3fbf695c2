"""What ``unitsync up [-f FILE] [UNIT...]`` does (the command, with its options' help, is in
``_up.py``; this module does not import cyclopts: ``_main.py`` runs a plain ``up`` line
through :func:`plain_arguments` and :func:`run_up` without it).

Uses the coordinator on the socket, or runs one in this process (``_inprocess``); applies the
file (``apply``, one step); then, for every unit with a ``run``, does what ``unitsync run``
does — wait until ready, hold the unit, launch the command (detached: its own process group,
its output behind its name, SIGTERM if ``up`` dies), readiness probes and limits — with
``run``'s own code (``hold_when_ready``: ``start_when_ready`` in fewer calls, the hold of a
unit with dependencies parked in the coordinator until it is ready; ``launch``,
``supervise``), concurrently, on one connection, the units without dependencies first. Units
without ``run`` are waited for (another process reports them).

Stopping (SIGINT/SIGTERM, or ``--abort-on-failure`` after a failure): units not started yet
are left as they are; running commands are stopped in reverse dependency order — those nothing
running depends on first — each layer SIGTERM, then SIGKILL after ``--grace``; a second
signal kills every command at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coordinator import (
    CoordinatorUnreachable,
    DependencyFailed,
    Status,
    UnitsyncError,
    socket_path,
    validate_name,
)

from ._connect import ERROR, OK, USAGE, CommandError, say
from ._duration import format_duration, parse_duration
from ._supervise import Launched, Limits, launch, start_watchdog, supervise
from ._when_ready import hold_when_ready
from ._workspace import load_workspace

if TYPE_CHECKING:
    from coordinator.rpc import AsyncioClient

    from ._display import Display
    from ._workspace import Workspace
    from ._workspace_units import UnitSpec

__all__ = ["DeepestFirst", "Up", "UpArgs", "chain_heights", "plain_arguments", "run_up"]


@dataclass(frozen=True)
class UpArgs:
    """What ``up``'s command line asks for (``up`` in ``_up.py`` gives the options' help)."""

    units: tuple[str, ...] = ()
    file: Path | None = None
    log_dir: Path | None = None
    abort_on_failure: bool = False
    grace: float = 10.0
    socket: Path | None = None
    no_autostart: bool = False  #: no coordinator on the socket: exit 69, run none in-process


def run_up(args: UpArgs) -> int:
    """Run the workspace file (see ``up``); the exit code."""
    for unit in args.units:
        validate_name(unit)
    workspace = load_workspace(args.file)
    unknown = [u for u in args.units if u not in workspace.units]
    if unknown:
        raise CommandError(f"not in {workspace.path}: {', '.join(unknown)}", USAGE)
    selected = _needed(workspace, args.units or tuple(workspace.units))
    return _serve_and_run(args.socket, workspace, selected, args.log_dir, args.abort_on_failure,
                          args.grace, in_process=not args.no_autostart)


#: The options :func:`plain_arguments` reads: the field of :class:`UpArgs` each sets, and what
#: makes its value from the text (None: a flag).
_PLAIN_OPTIONS: dict[str, tuple[str, Callable[[str], object] | None]] = {
    "-f": ("file", Path), "--file": ("file", Path), "--log-dir": ("log_dir", Path),
    "--grace": ("grace", parse_duration), "--socket": ("socket", Path),
    "--abort-on-failure": ("abort_on_failure", None),
    "--no-autostart": ("no_autostart", None),
}


def plain_arguments(tokens: Sequence[str]) -> UpArgs | None:
    """``up``'s arguments (after ``up``) read without the parser library, when they are in the
    plain forms: unit names, ``-f FILE``, ``--file[=]FILE``, ``--log-dir[=]DIR``,
    ``--grace[=]D``, ``--socket[=]PATH``, ``--abort-on-failure``, ``--no-autostart``, ``--``,
    each option at most once. Anything else — ``--help``, an unknown option, a bad duration, a
    value that starts with ``-`` given apart — is None: cyclopts reads the line (and says what
    is wrong with it). Saves
    ``up`` the ~30 ms of importing cyclopts and a few ms of its parse (stress/README.md);
    tests/test_up_arguments.py holds both readings equal."""
    values: dict[str, object] = {}
    units: list[str] = []
    rest = iter(tokens)
    for token in rest:
        if token == "--":
            units.extend(rest)
            break
        if not token.startswith("-"):
            units.append(token)
            continue
        option, equals, value = token.partition("=")
        field, make = _PLAIN_OPTIONS.get(option, ("", None))
        if not field or field in values:
            return None
        if make is None:
            if equals:
                return None
            values[field] = True
            continue
        if not equals:
            value = next(rest, None)  # type: ignore[assignment]
            if value is None or value.startswith("-"):
                return None
        try:
            values[field] = make(value)
        except ValueError:
            return None
    return UpArgs(units=tuple(units), **values)  # type: ignore[arg-type]


def _needed(workspace: Workspace, wanted: Sequence[str]) -> list[str]:
    """``wanted`` and every unit they need, transitively, in file order."""
    needs: dict[str, list[str]] = {}
    for edge in workspace.edges():
        needs.setdefault(edge.unit, []).append(edge.depends_on)
    found: set[str] = set()
    todo = list(wanted)
    while todo:
        unit = todo.pop()
        if unit not in found:
            found.add(unit)
            todo.extend(needs.get(unit, ()))
    return [u for u in workspace.units if u in found]


def _serve_and_run(
    socket: Path | None, workspace: Workspace, selected: list[str], log_dir: Path | None,
    abort_on_failure: bool, grace: float, *, in_process: bool,
) -> int:
    """Connect — starting a coordinator in this process if none answers, when ``in_process``
    (not ``--no-autostart``; the environment's UNITSYNC_AUTOSTART=0 is about coordinators left
    running in the background, and this one stops with ``up``) — and run."""
    import logging

    from coordinator.rpc import prepare_socket, run_client

    from ._autostart import start_lock
    from ._inprocess import InProcessCoordinator

    logging.getLogger("asyncio").setLevel(logging.ERROR)
    path = socket_path(socket)

    began = False

    async def body(core: AsyncioClient) -> int:
        nonlocal began
        began = True
        return await Up(core, workspace, selected, log_dir, abort_on_failure, grace).run()

    try:
        return run_client(path, body)
    except CoordinatorUnreachable:
        if began or not in_process:  # lost while running: not a missing coordinator
            raise
    local = InProcessCoordinator(path)
    raced = None
    try:
        # the lock of a first call's autostart (_autostart.py): one of them brings a
        # coordinator up, the other finds it answering
        with start_lock(path):
            prepare_socket(path)
            local.start()
    except* UnitsyncError as group:  # AddressInUse: another process serves there now
        raced = group.exceptions[0]
    if raced is not None:
        say(f"using the coordinator that started meanwhile on {path} ({raced})")
        return run_client(path, body)
    say(f"no coordinator on {path}: running one in this process (it stops with up)")
    try:
        return run_client(path, body)
    finally:
        local.stop()


@dataclass
class _Outcome:
    """How a unit ended, for the summary."""

    status: str = "not started"
    reason: str = ""
    waited: float | None = None
    ran: float | None = None


class Up:
    """One run of the workspace: the units' tasks, the running commands, the stop."""

    def __init__(
        self, core: AsyncioClient, workspace: Workspace, selected: list[str],
        log_dir: Path | None, abort_on_failure: bool, grace: float,
    ) -> None:
        from ._display import Display

        self.core, self.workspace, self.selected = core, workspace, selected
        self.log_dir = log_dir
        self.abort_on_failure, self.grace = abort_on_failure, grace
        self.display: Display = Display(selected, log_dir=log_dir)
        self.running: dict[str, Launched] = {}
        self.outcomes = {unit: _Outcome() for unit in selected}
        self.began = time.monotonic()
        self._stopping: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Task[None]] = {}
        self._signals = 0
        self._dependencies: set[str] = set()  #: the units the file gives dependencies
        self._height: dict[str, int] = {}  #: how long a chain needs each unit (chain_heights)
        self._launches = DeepestFirst()
        #: The units at the head of the longest chains whose first hold is not answered yet,
        #: and the event set once none is (``run`` sends every other call after that).
        self._unanswered: set[str] = set()
        self._deepest_answered = asyncio.Event()

    async def run(self) -> int:
        graph = {u: r for u, r in self.workspace.requirements() if u in self.selected}
        self._dependencies = {u for u, requirements in graph.items() if requirements}
        self._height = chain_heights(self.workspace, self.selected)
        before = 0
        if self.log_dir is not None:  # where the timeline starts
            before = (await self.core.history(newest=True, limit=1)).last
        loop = asyncio.get_running_loop()
        _watch_children_with_pidfds(loop)
        if any(self.workspace.units[u].run is not None for u in self.selected):
            start_watchdog()  # here, not in the first launch
        await self.core.apply(graph)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._signalled, signum)
        real_stderr = sys.stderr
        if self.display.tty:  # run's messages (say) go above the status block
            sys.stderr = _Lines(self.display)  # type: ignore[assignment]
        ticker = asyncio.ensure_future(self._tick()) if self.display.tty else None
        try:
            # the units that can start at once first: their holds go out (and are answered)
            # before the calls that park the others; the longest chains' first
            first = sorted((u for u in self.selected
                            if u not in self._dependencies and self.workspace.units[u].run is not None),
                           key=lambda u: -self._height[u])
            starting = set(first)
            rest = [u for u in self.selected if u not in starting]
            # those at the head of the longest chains alone: a small batch the coordinator
            # answers in one round trip, so that the critical path starts before it takes the
            # other calls (answered together, dozens of holds came back 5-9 ms later)
            deepest = [u for u in first if self._height[u] == self._height[first[0]]]
            self._unanswered = set(deepest)
            tasks = [asyncio.ensure_future(self._unit(u)) for u in deepest]
            for unit, task in zip(deepest, tasks):  # also if it ends before its hold (stopping)
                task.add_done_callback(lambda _, unit=unit: self._answered(unit))
            if deepest:
                await self._deepest_answered.wait()
            if self._stopping is None:
                tasks += [asyncio.ensure_future(self._unit(u)) for u in first[len(deepest):]]
            # the others' calls (a parked hold and an info each) in slices, a turn of the loop
            # between them: the sources' answers and launches come in between instead of
            # after all of them
            for at in range(0, len(rest), PARK_SLICE):
                await asyncio.sleep(0)
                if self._stopping is not None:  # stopping: the rest stay "not started"
                    break
                tasks += [asyncio.ensure_future(self._unit(u)) for u in rest[at:at + PARK_SLICE]]
            await asyncio.gather(*tasks)
            if self._stopping is not None:
                await self._stopping
        finally:
            if ticker is not None:
                ticker.cancel()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            self.display.close()
            sys.stderr = real_stderr
        if self.log_dir is not None:
            with contextlib.suppress(UnitsyncError):  # a picture is not worth failing the run
                await self._draw(before)
        return self._summary()

    async def _draw(self, before: int) -> None:
        """``--log-dir``: the run's timeline as a page, ``DIR/timeline.html`` (the history of
        an in-process coordinator goes with it)."""
        from ._gantt import render_html
        from ._history import Since, read_history

        events, _ = await read_history(self.core, Since(seq=before))
        page = self.log_dir / "timeline.html"  # type: ignore[operator]
        page.write_text(render_html(events, title="unitsync up", now=time.time()))

    async def _tick(self) -> None:
        """On a terminal: the status block's elapsed times move on, once a second."""
        while True:
            await asyncio.sleep(1.0)
            self.display.refresh()

    # --- one unit -------------------------------------------------------------------------

    async def _unit(self, unit: str) -> None:
        spec = self.workspace.units[unit]
        task = asyncio.current_task()
        assert task is not None
        self._waiting[unit] = task
        try:
            if spec.run is None:
                await self._reported(unit)
            else:
                await self._run(spec)
        except asyncio.CancelledError:  # stopped before it started
            self.display.state(unit, "stopped", "not started",
                               announce=f"{unit} not started (stopping)")
        except UnitsyncError as error:  # the coordinator refused or went away: this unit only
            self._ended(unit, "error", str(error))
        finally:
            self._waiting.pop(unit, None)

    async def _reported(self, unit: str) -> None:
        """A unit without ``run``: another process reports it; wait for its outcome."""
        self.display.state(unit, "waiting", "for another process to report it")
        try:
            await self.core.reached(unit, Status.FINISHED)
        except DependencyFailed as failed:
            self._ended(unit, "blocked", failed.skip_reason)
            return
        info = await self.core.info(unit)
        self._ended(unit, info.status.value, info.reason)

    async def _run(self, spec: UnitSpec) -> None:
        unit, core = spec.name, self.core
        outcome = self.outcomes[unit]
        limits = Limits(
            run_timeout=spec.run_timeout, kill_after=spec.kill_after, probes=spec.ready.probes,
            ready_interval=spec.ready.interval, ready_timeout=spec.ready.timeout,
        )

        def waiting(unmet: Sequence[str]) -> None:
            self.display.state(unit, "waiting", f"for {', '.join(unmet)}",
                               announce=f"{unit} waiting for {', '.join(unmet)}")

        async def hold() -> int:
            try:
                return await core.hold(unit)
            finally:
                self._answered(unit)

        try:
            lease = await hold_when_ready(
                core, unit, hold, spec.timeout, waiting=waiting,
                taken=lambda: core.hold(unit, resume=True), dependencies=unit in self._dependencies,
                begin_when_ready=lambda: core.hold(unit, wait=True),
            )
        except DependencyFailed as failed:  # hold_when_ready marked it skipped
            self._ended(unit, "skipped", failed.skip_reason)
            return
        except CommandError as error:  # its timeout
            with contextlib.suppress(UnitsyncError):
                await core.fail(unit, str(error))
            self._ended(unit, "failed", str(error))
            return
        try:
            await self._launches.turn(self._height[unit])
        except asyncio.CancelledError:  # stopping: held, not launched
            core.lease_drop(lease)
            raise
        outcome.waited = time.monotonic() - self.began
        started = time.monotonic()
        command = ("sh", "-c", spec.run) if isinstance(spec.run, str) else tuple(spec.run or ())
        env = {**os.environ, **spec.env} if spec.env else None
        try:
            launched = await launch(command, limits, sinks=self.display.sinks(unit),
                                    cwd=str(spec.cwd) if spec.cwd else None, env=env)
        except OSError as exc:
            reason = f"cannot run {command[0]!r}: {exc.strerror or exc}"
            await core.lease_fail(lease, reason)
            self._ended(unit, "failed", reason)
            return
        self.running[unit] = launched
        self.display.state(unit, "running", announce=f"{unit} started")
        try:
            code = await supervise(core, unit, lease, launched, limits, forward_signals=False)
        finally:
            self.running.pop(unit, None)
        outcome.ran = time.monotonic() - started
        if launched.recorded is not None:  # on the lease, answered: no need to ask
            status, reason = launched.recorded
        else:
            info = await core.info(unit)
            status, reason = info.status.value, info.reason
        if code and status == "completed":  # a service that ended badly after it was ready
            status, reason = "failed", f"exit code {code} after it was ready"
        self._ended(unit, status, reason)

    def _answered(self, unit: str) -> None:
        """``unit``'s first hold is answered (or refused, or its task ended before it): once
        every one of the deepest is, ``run`` sends the other calls."""
        unanswered = self._unanswered
        if unit in unanswered:
            unanswered.discard(unit)
            if not unanswered:
                self._deepest_answered.set()

    def _ended(self, unit: str, status: str, reason: str) -> None:
        outcome = self.outcomes[unit]
        outcome.status, outcome.reason = status, reason
        text = f"{unit} {status}" + (f": {reason}" if reason else "")
        if outcome.ran is not None:
            text += f" (ran {format_duration(round(outcome.ran, 1))})"
        if status == "skipped" and outcome.ran is None:
            text = ""  # hold_when_ready said so already, in run's words
        self.display.state(unit, status, reason, announce=text, took=outcome.ran)
        if status != "completed" and self.abort_on_failure and self._stopping is None:
            self.display.say(f"{unit} {status}: stopping everything (--abort-on-failure)")
            self._stopping = asyncio.ensure_future(self.stop())

    # --- stopping -------------------------------------------------------------------------

    def _signalled(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            self.display.say(f"{signal.Signals(signum).name} again: killing every command")
            for launched in list(self.running.values()):
                launched.signal(signal.SIGKILL)
            return
        self.display.say(f"{signal.Signals(signum).name}: stopping (again to kill at once)")
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self.stop())

    async def stop(self) -> None:
        """Leave the units not started yet; stop the running commands, dependents first."""
        for unit, task in list(self._waiting.items()):
            if unit not in self.running and task is not asyncio.current_task():
                task.cancel()  # still waiting to start
        for layer in self._layers():
            alive = [self.running[u] for u in layer if u in self.running]
            if not alive:
                continue
            for launched in alive:
                launched.signal(signal.SIGTERM)
            waits = [asyncio.ensure_future(launched.child.wait()) for launched in alive]
            _, pending = await asyncio.wait(waits, timeout=self.grace or None)
            if pending:
                for launched in alive:
                    launched.signal(signal.SIGKILL)
                await asyncio.wait(pending)

    def _layers(self) -> list[list[str]]:
        """The selected units by height (:func:`chain_heights`): first those nothing depends on,
        then those only they depend on, and so on."""
        height = self._height
        layers: list[list[str]] = [[] for _ in range(max(height.values(), default=-1) + 1)]
        for unit in self.selected:
            layers[height[unit]].append(unit)
        return layers

    # --- the end --------------------------------------------------------------------------

    def _summary(self) -> int:
        """The table of outcomes; 0 if every unit completed, else 1 (naming the others)."""
        from ._format import _table

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}s"

        rows = []
        for unit in self.selected:
            o = self.outcomes[unit]
            outcome = o.status + (f": {o.reason}" if o.reason else "")
            rows.append((unit, outcome, seconds(o.waited), seconds(o.ran)))
        print(_table(("UNIT", "OUTCOME", "WAITED", "RAN"), rows), flush=True)
        bad = [u for u in self.selected if self.outcomes[u].status != "completed"]
        if bad:
            say(f"{len(bad)} of {len(self.selected)} units did not complete: {', '.join(bad)}")
            return ERROR
        return OK


def chain_heights(workspace: Workspace, selected: Sequence[str]) -> dict[str, int]:
    """Per unit of ``selected``, the longest chain of selected units that need it,
    transitively (0: nothing does)."""
    dependents: dict[str, set[str]] = {u: set() for u in selected}
    for edge in workspace.edges():
        if edge.unit in dependents and edge.depends_on in dependents:
            dependents[edge.depends_on].add(edge.unit)
    height: dict[str, int] = {}
    for unit in selected:  # iteratively: a long chain must not reach the recursion limit
        todo = [unit]
        while todo:
            top = todo[-1]
            if top in height:
                todo.pop()
                continue
            below = [d for d in dependents[top] if d not in height]
            if below:
                todo.extend(below)
            else:
                height[top] = 1 + max((height[d] for d in dependents[top]), default=-1)
                todo.pop()
    return height


#: How many units with dependencies ``up`` parks per turn of its loop at the start.
PARK_SLICE = 16


class DeepestFirst:
    """The order of launches: of the units whose holds were answered in the same turn of the
    loop — a completion that releases several at once, the units without dependencies at the
    start — the one with the longest chain of units needing it goes first (critical path
    first, as ninja schedules its builds): launches are made one at a time, ~1 ms each, and a
    unit launched last in a burst of twenty starts ~20 ms late. Chains are counted in units
    (the file says nothing of how long a command runs)."""

    def __init__(self) -> None:
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._count = 0

    async def turn(self, height: int) -> None:
        """Wait for this launch's turn: at the next turn of the loop, by ``height``, highest
        first (then in arrival order)."""
        loop = asyncio.get_running_loop()
        if not self._queue:
            loop.call_soon(self._release)
        turn: asyncio.Future[None] = loop.create_future()
        self._count += 1
        heapq.heappush(self._queue, (-height, self._count, turn))
        await turn

    def _release(self) -> None:
        """Wake the waiting launches in order (their tasks then run in that order)."""
        queue, self._queue = self._queue, []
        while queue:
            turn = heapq.heappop(queue)[2]
            if not turn.done():  # cancelled: stopping
                turn.set_result(None)


def _watch_children_with_pidfds(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio's own subprocesses in ``up`` — the command probes (``ready = { cmd = ... }``) —
    learn of their exits from pidfds on the event loop: Python 3.11's default child watcher
    starts a thread per child to wait for it (~0.45 ms of the loop's time per launch,
    stress/README.md "up"); 3.12 uses pidfds by itself. (The units' commands are not asyncio
    subprocesses: ``launch`` watches them through pidfds of its own.)"""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(loop)
        asyncio.set_child_watcher(watcher)


class _Lines:
    """``sys.stderr`` while the status block is on the terminal: each line written goes
    through the display, above the block."""

    def __init__(self, display: Display) -> None:
        self._display, self._partial = display, ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._display.line(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True

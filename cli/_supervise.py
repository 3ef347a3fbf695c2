"""What ``unitsync run`` does while CMD runs: signals, time limits, readiness, the hold, and
recording CMD's outcome — across restarts of the coordinator.

Without a probe, UNIT stays started (held by this process) until CMD ends, then completes on
exit 0 and fails otherwise. With probes (a service), UNIT completes when every probe has
passed, while CMD keeps running; CMD ending after that fails UNIT unless it exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from coordinator import CoordinatorClosed, UnitsyncError

from ._connect import across_restarts, say
from ._duration import format_duration
from ._probes import Copy, LogProbe, Probe, pass_through, poll_until_ready

if TYPE_CHECKING:
    from coordinator.rpc import AsyncioClient

__all__ = [
    "FORWARDED", "RECONNECT_SECONDS", "TIMED_OUT", "DetachedProcess", "Launched", "Limits",
    "Sinks", "Watchdog", "copy_output", "launch", "outcome", "start_watchdog", "supervise",
]

#: Signals passed on to CMD while it runs. CMD stays in our process group, so an interactive
#: CMD keeps its terminal.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: ``run``'s exit code when CMD was stopped by ``--run-timeout`` or ``--ready-timeout`` (as
#: GNU ``timeout`` does).
TIMED_OUT = 124

#: The default of ``--reconnect-timeout``: how long ``run`` tries to reach a coordinator that is
#: away when CMD ends, to record the outcome (a restarted coordinator restores the unit from its
#: journal, still started).
RECONNECT_SECONDS = 10.0


@dataclass(frozen=True)
class Limits:
    """``run``'s options for CMD itself (0: no limit)."""

    run_timeout: float = 0.0
    kill_after: float = 10.0
    probes: tuple[Probe, ...] = ()
    ready_interval: float = 0.5
    ready_timeout: float = 0.0
    reconnect_timeout: float | None = RECONNECT_SECONDS  # None: until the coordinator is back


def outcome(returncode: int) -> tuple[int, str]:
    """``run``'s exit code and the failure reason ("" for success) for CMD's return code
    (negative: killed by that signal, as asyncio reports it)."""
    if returncode == 0:
        return 0, ""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return 128 - returncode, f"killed by signal {name}"
    return returncode, f"exit code {returncode}"


@dataclass
class Launched:
    """CMD, running: its process, and when its output is read (a log probe, or ``up``'s
    sinks), the tasks copying that output on and the lines they saw. ``group``: CMD leads a
    process group of its own, and signals go to the whole group."""

    child: asyncio.subprocess.Process | DetachedProcess
    pumps: list[asyncio.Future[None]] = field(default_factory=list)
    lines: _LogLines | None = None
    group: bool = False
    #: What :func:`supervise` recorded on the lease when CMD ended: ("completed", "") or
    #: ("failed", reason), answered by the coordinator. None: recorded otherwise (by name,
    #: or completed when it became ready) or not at all.
    recorded: tuple[str, str] | None = None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to CMD (its group, if it has one); nothing if it is gone."""
        try:
            if self.group:
                os.killpg(self.child.pid, signum)
            else:
                self.child.send_signal(signum)
        except (ProcessLookupError, PermissionError):  # gone; its exit status is on its way
            pass


@dataclass(frozen=True)
class Sinks:
    """Where a detached CMD's output goes (``up``): each a binary file-like object with
    ``write`` and ``flush`` (a line prefixer, say)."""

    stdout: BinaryIO
    stderr: BinaryIO


async def launch(
    command: tuple[str, ...], limits: Limits, *, sinks: Sinks | None = None,
    cwd: str | None = None, env: dict[str, str] | None = None,
) -> Launched:
    """Start CMD. Without ``sinks`` (``run``): with our stdin, stdout and stderr, unless a log
    probe must read them: then they are pipes whose every byte is copied to ours as it comes,
    and whose lines go to the probes. With ``sinks`` (``up``): detached — stdin from
    /dev/null, output copied to the sinks, in a process group of its own (a Ctrl-C in the
    terminal is ``up``'s to hand out), and that group sent SIGTERM if this process dies
    (:func:`start_watchdog`). OSError if CMD cannot be run."""
    logs = [p for p in limits.probes if isinstance(p, LogProbe)]
    lines = _LogLines(logs) if logs else None
    if sinks is None and not logs:
        return Launched(await asyncio.create_subprocess_exec(*command, cwd=cwd, env=env))
    if sinks is not None and hasattr(os, "pidfd_open"):
        return _launch_detached(command, sinks, lines, cwd, env)
    options: dict[str, object] = {}
    if sinks is not None:  # no pidfds (Linux < 5.3): the kernel's parent death signal
        options = {"stdin": asyncio.subprocess.DEVNULL, "start_new_session": True,
                   "preexec_fn": _die_with_parent}
    child = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd,
        env=env, **options,  # type: ignore[arg-type]
    )
    out = sinks.stdout if sinks else sys.stdout.buffer
    err = sinks.stderr if sinks else sys.stderr.buffer
    on_line = lines.line if lines else None
    assert child.stdout is not None and child.stderr is not None
    pumps = [
        asyncio.ensure_future(pass_through(child.stdout, out, on_line)),
        asyncio.ensure_future(pass_through(child.stderr, err, on_line)),
    ]
    return Launched(child, pumps, lines, group=sinks is not None)


def _launch_detached(
    command: tuple[str, ...], sinks: Sinks, lines: _LogLines | None, cwd: str | None,
    env: dict[str, str] | None,
) -> Launched:
    """``launch`` for ``up``, without a coroutine step: a plain ``Popen`` (vfork + exec of CMD
    itself), the watchdog told its group, its exit learnt from a pidfd and its output copied
    by readers on the loop (no transport, no protocol, no waitpid thread)."""
    watchdog = start_watchdog()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, cwd=cwd, env=env,
            start_new_session=True,
        )
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    watchdog.watch(process.pid)
    on_line = lines.line if lines else None
    pumps = [copy_output(out_r, sinks.stdout, on_line), copy_output(err_r, sinks.stderr, on_line)]
    return Launched(DetachedProcess(process, watchdog), pumps, lines, group=True)


class DetachedProcess:
    """A command ``launch`` started for ``up``: what ``supervise`` uses of an
    :class:`asyncio.subprocess.Process` (``pid``, ``returncode``, ``wait()``,
    ``send_signal()``), its exit seen on the loop through a pidfd. Once it has exited, the
    ``watchdog`` strikes its group off, and only then is it reaped (its pid cannot be used
    again until then)."""

    def __init__(self, process: subprocess.Popen[bytes], watchdog: Watchdog) -> None:
        loop = asyncio.get_running_loop()
        self.pid = process.pid
        self._process = process
        self._exited: asyncio.Future[int] = loop.create_future()
        self._pidfd = os.pidfd_open(process.pid)
        loop.add_reader(self._pidfd, self._ended, loop, watchdog)

    def _ended(self, loop: asyncio.AbstractEventLoop, watchdog: Watchdog) -> None:
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        watchdog.forget(self.pid)
        self._exited.set_result(self._process.wait())

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        """Its return code once it has exited (negative: killed by that signal)."""
        return await asyncio.shield(self._exited)

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` unless it has exited (then its pid may be another's)."""
        if not self._exited.done():
            os.kill(self.pid, signum)


def copy_output(
    fd: int, sink: BinaryIO, on_line: Callable[[bytes], object] | None
) -> asyncio.Future[None]:
    """Copy the pipe ``fd`` to ``sink`` as :func:`pass_through` does, from a reader on the
    running loop (no stream, no task); closes ``fd`` at EOF. The future is done then."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    copy = Copy(sink, on_line)
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        try:
            if chunk:
                copy.feed(chunk)
                return
            copy.end()
        except Exception as exc:  # noqa: BLE001 - a bug: raised to whoever awaits the copy
            if not done.done():
                done.set_exception(exc)
        loop.remove_reader(fd)
        os.close(fd)
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    return done


#: What the watchdog runs (``sh``: a few hundred microseconds to start, no interpreter): it
#: waits for the end of its stdin, a pipe nothing is written to — the process that holds the
#: other end is gone, however it died —, then reads the list the process kept in the file on
#: its fd 3 (reopened, to read it from the start): ``+ PGID`` adds a process group, ``- PGID``
#: removes one (a last line without its newline, cut short, is not read), and sends SIGTERM
#: to each group left.
_WATCHDOG_SCRIPT = """\
read -r _
g=' '
while read -r o p; do
  case $o in
    +) g="$g$p " ;;
    -) case $g in *" $p "*) g="${g%% $p *} ${g#* $p }" ;; esac ;;
  esac
done < /proc/self/fd/3
for p in $g; do kill -s TERM -- "-$p" 2>/dev/null; done
"""


class Watchdog:
    """One ``sh`` per process that launches detached commands, in a session of its own (a
    Ctrl-C or a signal to our process group does not reach it). It holds the read end of a
    pipe whose write end only this process has (not inherited: Python's fds are
    close-on-exec), and a memory file (``memfd``) in which this process lists the commands'
    process groups. When this process dies — even by SIGKILL — the pipe ends and the watchdog
    sends SIGTERM to every group still listed: the command and its own children (``sh -c``'s
    ``sleep``), where the kernel's parent-death signal would reach the command only. A group
    is listed as soon as its command is spawned, and struck off when its leader has exited,
    before it is reaped, so that a pid used again is never signalled. (Its children still
    running then are not covered any more.)

    The list is a file, not the pipe, so that writing to it never wakes the watchdog: each
    write to a pipe it was blocked reading cost the event loop far more than the write
    itself (stress/README.md "up")."""

    def __init__(self) -> None:
        self._list = os.memfd_create("unitsync-watchdog")  # close-on-exec
        read_end, self._alive = os.pipe()
        try:
            self.pid = os.posix_spawn(
                "/bin/sh", ["sh", "-c", _WATCHDOG_SCRIPT], {},
                file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0),
                              (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                              (os.POSIX_SPAWN_DUP2, 1, 2),
                              (os.POSIX_SPAWN_DUP2, self._list, 3)],
                setsid=True,
            )
        finally:
            os.close(read_end)

    def watch(self, pgid: int) -> None:
        """List ``pgid``."""
        self._write(f"+ {pgid}\n")

    def forget(self, pgid: int) -> None:
        """Strike ``pgid`` off (before its leader is reaped)."""
        self._write(f"- {pgid}\n")

    def _write(self, line: str) -> None:
        data = line.encode()
        with contextlib.suppress(OSError):  # out of memory for the file: nothing better to do
            while data:
                data = data[os.write(self._list, data):]


_watchdog: Watchdog | None = None


def start_watchdog() -> Watchdog:
    """This process's :class:`Watchdog`, started on the first call (``up`` calls it early,
    while its apply is in flight, so that the first launch does not wait for it)."""
    global _watchdog
    if _watchdog is None:
        _watchdog = Watchdog()
    return _watchdog


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


class _LogLines:
    """The log probes of one CMD, and the moment each first matched."""

    def __init__(self, probes: list[LogProbe]) -> None:
        self.matched = {probe: asyncio.Event() for probe in probes}

    def line(self, line: bytes) -> None:
        for probe, event in self.matched.items():
            if not event.is_set() and probe.pattern.search(line):
                event.set()


@dataclass
class _Run:
    """One supervised CMD: what ``run`` knows about it as it goes."""

    core: AsyncioClient
    unit: str
    launched: Launched
    limits: Limits
    lease: int | None  #: the hold on the current connection; None while there is none
    ready: bool = False  #: every probe passed and UNIT was completed
    hold_lost: bool = False  #: the hold could not be taken back after a restart
    stopped: str = ""  #: why we stopped CMD ourselves ("timed out after 10m")
    #: The completion on the lease is sent and not answered yet: others may already see UNIT
    #: completed (the answer waits for the journal), so CMD ending now ends after it was ready.
    completing: bool = False
    tasks: list[asyncio.Future[None]] = field(default_factory=list)
    #: Set (and replaced) each time the keeper takes the hold back on a new connection.
    hold_taken: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def child(self) -> asyncio.subprocess.Process | DetachedProcess:
        return self.launched.child


async def supervise(
    core: AsyncioClient, unit: str, lease: int, launched: Launched, limits: Limits,
    *, forward_signals: bool = True,
) -> int:
    """Wait for CMD, forwarding signals (unless the caller hands them out: ``up``),
    enforcing the limits, completing UNIT once ready, and keeping the hold across
    coordinator restarts; then record CMD's outcome — on the lease, or by name on a new
    connection if there is none. Returns ``run``'s exit code."""
    loop = asyncio.get_running_loop()
    child = launched.child
    forwarded = FORWARDED if forward_signals else ()
    interactive = _terminal_delivers_sigint()
    for signum in forwarded:
        if signum == signal.SIGINT and interactive:
            loop.add_signal_handler(signum, lambda: None)  # CMD got it from the terminal
        else:
            loop.add_signal_handler(signum, launched.signal, signum)
    run = _Run(core, unit, launched, limits, lease)
    run.tasks.append(asyncio.ensure_future(_keep_the_hold(run)))
    becoming_ready = asyncio.ensure_future(_become_ready(run)) if limits.probes else None
    if becoming_ready is not None:
        run.tasks.append(becoming_ready)
    if limits.run_timeout:
        run.tasks.append(asyncio.ensure_future(
            _stop_after(run, limits.run_timeout, f"timed out after {format_duration(limits.run_timeout)}")
        ))
    try:
        returncode = await child.wait()
        for pump in launched.pumps:  # CMD's last output is written before anything is said about it
            with contextlib.suppress(Exception):
                await pump
        if run.completing and becoming_ready is not None:  # let its answer come (bounded)
            await asyncio.wait({becoming_ready}, timeout=limits.reconnect_timeout or None)
    finally:
        for signum in forwarded:
            loop.remove_signal_handler(signum)
        for task in run.tasks:
            task.cancel()
        for task in run.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task  # a bug in one surfaces here
    code, reason = outcome(returncode)
    if run.stopped:
        code, reason = TIMED_OUT, run.stopped
    elif limits.probes and not run.ready:
        reason = f"{reason or 'exit code 0'} before it was ready"
        code = code or 1
    if run.ready:
        if reason:  # the lease is gone with the completion: by name
            await _record_by_name(run, f"{reason} (after it was ready)")
        return code
    if run.lease is not None:
        try:
            if reason:
                await core.lease_fail(run.lease, reason)
            else:
                await core.lease_complete(run.lease)
            launched.recorded = ("failed", reason) if reason else ("completed", "")
            return code
        except CoordinatorClosed:
            pass
    await _record_by_name(run, reason)
    return code


async def _become_ready(run: _Run) -> None:
    """Wait until every probe has passed (within ``--ready-timeout``), then complete UNIT on
    the lease — or, if the coordinator is away, once the hold is taken back. Not ready in
    time: stop CMD."""
    limits = run.limits
    waits: list[Awaitable[object]] = []
    for probe in limits.probes:
        if isinstance(probe, LogProbe):
            assert run.launched.lines is not None
            waits.append(run.launched.lines.matched[probe].wait())
        else:
            waits.append(poll_until_ready(probe, limits.ready_interval))
    try:
        async with asyncio.timeout(limits.ready_timeout or None):
            await asyncio.gather(*waits)
    except TimeoutError:
        await _stop(run, f"not ready within {format_duration(limits.ready_timeout)}")
        return
    while True:
        lease = run.lease
        if lease is not None:
            run.completing = True
            try:
                await run.core.lease_complete(lease)
            except CoordinatorClosed:
                run.completing = False  # the keeper takes the hold back; then complete on
                # the new lease
            else:
                run.lease, run.ready, run.completing = None, True, False
                say(f'Unit "{run.unit}" is ready ({", ".join(map(str, limits.probes))}); '
                    "completed")
                return
        while run.lease in (lease, None) and not run.hold_lost:
            await run.hold_taken.wait()  # woken when the keeper takes the hold back (or not)
        if run.hold_lost:  # no hold to complete on: by name
            try:
                await run.core.complete(run.unit)
            except UnitsyncError as error:
                say(f'unit "{run.unit}" is ready but could not be completed: {error}')
                return
            run.ready = True
            say(f'Unit "{run.unit}" is ready; completed by name')
            return


async def _stop_after(run: _Run, seconds: float, why: str) -> None:
    await asyncio.sleep(seconds)
    await _stop(run, why)


async def _stop(run: _Run, why: str) -> None:
    """Stop CMD because of a limit: SIGTERM, then SIGKILL after ``--kill-after``."""
    if run.stopped:
        return
    run.stopped = why
    say(f'unit "{run.unit}": {why}; stopping the command (SIGTERM, then SIGKILL after '
        f"{format_duration(run.limits.kill_after)})")
    run.launched.signal(signal.SIGTERM)
    await asyncio.sleep(run.limits.kill_after)
    run.launched.signal(signal.SIGKILL)


async def _keep_the_hold(run: _Run) -> None:
    """While CMD runs and UNIT is held: each time the connection is lost, reconnect as soon as
    the coordinator is back (a restart) and take the hold over again with
    ``hold(resume=True)`` — a coordinator restarted from its journal keeps the unit started for
    its hold grace period, then fails it with "holder disconnected". CMD keeps running whatever
    happens here. Once UNIT is ready (completed) there is no hold to keep."""
    core, unit = run.core, run.unit
    while not run.ready:
        await core.disconnected()
        if run.ready:
            return
        run.lease = None
        say(f"lost the coordinator at {core.path}; the command keeps running")
        while run.lease is None:
            await core.reconnect()
            try:
                run.lease = await core.hold(unit, resume=True)
            except CoordinatorClosed:
                continue  # gone again before it answered (it was shutting down): retry
            except UnitsyncError as error:  # NotHeld: the grace ran out, or the unit changed
                say(f"reconnected to the coordinator at {core.path} but could not take unit "
                    f'"{unit}" back ({error}); its outcome will be recorded by name')
                run.hold_lost = True
                run.hold_taken.set()
                return
        say(f'reconnected to the coordinator at {core.path}; unit "{unit}" is held again')
        run.hold_taken.set()
        run.hold_taken = asyncio.Event()


async def _record_by_name(run: _Run, reason: str) -> None:
    """The coordinator is away as CMD ends, the hold could not be taken back, or UNIT was
    completed when it became ready: record CMD's outcome by name, reconnecting if need be (it
    may be restarting, and a restarted coordinator restores the unit from its journal) for up
    to ``--reconnect-timeout``; else say it was not recorded."""
    core, unit = run.core, run.unit
    outcome_text = reason or "exit code 0"

    async def record() -> None:
        if reason:
            await core.fail(unit, reason)
        else:
            await core.complete(unit)

    try:
        async with asyncio.timeout(run.limits.reconnect_timeout):
            if not core.connected:
                await core.reconnect()
                say(f"reconnected to the coordinator at {core.path}")
            await across_restarts(core, record)
    except TimeoutError:
        say(f"the coordinator at {core.path} did not come back; the outcome ({outcome_text}) "
            "was not recorded")
    except UnitsyncError as error:  # e.g. the unit is not there (no journal): say why
        say(f"could not record the outcome ({outcome_text}): {error}")
    else:
        if not run.ready:
            say(f"recorded the outcome ({outcome_text}) by name")


def _terminal_delivers_sigint() -> bool:
    """True when we run in the terminal's foreground process group: a Ctrl-C there reaches CMD
    directly (same group), and forwarding it as well would deliver it twice."""
    import os

    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:  # stdin is not a terminal
        return False



"""``unitsync run UNIT [--after DEP]... -- CMD ARGS...``: a command as a unit.

want + start + complete/fail in one process, with the unit bound to this process by a lease:
if ``run`` dies (even by SIGKILL) before CMD's outcome is recorded, the coordinator fails the
unit with ``holder disconnected`` and its dependents are told at once. What happens while CMD
runs (signals, limits, readiness probes, restarts) is in ``_supervise.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from coordinator import Status, validate_name

from ._connect import USAGE, CommandError, call, say
from ._format import names
from ._options import Common, Duration, Requirement
from ._probes import CommandProbe, HttpProbe, LogProbe, Probe, TcpProbe
from ._probes import parse_address, parse_regex, parse_url
from ._supervise import RECONNECT_SECONDS, Limits, launch, supervise
from ._when_ready import start_when_ready

if TYPE_CHECKING:
    from coordinator.rpc import AsyncioClient

__all__ = ["run"]



def run(
    unit: str,
    /,
    *command: str,
    after: Annotated[tuple[str, ...], Parameter(name="--after", negative=())] = (),
    requires: Requirement = "completed",
    timeout: Duration = 300.0,
    reconnect_timeout: Duration = RECONNECT_SECONDS,
    run_timeout: Duration = 0.0,
    kill_after: Duration = 10.0,
    ready_log: str | None = None,
    ready_tcp: str | None = None,
    ready_http: str | None = None,
    ready_cmd: str | None = None,
    ready_interval: Duration = 0.5,
    ready_timeout: Duration = 0.0,
    progress: Duration = 30.0,
    common: Common = Common(),
) -> int:
    """Run CMD as UNIT: declare the --after dependencies (atomically), wait until UNIT is
    ready, start it bound to this process, run CMD with this terminal's stdin/stdout/stderr,
    then complete UNIT if CMD exits 0 and fail it otherwise (reason `exit code N` or
    `killed by signal S`). SIGINT, SIGTERM and SIGHUP are forwarded to CMD (a Ctrl-C typed in
    the terminal reaches CMD directly, once).

    Exits with CMD's code (128+N if killed by signal N); 4 without running CMD if a dependency
    failed; 3 on timeout; 127 (126) if CMD cannot be found (executed). If the coordinator goes
    away while run waits, it reconnects and keeps waiting within the timeout. If it goes away
    while CMD runs, CMD keeps running, run reconnects as soon as the coordinator is back and
    takes its hold over again (a restarted coordinator keeps the unit started for its
    --hold-grace), and CMD's outcome is recorded when it ends (by name if the hold could not be
    taken back; tried for --reconnect-timeout after CMD ends). Its exit code is returned either
    way.

    A service never exits on success: give it a readiness probe (--ready-log, --ready-tcp,
    --ready-http, --ready-cmd; with several, all must pass). Then UNIT is completed as soon as
    the probes pass, while CMD keeps running under run; CMD exiting before that fails UNIT
    (`exit code N before it was ready`), and after it, exit 0 leaves UNIT completed and anything
    else fails it (`exit code N (after it was ready)`). --ready-timeout and --run-timeout stop CMD
    (SIGTERM, then SIGKILL after --kill-after), fail UNIT (`not ready within 2m`, `timed out
    after 10m`) and make run exit 124.

    Parameters
    ----------
    unit
        The unit CMD is.
    command
        The command and its arguments, after `--`.
    after
        A dependency of UNIT (repeatable).
    requires
        What each --after dependency must have reached.
    timeout
        How long to wait for the dependencies (not CMD): 30s, 5m ...; 0 waits forever.
        Default 5m.
    reconnect_timeout
        How long to keep trying to reach a coordinator that is away when CMD ends, to record
        CMD's outcome: 30s, 5m ...; 0 tries until it is back. Default 10s.
    run_timeout
        How long CMD may run (from its start): past it CMD is stopped and UNIT fails with
        `timed out after ...`; 0 (the default): no limit.
    kill_after
        How long CMD has to exit after the SIGTERM of a time limit before it gets SIGKILL.
        Default 10s.
    ready_log
        Ready once a line of CMD's stdout or stderr matches this regular expression. CMD then
        writes to pipes, not to the terminal; run copies every byte to its own stdout/stderr
        unchanged, as it comes.
    ready_tcp
        Ready once a TCP connection to HOST:PORT is accepted.
    ready_http
        Ready once a GET of this http:// or https:// URL answers 2xx.
    ready_cmd
        Ready once this shell command exits 0.
    ready_interval
        How often the tcp, http and cmd probes are tried. Default 0.5s.
    ready_timeout
        How long CMD has to become ready; 0 (the default): no limit.
    progress
        While waiting for the dependencies, say every so often which are still unmet, with
        their status (stderr). Default 30s; 0: never.
    """
    validate_name(unit)
    for dependency in after:
        validate_name(dependency)
    if not command:
        raise CommandError("run needs a command: unitsync run UNIT [--after DEP]... -- CMD ARGS",
                           USAGE)
    if ready_interval <= 0:
        raise CommandError("--ready-interval must be more than 0", USAGE)
    limits = Limits(
        run_timeout=run_timeout, kill_after=kill_after, ready_interval=ready_interval,
        ready_timeout=ready_timeout, reconnect_timeout=reconnect_timeout or None,
        probes=_probes(ready_log, ready_tcp, ready_http, ready_cmd),
    )

    def waiting(unmet: object) -> None:
        say(f'Unit "{unit}" is waiting for dependencies to be satisfied: {names(unmet)}')  # type: ignore[arg-type]

    async def body(core: AsyncioClient) -> int:
        if after:
            await core.want(unit, list(after), Status(requires))
        lease, _, _ = await start_when_ready(
            core, unit, lambda: core.hold(unit), timeout, waiting=waiting,
            taken=lambda: core.hold(unit, resume=True), progress=progress,
        )
        try:
            launched = await launch(command, limits)
        except OSError as exc:
            reason = f"cannot run {command[0]!r}: {exc.strerror or exc}"
            say(reason)
            await core.lease_fail(lease, reason)
            return 126 if isinstance(exc, PermissionError) else 127
        return await supervise(core, unit, lease, launched, limits)

    return call(common, body, autostart=True)


def _probes(
    log: str | None, tcp: str | None, http: str | None, cmd: str | None
) -> tuple[Probe, ...]:
    """The probes the options ask for, checked before anything is sent (exit 2)."""
    probes: list[Probe] = []
    try:
        if log is not None:
            probes.append(LogProbe(parse_regex(log)))
        if tcp is not None:
            probes.append(TcpProbe(*parse_address(tcp)))
        if http is not None:
            probes.append(HttpProbe(parse_url(http)))
    except ValueError as exc:
        raise CommandError(str(exc), USAGE) from None
    if cmd is not None:
        if not cmd.strip():
            raise CommandError("--ready-cmd needs a command", USAGE)
        probes.append(CommandProbe(cmd))
    return tuple(probes)

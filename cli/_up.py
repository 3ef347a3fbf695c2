"""``unitsync up [-f FILE] [UNIT...]``: the command and its options (what it does is in
``_up_run.py``, which a plain ``up`` line reaches without cyclopts: ``_main.py``)."""

from __future__ import annotations

from pathlib import Path

from ._options import Common, Duration, File
from ._up_run import UpArgs, run_up

__all__ = ["up"]


def up(
    *units: str,
    file: File = None,
    log_dir: Path | None = None,
    abort_on_failure: bool = False,
    grace: Duration = UpArgs.grace,
    common: Common = Common(),
) -> int:
    """Run the workspace file: every unit (or each UNIT and what it needs) the moment it is
    ready, as `unitsync run` would, with its output behind its name.

    Uses the coordinator on the socket, or, if none answers, runs one in this process (memory
    only: it stops with `up`; scripts outside can still report to it meanwhile) — unless
    --no-autostart: then no coordinator is exit 69, nothing run. Applies the
    file first (as `apply`: a file `check` refuses runs nothing, exit 2 or 5). A unit whose
    dependency failed is skipped; the others go on. Ends when every unit has an outcome and
    every command has exited (services, with `ready`, keep running until interrupted): a
    summary table, exit 0 if every unit completed, else 1.

    SIGINT/SIGTERM stop the running commands in reverse dependency order (dependents first;
    SIGTERM, then SIGKILL after --grace); a second one kills them at once.

    Parameters
    ----------
    units
        Only these units and what they need (default: every unit of the file).
    file
        The workspace file. Default: unitsync.toml in the current directory.
    log_dir
        Also write each unit's output to DIR/UNIT.log, and at the end the run's timeline to
        DIR/timeline.html.
    abort_on_failure
        Stop everything when a unit fails or is skipped.
    grace
        How long a stopped command has to exit after SIGTERM before SIGKILL. Default 10s.
    """
    return run_up(UpArgs(
        units=units, file=file, log_dir=log_dir, abort_on_failure=abort_on_failure, grace=grace,
        socket=common.socket, no_autostart=common.no_autostart,
    ))

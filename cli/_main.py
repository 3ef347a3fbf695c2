"""``unitsync``'s entry point: run the command line, turn what went wrong into one diagnostic line
and an exit code.

A plain ``unitsync up`` line (``_up_run.plain_arguments``: unit names, ``-f FILE`` and up's
other options in their usual forms) runs without importing cyclopts, ~30 ms of every ``up``'s
start before its first command (stress/README.md); every other line, ``up --help`` included,
is parsed by the cyclopts application (``_app.py``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from coordinator import UnitsyncError

from ._connect import CommandError, report

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the command (``argv``, else ``sys.argv[1:]``), exit with
    its code."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    try:
        result = _run(tokens)
    except (UnitsyncError, CommandError) as error:
        result = report(error)
    except KeyboardInterrupt:
        result = 130
    except BrokenPipeError:  # `unitsync timeline | head`: the reader has what it wanted
        result = 0
    _quiet_stdout()
    code = result if isinstance(result, int) else 0
    if argv is None and tokens[:1] == [_END_AT_ONCE]:
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _run(tokens: list[str]) -> object:
    """The command's result: a plain ``up`` line directly, anything else through cyclopts."""
    if tokens[:1] == ["up"]:
        from ._up_run import plain_arguments, run_up

        arguments = plain_arguments(tokens[1:])
        if arguments is not None:
            return run_up(arguments)
    from ._app import run

    return run(tokens)


#: The command whose process ends without the interpreter's teardown once its output is
#: flushed: ``up`` has closed what it opened (logs, connection, its own coordinator) and
#: reaped its commands by then, and freeing every module and object of the run only delays
#: its exit code (stress/README.md "up"). Only as the console script (``argv`` None): a test
#: calling ``main(args)`` keeps its process.
_END_AT_ONCE = "up"


def _quiet_stdout() -> None:
    """Flush stdout now, and if the reader has gone, keep Python's exit flush from complaining."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

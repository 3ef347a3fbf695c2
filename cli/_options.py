"""Options and argument types shared by the commands: what cyclopts reads from their signatures.

Only the command modules import this (and so cyclopts); what runs a command does not, so that
``unitsync up`` can run without the parser library (``_main.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import Parameter

from ._duration import parse_duration

__all__ = ["Common", "Duration", "File", "Requirement"]


@Parameter(name="*")
@dataclass(frozen=True)
class Common:
    socket: Annotated[Path | None, Parameter(name="--socket")] = None
    """Coordinator socket. Default: $UNITSYNC_SOCKET, else $XDG_RUNTIME_DIR/unitsync/unitsync.sock,
    else /tmp/unitsync-UID/unitsync.sock."""
    no_autostart: Annotated[bool, Parameter(name="--no-autostart", negative=())] = False
    """With no coordinator on the socket, exit 69 instead of starting one (as
    UNITSYNC_AUTOSTART=0 does). Only the commands that change or wait (want, start, complete,
    fail, skip, run, wait, apply) ever start one; for up, the option (not the variable) means
    no coordinator of its own either."""


def _duration(type_: Any, tokens: Sequence[Any]) -> float:
    return parse_duration(tokens[0].value)


#: A timeout: ``--timeout 5m``; 0 waits forever.
Duration = Annotated[float, Parameter(converter=_duration, show_default=False)]

#: What a dependent needs from its dependency (finished: any outcome, completed, failed or
#: skipped), and what `wait --for` waits for.
Requirement = Literal["started", "completed", "finished"]

#: ``-f FILE``, shared by the commands that read the workspace file.
File = Annotated[Path | None, Parameter(name=["--file", "-f"])]

"""Options and argument types shared by the commands."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import Parameter

__all__ = ["Common", "Duration", "Requirement", "format_duration", "parse_duration"]


@Parameter(name="*")
@dataclass(frozen=True)
class Common:
    socket: Annotated[Path | None, Parameter(name="--socket")] = None
    """Coordinator socket. Default: $UNITSYNC_SOCKET, else $XDG_RUNTIME_DIR/unitsync/unitsync.sock,
    else /tmp/unitsync-UID/unitsync.sock."""
    no_autostart: Annotated[bool, Parameter(name="--no-autostart", negative=())] = False
    """With no coordinator on the socket, exit 69 instead of starting one (as
    UNITSYNC_AUTOSTART=0 does). Only the commands that change or wait (want, start, complete,
    fail, skip, run, wait, apply) ever start one."""


_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``30s``, ``5m``, ``1h30m``, ``250ms``, ``1.5s`` or a plain number of
    seconds. ``0`` means no timeout. Raises ValueError with the accepted forms."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _PART.findall(text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            raise ValueError(
                f"invalid duration {text!r}: use e.g. 30s, 5m, 1h30m, 250ms, or 0 for no timeout"
            ) from None
        seconds = sum(float(number) * _UNIT[unit] for number, unit in parts)
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"invalid duration {text!r}: must be 0 (no timeout) or positive")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse, for messages: ``5m``, ``1h30m``, ``1.5s``."""
    if seconds >= 60 and seconds == int(seconds):
        hours, rest = divmod(int(seconds), 3600)
        minutes, secs = divmod(rest, 60)
        return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return f"{seconds:g}s"


def _duration(type_: Any, tokens: Sequence[Any]) -> float:
    return parse_duration(tokens[0].value)


#: A timeout: ``--timeout 5m``; 0 waits forever.
Duration = Annotated[float, Parameter(converter=_duration, show_default=False)]

#: What a dependent needs from its dependency (finished: any outcome, completed, failed or
#: skipped), and what `wait --for` waits for.
Requirement = Literal["started", "completed", "finished"]

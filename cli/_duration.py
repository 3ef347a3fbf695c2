"""Durations as users write them: ``30s``, ``5m``, ``1h30m``, ``250ms``; ``0`` is no timeout."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

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

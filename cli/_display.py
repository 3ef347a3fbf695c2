"""What ``unitsync up`` shows: each command's output line by line behind its unit's name
(``git      | Cloning into ...``), what happens to the units, and at the end a summary.

On a terminal the names are coloured and a live status block (one line per unit: its state
and for how long) stays under the output, redrawn in place; piped, the output is plain and
each change is one line (``unitsync: git started``). ``--log-dir`` also writes each unit's
raw output to ``DIR/UNIT.log``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from ._supervise import Sinks

__all__ = ["Display", "UnitLine"]

#: ANSI colours for the names (cycled), and the escape sequences the status block uses.
_COLOURS = ("36", "33", "32", "35", "34", "91", "96", "93", "92", "95")
_RESET, _BOLD, _DIM = "\x1b[0m", "\x1b[1m", "\x1b[2m"
_UP, _CLEAR_DOWN = "\x1b[{n}F", "\x1b[J"  # to the start of the line n up; clear to the end

_STATE_COLOURS = {"completed": "32", "failed": "91", "skipped": "35", "running": "36",
                  "ready": "32", "stopped": "33"}


@dataclass
class UnitLine:
    """One unit as the status block shows it: a state word and since when."""

    name: str
    state: str = "waiting"
    detail: str = ""
    since: float = field(default_factory=time.monotonic)
    #: For an outcome: how long the command ran (None: it did not), shown instead of a clock.
    took: float | None = None


class _LineSink:
    """A binary sink (``write``/``flush``) that hands the display whole lines, prefixed; a
    partial line waits for its end (or for :meth:`close`)."""

    def __init__(self, display: Display, unit: str, err: bool, log: BinaryIO | None) -> None:
        self._display, self._unit, self._err, self._log = display, unit, err, log
        self._partial = b""

    def write(self, data: bytes) -> int:
        if self._log is not None:
            self._log.write(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._display.output(self._unit, line.decode(errors="replace"), err=self._err)
        return len(data)

    def flush(self) -> None:
        if self._log is not None:
            self._log.flush()

    def close(self) -> None:
        if self._partial:
            self._display.output(self._unit, self._partial.decode(errors="replace"),
                                 err=self._err)
            self._partial = b""


class Display:
    """The screen of one ``up``: built with the units it runs, in file order."""

    def __init__(
        self, units: Sequence[str], *, tty: bool | None = None, log_dir: Path | None = None,
        out: TextIO | None = None, err: TextIO | None = None,
    ) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self.tty = self._out.isatty() if tty is None else tty
        self._colour = self.tty and "NO_COLOR" not in os.environ
        self._width = max([len(u) for u in units] or [1])
        self._colours = {u: _COLOURS[i % len(_COLOURS)] for i, u in enumerate(units)}
        self.lines = {u: UnitLine(u) for u in units}
        self._drawn = 0  # lines of the status block now on the screen
        self._log_dir = log_dir
        self._logs: list[BinaryIO] = []
        self._sinks: list[_LineSink] = []
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

    # --- output ---------------------------------------------------------------------------

    def sinks(self, unit: str) -> Sinks:
        """Where ``unit``'s command writes: our stdout and stderr, prefixed (and its log)."""
        log = None
        if self._log_dir is not None:
            log = (self._log_dir / f"{unit}.log").open("ab")
            self._logs.append(log)
        out, err = _LineSink(self, unit, False, log), _LineSink(self, unit, True, log)
        self._sinks += [out, err]
        return Sinks(out, err)  # type: ignore[arg-type]

    def output(self, unit: str, text: str, *, err: bool = False) -> None:
        """One line of ``unit``'s command."""
        name = unit.ljust(self._width)
        if self._colour:
            name = f"\x1b[{self._colours[unit]}m{name}{_RESET}"
        self._print(f"{name} | {text}", err=err and not self.tty)

    def say(self, text: str) -> None:
        """A line of ``up``'s own (``unitsync: ...``)."""
        self._print(f"unitsync: {text}", err=not self.tty)

    def line(self, text: str) -> None:
        """A line written as it is, above the status block (what ``run``'s code says on
        ``sys.stderr`` while the block is on the terminal)."""
        self._print(text, err=False)

    def _print(self, line: str, *, err: bool) -> None:
        stream = self._err if err else self._out
        if self.tty:
            self._erase()
            stream.write(line + "\n")
            self._draw()
        else:
            stream.write(line + "\n")
        stream.flush()

    # --- the units' states ----------------------------------------------------------------

    def state(
        self, unit: str, state: str, detail: str = "", *, announce: str = "",
        took: float | None = None,
    ) -> None:
        """``unit`` is now in ``state`` (waiting, running, ready, completed, failed, skipped,
        stopped; ``took``: how long its command ran, for an outcome); piped, ``announce`` (if
        given) is printed as a line."""
        line = self.lines[unit]
        line.state, line.detail, line.since, line.took = state, detail, time.monotonic(), took
        if self.tty:
            self.refresh()
        elif announce:
            self.say(announce)

    def refresh(self) -> None:
        """Redraw the status block (the elapsed times move on)."""
        if self.tty:
            self._erase()
            self._draw()
            self._out.flush()

    def _erase(self) -> None:
        if self._drawn:
            self._out.write(_UP.format(n=self._drawn) + _CLEAR_DOWN)
            self._drawn = 0

    def _draw(self) -> None:
        now = time.monotonic()
        rows = []
        for line in self.lines.values():
            ended = line.state not in ("waiting", "running")
            seconds = line.took if ended else now - line.since
            elapsed = "" if seconds is None else _clock(seconds)
            state = line.state
            if self._colour:
                state = f"\x1b[{_STATE_COLOURS.get(state, '0')}m{state:<9}{_RESET}"
            else:
                state = f"{state:<9}"
            detail = f"  {_DIM}{line.detail}{_RESET}" if line.detail and self._colour else (
                f"  {line.detail}" if line.detail else "")
            rows.append(f"{_BOLD if self._colour else ''}{line.name.ljust(self._width)}"
                        f"{_RESET if self._colour else ''}  {state} {elapsed:>7}{detail}")
        self._out.write("\n".join(rows) + "\n")
        self._drawn = len(rows)

    def close(self) -> None:
        """The end: the last partial lines, the block left as it is, the logs closed."""
        for sink in self._sinks:
            sink.close()
        if self.tty:
            self.refresh()
            self._drawn = 0  # it stays on the screen, above the summary
        for log in self._logs:
            log.close()


def _clock(seconds: float) -> str:
    """``0.4s``, ``12.0s``, ``3m05s``: the status block's durations."""
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"

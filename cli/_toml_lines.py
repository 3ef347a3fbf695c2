"""Where a key of a TOML document was written: line numbers for messages about a valid document.

``tomllib`` reports a line only for a document it cannot parse; an error found afterwards (an
unknown key, a bad duration) should still point at its line. :class:`KeyLines` finds them with
a light scan of the text, line by line: table headers (``[units.git]``, ``[units."my app"]``,
``[[x.y]]``) and assignments at the start of a line (``after = ...``, ``ready.tcp = ...``),
bare, ``"basic"`` and ``'literal'`` keys alike. A key path maps to the first line that
declares it or anything under it.

Limits (it is not a parser; the document has already been parsed): keys inside an inline table
(``ready = { tcp = "..." }``) are not seen, so they get the line of the key that holds the
table; a line inside a multi-line string that looks like a header or an assignment may be
taken for one (``\"\"\"`` and ``'''`` are counted to skip such strings, without escapes).
"""

from __future__ import annotations

import re
import tomllib

__all__ = ["KeyLines"]

_BARE = r"[A-Za-z0-9_-]+"
_BASIC = r'"(?:[^"\\\n]|\\.)*"'
_LITERAL = r"'[^'\n]*'"
_KEY = rf"(?:{_BARE}|{_BASIC}|{_LITERAL})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGNMENT = re.compile(rf"\s*({_DOTTED})\s*=")
_ONE_KEY = re.compile(_KEY)
_MULTILINE = ('"""', "'''")


class KeyLines:
    """The line (counted from 1) where each key path of a TOML text is first declared."""

    __slots__ = ("_lines",)

    def __init__(self, text: str) -> None:
        """Scan ``text`` (a valid TOML document, or any text: nothing is raised)."""
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        inside: str | None = None  # the delimiter of the multi-line string we are in
        for number, line in enumerate(text.splitlines(), start=1):
            if inside is not None:
                if line.count(inside) % 2:
                    inside = None
                continue
            if header := _HEADER.match(line):
                table = _split(header.group(1))
                self._note(table, number)
            elif assignment := _ASSIGNMENT.match(line):
                self._note(table + _split(assignment.group(1)), number)
            inside = next((d for d in _MULTILINE if line.count(d) % 2), None)

    def _note(self, path: tuple[str, ...], number: int) -> None:
        """``path`` and each of its prefixes are declared at ``number`` unless seen before."""
        for end in range(1, len(path) + 1):
            self._lines.setdefault(path[:end], number)

    def line(self, *path: str) -> int | None:
        """The line of ``path``, else of its longest declared prefix; None if none is."""
        for end in range(len(path), 0, -1):
            if (found := self._lines.get(path[:end])) is not None:
                return found
        return None


def _split(dotted: str) -> tuple[str, ...]:
    """``units."my app".run`` -> ``("units", "my app", "run")``."""
    return tuple(_unquote(match.group()) for match in _ONE_KEY.finditer(dotted))


def _unquote(key: str) -> str:
    """A key as TOML reads it: a basic string's escapes decoded, a literal's quotes dropped."""
    if key.startswith('"'):
        try:
            return str(tomllib.loads(f"k = {key}")["k"])
        except tomllib.TOMLDecodeError:
            return key[1:-1]
    if key.startswith("'"):
        return key[1:-1]
    return key

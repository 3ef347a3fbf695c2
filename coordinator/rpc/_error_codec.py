"""How a library error crosses the wire as text, and back (no capnp here: plain strings).

The text is ``<code>: <message>``, then a line ``unitsync-data: <json>`` naming the error's
class and its constructor arguments, from which :func:`error_from_wire` rebuilds the same
class with the same data (the arguments are the ones ``pickle`` uses: see
``UnitsyncError.__reduce__``). Clients in other languages only need the code: find it with
the regular expression ``unitsync\\.[a-z-]+: `` (pycapnp's server writes ``message = `` before
it, a receiving RPC system may add ``remote exception: ``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .._errors import UnitsyncError
from .._status import Status

__all__ = ["error_from_wire", "error_to_wire"]

_CODE = re.compile(r"(unitsync\.[a-z-]+): ")
_DATA = "\nunitsync-data: "


def error_to_wire(error: UnitsyncError) -> str:
    """The wire text of ``error``: ``<code>: <message>`` and the ``unitsync-data:`` line."""
    _cls, args = error.__reduce__()[:2]
    data = json.dumps({"type": type(error).__name__, "args": [_plain(a) for a in args]})
    return f"{error.code}: {error}{_DATA}{data}"


def error_from_wire(text: str) -> UnitsyncError | None:
    """The error in ``text`` (what :func:`error_to_wire` made, whatever the transport put
    around it), rebuilt as its class when that is known here and has the same code, else a
    plain :class:`UnitsyncError` carrying the code; None if ``text`` has no code."""
    found = _CODE.search(text)
    if found is None:
        return None
    code = found.group(1)
    message, _, rest = text[found.end():].partition(_DATA)
    try:
        data = json.loads(rest.splitlines()[0])
        cls = _classes()[data["type"]]
        if cls.code == code:
            return cls(*data["args"])
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    error = UnitsyncError(message.strip())
    error.code = code
    return error


def _plain(value: Any) -> Any:
    """A constructor argument as JSON can hold it (a Status as its string; the classes accept
    that back)."""
    if isinstance(value, Status):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _classes() -> dict[str, type[UnitsyncError]]:
    """Every UnitsyncError class defined so far, by name."""
    found: dict[str, type[UnitsyncError]] = {}
    todo = [UnitsyncError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found

"""What a unit name may be."""

from __future__ import annotations

import unicodedata

from collections.abc import Iterable

from ._errors import InvalidArgument, InvalidName
from ._status import REQUIREMENTS, Status

__all__ = [
    "MAX_APPLY_UNITS",
    "MAX_DEPENDENCIES",
    "MAX_NAME_BYTES",
    "MAX_REASON_BYTES",
    "check_dependency_count",
    "check_requirement",
    "limit_reason",
    "validate_dependencies",
    "validate_name",
]

#: Longest name accepted, in UTF-8 bytes (coder accepts any string; we bound it so that one
#: request cannot make the coordinator store megabytes).
MAX_NAME_BYTES = 255

#: Most dependencies one ``want`` call may declare (more calls may add more): bounds the work
#: and memory one request can demand of the registry.
MAX_DEPENDENCIES = 1000

#: Longest failure reason kept, in UTF-8 bytes; a longer one is cut (see :func:`limit_reason`).
MAX_REASON_BYTES = 4096


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid unit name, else raise :class:`InvalidName`.

    Valid: a non-empty ``str`` of at most :data:`MAX_NAME_BYTES` UTF-8 bytes without control
    characters (Unicode category ``Cc``, which covers NUL, newline, tab and DEL).
    """
    if not isinstance(name, str):
        raise InvalidName(repr(name), f"must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidName(name, "must not be empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidName(name, "is not valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise InvalidName(name, f"is {size} bytes long; at most {MAX_NAME_BYTES} are allowed")
    if not name.isprintable():
        # isprintable() is a fast pre-check; only control characters are refused.
        for char in name:
            if unicodedata.category(char) == "Cc":
                raise InvalidName(name, f"contains control character U+{ord(char):04X}")
    return name


#: Units one ``apply`` may declare (a workspace file, not a graph of a million nodes: a bigger
#: one is applied in several calls, each atomic).
MAX_APPLY_UNITS = 10_000


def validate_dependencies(dependencies: Iterable[str], requires: Status) -> tuple[str, ...]:
    """The arguments of ``want``: each name validated, duplicates dropped (first kept), at most
    :data:`MAX_DEPENDENCIES`; ``requires`` must be ``STARTED``, ``COMPLETED`` or ``FINISHED``
    (:class:`InvalidArgument` otherwise). The one check of them: see ``_operations.want``."""
    check_requirement(requires)
    unique = dict.fromkeys(dependencies)
    check_dependency_count(len(unique))
    return tuple(validate_name(d) for d in unique)


def check_requirement(requires: Status) -> None:
    """:class:`InvalidArgument` unless ``requires`` is ``STARTED``, ``COMPLETED`` or
    ``FINISHED``."""
    if requires not in REQUIREMENTS:
        label = getattr(requires, "label", requires)
        raise InvalidArgument(
            f"a requirement is 'started', 'completed' or 'finished', not {label!r}"
        )


def check_dependency_count(count: int) -> None:
    """:class:`InvalidArgument` if one ``want`` declares more than :data:`MAX_DEPENDENCIES`
    (the RPC server asks before it decodes the names)."""
    if count > MAX_DEPENDENCIES:
        raise InvalidArgument(
            f"want declares {count} dependencies; at most {MAX_DEPENDENCIES} per call"
        )


def limit_reason(reason: str) -> str:
    """``reason``, cut to :data:`MAX_REASON_BYTES` with a note saying so. Failing the unit is
    what matters (``unitsync fail x --reason "$(cat build.log)"`` must still fail it), so a long
    reason is shortened, not refused; unbounded, a few of them made every ``list()`` answer
    too large to send."""
    data = reason.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return reason
    note = f" ... [cut: {len(data)} bytes]"
    return data[: MAX_REASON_BYTES - len(note)].decode("utf-8", "ignore") + note

"""Between capnp messages and the library's plain values. Runs on the KJ thread only: nothing
capnp made ever leaves it; what crosses to Trio is the frozen dataclasses of ``coordinator``."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any

import capnp

from .._api import Dependency, Event, UnitInfo
from .._errors import CoordinatorClosed, InvalidArgument, InvalidName, UnitsyncError
from .._status import Status
from ._error_codec import error_from_wire, error_to_wire
from ._schema import schema as _schema

__all__ = [
    "REVISION",
    "error_from_capnp",
    "fill_event",
    "fill_info",
    "read_event",
    "read_info",
    "read_names",
    "read_reason",
    "set_info",
    "status_from_wire",
    "to_wire_error",
    "wire_errors",
]

#: The revision of ``unitsync.capnp`` this code speaks (see ``Coordinator.hello``): 1 is the
#: first contract, 2 adds the status ``skipped``, the requirement ``finished`` and ``skip``,
#: 3 the history (``history``, ``watch`` replaying from a seq, events for edges added), 4 a
#: ``hold`` that waits until the unit is ready (``wait``).
REVISION = 4

_TO_WIRE = {
    Status.NOT_REGISTERED: "notRegistered",
    Status.PENDING: "pending",
    Status.STARTED: "started",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.SKIPPED: "skipped",
    Status.FINISHED: "finished",
}
_FROM_WIRE = {wire: status for status, wire in _TO_WIRE.items()}

#: For a peer of revision 1: the nearest value it knows, for each one it does not.
_REVISION_1 = {**_TO_WIRE, Status.SKIPPED: "failed", Status.FINISHED: "completed"}


def _wire(revision: int) -> dict[Status, str]:
    """The wire values for a peer speaking ``revision`` (see :data:`REVISION`)."""
    return _TO_WIRE if revision >= 2 else _REVISION_1


def status_to_wire(status: Status, revision: int = REVISION) -> str:
    """The wire value of ``status`` for a peer speaking ``revision``."""
    return _wire(revision)[status]


def status_from_wire(value: Any) -> Status:
    """The Status for a wire enum value; :class:`InvalidArgument` for one the schema does not
    define (pycapnp raises RuntimeError "Member was null" on ``str()`` of it)."""
    try:
        return _FROM_WIRE[str(value)]
    except (RuntimeError, KeyError):
        raw = getattr(value, "raw", value)
        raise InvalidArgument(f"unknown status value {raw!r}") from None


def fill_info(builder: Any, info: UnitInfo, revision: int = REVISION) -> None:
    """Write ``info`` for a peer speaking ``revision``."""
    wire = _wire(revision)
    builder.name = info.name
    builder.status = wire[info.status]
    builder.ready = info.ready
    builder.reason = info.reason
    builder.blockedBy = info.blocked_by
    dependencies = builder.init("dependencies", len(info.dependencies))
    for slot, dependency in zip(dependencies, info.dependencies):
        slot.dependsOn = dependency.depends_on
        slot.required = wire[dependency.required]
        slot.current = wire[dependency.current]
        slot.satisfied = dependency.satisfied


def set_info(results: Any, info: UnitInfo, revision: int = REVISION) -> None:
    """``results.info = info`` for a peer speaking ``revision``, as :func:`fill_info` writes
    it: a copy of a prebuilt message with everything but the name (:class:`_InfoTemplates`),
    then the name."""
    results.info = _info_templates(info, revision)
    results.info.name = info.name


class _InfoTemplates(threading.local):
    """A thread's prebuilt UnitInfo messages without the name, by everything else in them and
    the revision: ``fill_info``'s ten or so field writes cost ten times or more what copying a
    built message does (stress/README.md, "Fan-out and the bridge"), and the answers of a
    fan-out — the dependents of one unit, woken by its change — differ only by their names.
    Bounded: emptied when full. (Per thread: capnp messages stay on the KJ thread of the
    server that built them.)"""

    LIMIT = 1024

    def __init__(self) -> None:
        self.built: dict[tuple[Any, ...], Any] = {}

    def __call__(self, info: UnitInfo, revision: int) -> Any:
        key = (info.status, info.ready, info.reason, info.blocked_by, info.dependencies, revision)
        template = self.built.get(key)
        if template is None:
            if len(self.built) >= self.LIMIT:
                self.built.clear()
            builder = _schema().UnitInfo.new_message()
            fill_info(builder, dataclasses.replace(info, name=""), revision)
            template = self.built[key] = builder.as_reader()
        return template


_info_templates = _InfoTemplates()


def read_info(reader: Any) -> UnitInfo:
    return UnitInfo(
        name=reader.name,
        status=_FROM_WIRE[str(reader.status)],
        ready=reader.ready,
        reason=reader.reason,
        blocked_by=reader.blockedBy,
        dependencies=tuple(
            Dependency(
                depends_on=d.dependsOn,
                required=_FROM_WIRE[str(d.required)],
                current=_FROM_WIRE[str(d.current)],
                satisfied=d.satisfied,
            )
            for d in reader.dependencies
        ),
    )


def fill_event(builder: Any, event: Event, revision: int = REVISION) -> None:
    """Write ``event`` for a peer speaking ``revision``."""
    wire = _wire(revision)
    builder.seq = event.seq
    builder.timeNs = int(event.time * 1e9)
    builder.unit = event.unit
    builder.old = wire[event.old]
    builder.new = wire[event.new]
    builder.reason = event.reason
    if event.depends_on:  # only sent to revision 3 and later (see RemoteWatch)
        builder.dependsOn = event.depends_on
        builder.requires = wire[event.requires]


def read_event(reader: Any) -> Event:
    return Event(
        seq=reader.seq,
        time=reader.timeNs / 1e9,
        unit=reader.unit,
        old=_FROM_WIRE[str(reader.old)],
        new=_FROM_WIRE[str(reader.new)],
        reason=reader.reason,
        depends_on=reader.dependsOn,
        requires=_FROM_WIRE[str(reader.requires)],
    )


def to_wire_error(error: BaseException) -> Exception:
    """The exception a server method raises so that the client gets ``<code>: <message>``.

    pycapnp sends ``traceback.format_exception(...)`` of a server method's exception as the
    capnp exception's description. This exception formats as exactly our wire text — no
    traceback, no module, no chained context — so clients in other languages find the code as
    ARCHITECTURE §6 says. (pycapnp's server puts ``message = `` before it and the receiving RPC system
    ``remote exception: ``: clients search for ``unitsync.<code>: ``.)
    """
    if isinstance(error, UnitsyncError):
        code, _, text = error_to_wire(error).partition(": ")
    else:
        code, text = "unitsync.error", f"internal error: {type(error).__name__}: {error}"
    return _wire_error_class(code)(text)


class _WireError(Exception):
    """Has no traceback and no context, whatever the interpreter records."""

    @property  # type: ignore[override]
    def __traceback__(self) -> None:
        return None

    @__traceback__.setter
    def __traceback__(self, value: object) -> None:
        pass

    @property  # type: ignore[override]
    def __context__(self) -> None:
        return None

    @__context__.setter
    def __context__(self, value: object) -> None:
        pass


@functools.cache
def _wire_error_class(code: str) -> type[_WireError]:
    # format_exception_only prints "<qualname>: <str>", without a module for builtins
    return type(code, (_WireError,), {"__module__": "builtins", "__qualname__": code})


def error_from_capnp(error: BaseException) -> BaseException:
    """The library exception for what a capnp call raised (client side)."""
    if isinstance(error, capnp.KjException):
        found = error_from_wire(error.description or str(error))
        if found is not None:
            return found
        if error.type == "DISCONNECTED":
            return CoordinatorClosed(f"connection to the coordinator lost: {error.description}")
        return UnitsyncError(f"coordinator call failed: {error.description}")
    return error


# --- the server side: reading parameters, raising errors ------------------------------------


def read_names(read: Callable[[], Any]) -> Any:
    """``read()`` of unit names (capnp Text, decoded by pycapnp): bytes that are not UTF-8
    are :class:`InvalidName`, a clear error instead of a traceback."""
    try:
        return read()
    except UnicodeDecodeError as exc:
        raise InvalidName(_shown(exc), "is not valid UTF-8") from None


def read_reason(read: Callable[[], Any]) -> str:
    """``read()`` of a failure reason: bytes that are not UTF-8 are :class:`InvalidArgument`."""
    try:
        return str(read())
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"a reason is not valid UTF-8: {_shown(exc)}") from None


def _shown(exc: UnicodeDecodeError) -> str:
    return repr(exc.object[:64]) if isinstance(exc.object, bytes) else "?"


def wire_errors(method: Any) -> Any:
    """Raise errors as wire errors (``<code>: <message>``); see :func:`to_wire_error`."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise to_wire_error(exc) from None

    return wrapper

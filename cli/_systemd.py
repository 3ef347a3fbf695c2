"""What ``serve`` says to and takes from a service manager (systemd and friends), stdlib only.

Socket activation (``sd_listen_fds(3)``): the manager binds the socket, listens, and starts us
with it as fd 3, ``LISTEN_FDS=1`` and ``LISTEN_PID`` our pid; clients that connect before we run
wait in its backlog. Readiness (``sd_notify(3)``): ``READY=1``, ``STATUS=...`` and ``STOPPING=1``
as datagrams to ``$NOTIFY_SOCKET`` (a path, or an abstract name written ``@name``).

Both read the environment once and remove their variables from it, as ``sd_listen_fds(1)`` and
``sd_notify(1, ...)`` do, so a process we start does not take the socket for its own.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import MutableMapping
from pathlib import Path

from ._connect import ERROR, USAGE, CommandError

__all__ = ["LISTEN_FDS_START", "Notifier", "activated_path", "inherited_socket"]

#: The first fd a service manager passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3


def inherited_socket(environ: MutableMapping[str, str] = os.environ) -> socket.socket | None:
    """The listening socket the service manager passed us (fd 3), or ``None`` if it passed none
    (``LISTEN_PID`` unset, or another process's: the variables were meant for a parent that
    exec'd us without unsetting them). ``LISTEN_PID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` are
    removed from ``environ`` in every case. Only the type of fd 3 is taken from the kernel
    here; whether it is a socket we can serve on (a listening Unix stream socket, its file and
    directory private) is :func:`coordinator.rpc.adopt_listener`'s check, made by ``serve``.
    Raises :class:`CommandError` (usage) for variables that do not say one fd: we serve one
    socket (``ListenStream=`` once in the ``.socket`` unit)."""
    pid, fds = environ.pop("LISTEN_PID", None), environ.pop("LISTEN_FDS", None)
    environ.pop("LISTEN_FDNAMES", None)
    if pid is None or fds is None:
        return None
    try:
        if int(pid) != os.getpid():
            return None
        count = int(fds)
    except ValueError:
        raise CommandError(f"bad socket activation variables: LISTEN_PID={pid!r} "
                           f"LISTEN_FDS={fds!r}", USAGE) from None
    if count != 1:
        raise CommandError(
            f"socket activation passed {count} sockets (LISTEN_FDS={fds}); serve takes exactly "
            "one: a single ListenStream= in unitsync.socket", USAGE)
    try:
        sock = socket.socket(fileno=LISTEN_FDS_START)  # family and type from the kernel
    except OSError as exc:
        raise CommandError(f"socket activation: fd {LISTEN_FDS_START} is not a socket "
                           f"({exc.strerror or exc})", USAGE) from None
    sock.set_inheritable(False)  # as sd_listen_fds: FD_CLOEXEC
    return sock


def activated_path(sock: socket.socket, requested: Path | None) -> Path:
    """Where the inherited ``sock`` is bound, once :func:`coordinator.rpc.adopt_listener` has
    accepted it; else :class:`CommandError` (exit 1, ``cannot serve: refusing ...``).
    ``requested``: an explicit ``--socket`` or ``$UNITSYNC_SOCKET``, which must name that same
    file (clients using it would look elsewhere); the default path is not a request."""
    from coordinator import UnitsyncError
    from coordinator.rpc import adopt_listener

    env = os.environ.get("UNITSYNC_SOCKET")
    requested = requested or (Path(env) if env else None)
    try:
        return adopt_listener(sock, requested).path
    except (UnitsyncError, OSError) as exc:
        raise CommandError(f"cannot serve: {exc}", ERROR) from None


class Notifier:
    """``sd_notify`` to ``$NOTIFY_SOCKET``, or nothing when it was not set. A message that cannot
    be sent is reported once on stderr and otherwise ignored: the coordinator serves whether or
    not the manager hears of it (a manager waiting for ``READY=1`` times the service out)."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self._complained = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> Notifier:
        """Read (and remove) ``NOTIFY_SOCKET``: a path, or ``@name`` for an abstract name."""
        value = environ.pop("NOTIFY_SOCKET", None)
        if not value:
            return cls(None)
        if value.startswith("@"):
            return cls(b"\0" + value[1:].encode())
        return cls(value)

    def notify(self, **fields: str) -> None:
        """Send one datagram of ``KEY=value`` lines (``notify(READY="1", STATUS="...")``): at
        once, without waiting for the manager (a full queue drops it, reported)."""
        if self.address is None:
            return
        message = "".join(f"{key}={value}\n" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._complained:
                self._complained = True
                where = self.address if isinstance(self.address, str) \
                    else "@" + self.address[1:].decode(errors="replace")
                print(f"unitsync: cannot notify the service manager on {where}: "
                      f"{exc.strerror or exc}", file=sys.stderr)

"""The Unix socket: binding it safely, refusing other users, connecting under load."""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .._errors import UnitsyncError
from .._paths import default_socket_path

__all__ = [
    "AddressInUse", "BACKLOG", "Listener", "adopt_listener", "bind_listener", "connect_socket",
    "peer_uid", "prepare_directory", "prepare_socket",
]

#: listen() backlog: large, so 1,000 clients connecting at once are queued, not refused.
BACKLOG: Final = 4096


class AddressInUse(UnitsyncError, OSError):
    """A live coordinator already answers on this socket."""

    code = "unitsync.address-in-use"

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"a unitsync coordinator is already serving on {path}")


def _is_our_own_directory(directory: Path) -> bool:
    """The default directory, or one named ``unitsync``: ours alone, 0700."""
    return directory.name == "unitsync" or directory == default_socket_path().parent


def prepare_directory(directory: Path) -> None:
    """Create ``directory`` if missing and refuse it if someone else could swap our socket in it.

    Our own directory (:func:`_is_our_own_directory`) is created 0700, must be a plain directory
    owned by us (a symlink is refused: anyone can plant one at ``/tmp/unitsync-<uid>`` first),
    and is narrowed to 0700 if it has wider rights. Any other directory (an explicit
    ``--socket``) must belong to us or root, and so must a symlink to it (``/var/run`` → ``/run``
    is fine; a link another user planted is not). Raises :class:`UnitsyncError` naming the
    directory and what is wrong.
    """
    own = _is_our_own_directory(directory)
    trusted = {os.getuid()} if own else {os.getuid(), 0}
    try:
        directory.mkdir(mode=0o700 if own else 0o777, parents=True)
    except FileExistsError:
        pass
    link = os.lstat(directory)
    if stat.S_ISLNK(link.st_mode) and (own or link.st_uid not in trusted):
        raise UnitsyncError(
            f"refusing socket directory {directory}: it is a symlink (to {os.readlink(directory)}, "
            f"owned by uid {link.st_uid})"
        )
    info = os.stat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise UnitsyncError(f"refusing socket directory {directory}: not a directory")
    if info.st_uid not in trusted:
        raise UnitsyncError(
            f"refusing socket directory {directory}: owned by uid {info.st_uid}, not {os.getuid()}"
        )
    if own and stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(directory, 0o700)


@dataclass(frozen=True, slots=True)
class Listener:
    """A bound, listening, non-blocking socket and its file. ``inode``: the file we made (removed
    on close); ``None`` for a socket handed to us (socket activation: its file belongs to the
    service manager, which goes on listening on it after we exit)."""

    sock: socket.socket
    path: Path
    inode: int | None

    def close(self) -> None:
        """Close the socket and remove its file if we made it, unless another server has
        replaced it since."""
        self.sock.close()
        if self.inode is None:
            return
        try:
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass


def bind_listener(path: Path) -> Listener:
    """A non-blocking listening socket at ``path`` (socket 0600; its directory checked, and
    0700 when it is our own: see :func:`prepare_directory`).

    A stale socket file (nothing answers) is replaced; a live server → :class:`AddressInUse`.
    """
    prepare_directory(path.parent)
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise UnitsyncError(f"refusing to replace {path}: it exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except OSError:
            os.unlink(path)  # stale: the server that made it is gone
        else:
            raise AddressInUse(str(path))
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)  # the socket file is born 0600: no window with wider rights
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        return Listener(sock, path, os.lstat(path).st_ino)
    except BaseException:
        sock.close()
        raise


def adopt_listener(sock: socket.socket, path: Path | None = None) -> Listener:
    """A :class:`Listener` for a socket this process was handed already bound and listening
    (systemd socket activation: ``ListenStream=``, fd 3), checked as :func:`bind_listener` would
    have made it: a Unix stream socket, listening, bound to a file (not an abstract name) that is
    a socket owned by us that group and others cannot connect to (no write bit for them;
    ``SocketMode=0600``, systemd's default is 0666), in a directory
    :func:`prepare_directory` accepts (``DirectoryMode=0700`` for our own). ``path``, if given,
    must be where it is bound. Raises :class:`UnitsyncError` saying what is wrong; the socket is
    left open then (the caller owns it until this returns). Made non-blocking; connections
    already queued in its backlog are served like any other. Closing the listener closes the
    socket but leaves its file (the service manager's)."""
    what = f"the socket passed in (fd {sock.fileno()})"
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise UnitsyncError(
            f"refusing {what}: not a Unix stream socket ({sock.family.name}, {sock.type.name})"
        )
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise UnitsyncError(f"refusing {what}: it is not listening")
    name = sock.getsockname()
    if not isinstance(name, str) or not name or name.startswith("\0"):
        raise UnitsyncError(
            f"refusing {what}: not bound to a file (address {name!r}); clients find the "
            "coordinator by its path"
        )
    bound = Path(name)
    if path is not None and Path(os.path.abspath(path)) != Path(os.path.abspath(bound)):
        raise UnitsyncError(f"refusing {what}: it is bound to {bound}, not {path}")
    prepare_directory(bound.parent)
    try:
        info = os.lstat(bound)
    except FileNotFoundError:
        raise UnitsyncError(f"refusing {what}: its file {bound} no longer exists") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise UnitsyncError(f"refusing {what}: {bound} is not a socket")
    if info.st_uid != os.getuid():
        raise UnitsyncError(
            f"refusing {what}: {bound} is owned by uid {info.st_uid}, not {os.getuid()}"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):  # connecting to it takes write permission
        raise UnitsyncError(
            f"refusing {what}: {bound} has mode {stat.S_IMODE(info.st_mode):04o}, others may "
            "connect (SocketMode=0600)"
        )
    sock.setblocking(False)
    return Listener(sock, bound, None)


def prepare_socket(path: Path) -> None:
    """Before a server opens its files next to its socket (the journal, say): raise
    :class:`AddressInUse` if a live coordinator answers at ``path``, else create and check the
    socket's directory (:func:`prepare_directory`). Blocking; binding comes later
    (:func:`bind_listener`), so "already serving" is said before "journal in use"."""
    try:
        probe = connect_socket(path, timeout=1.0)
    except OSError:
        pass  # nobody there (or a stale file): go on
    else:
        probe.close()
        raise AddressInUse(str(path))
    prepare_directory(path.parent)


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def connect_socket(path: Path, *, timeout: float = 5.0) -> socket.socket:
    """A connected, non-blocking Unix socket to ``path``.

    When the server's listen backlog is full, a Unix connect fails with EAGAIN at once (it does
    not wait, unlike TCP), and asyncio/Trio would hand back an unconnected socket (ARCHITECTURE §4):
    so EAGAIN is retried with a short, growing backoff (1 ms to 50 ms) until ``timeout``, then
    raised as ``TimeoutError``. A missing socket file raises ``FileNotFoundError``, nobody
    listening ``ConnectionRefusedError``; both at once. (The backoff blocks the calling thread:
    the CLI's, or a ``connect()``'s own KJ thread.)
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(str(path))
            sock.setblocking(False)
            return sock
        except BlockingIOError:  # EAGAIN: the backlog is full
            sock.close()
            if time.monotonic() + delay > deadline:
                raise TimeoutError(
                    errno.ETIMEDOUT, f"listen backlog full for {timeout:g} s"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        except BaseException:
            sock.close()
            raise

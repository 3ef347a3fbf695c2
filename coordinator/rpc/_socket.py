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

__all__ = ["AddressInUse", "BACKLOG", "Listener", "bind_listener", "connect_socket", "peer_uid"]

#: listen() backlog: large, so 1,000 clients connecting at once are queued, not refused.
BACKLOG: Final = 4096


class AddressInUse(UnitsyncError, OSError):
    """A live coordinator already answers on this socket."""

    code = "unitsync.address-in-use"

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"a unitsync coordinator is already serving on {path}")


def _prepare_directory(directory: Path) -> None:
    """Create ``directory`` 0700 if missing; refuse one that is a symlink, not a directory, or
    owned by another user (someone could swap our socket)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnitsyncError(f"refusing socket directory {directory}: not a plain directory")
    if info.st_uid != os.getuid():
        raise UnitsyncError(
            f"refusing socket directory {directory}: owned by uid {info.st_uid}, not {os.getuid()}"
        )


@dataclass(frozen=True, slots=True)
class Listener:
    """A bound, listening, non-blocking socket and the file it made."""

    sock: socket.socket
    path: Path
    inode: int

    def close(self) -> None:
        """Close the socket and remove its file, unless another server has replaced it since."""
        self.sock.close()
        try:
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass


def bind_listener(path: Path) -> Listener:
    """A non-blocking listening socket at ``path`` (socket 0600, directory 0700).

    A stale socket file (nothing answers) is replaced; a live server → :class:`AddressInUse`.
    """
    directory = path.parent
    if directory.name == "unitsync" or str(directory).startswith("/tmp/unitsync-"):
        _prepare_directory(directory)  # our own directory: create it 0700 and check it
    else:
        directory.mkdir(parents=True, exist_ok=True)
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


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def connect_socket(path: Path, *, timeout: float = 5.0) -> socket.socket:
    """A connected, non-blocking Unix socket to ``path``.

    When the server's listen backlog is full, a Unix connect fails with EAGAIN at once (it does
    not wait, unlike TCP), and asyncio/Trio would hand back an unconnected socket (DESIGN §7):
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

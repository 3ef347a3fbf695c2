"""A coordinator on first use: a client command that finds none on its socket starts one.

``ensure_coordinator(path)`` is the one place that starts ``unitsync serve`` for a client. It
takes a lock next to the socket (``flock`` on ``SOCKET_DIR/NAME.lock``, the directory made and
checked as ``serve`` does: :func:`prepare_directory`), so that of 50 first calls racing, one
starts the coordinator and the others, each in turn holding the lock, find it answering. The
holder looks again whether a coordinator answers (:func:`prepare_socket`), starts one if not —
detached: a new session, stdin from ``/dev/null``, stdout and stderr appended to
``SOCKET_DIR/NAME.log`` (0600), ``--idle-exit 1h``, its journal next to the socket as any
``serve``'s — and waits until it answers (at most :data:`STARTUP_TIMEOUT`) before releasing the
lock. ``unitsync up``, which runs a coordinator in its own process when none answers, takes the
same lock (:func:`start_lock`): whichever comes first brings one up, the other uses it.

Blocking code, run before the client's event loop; no Trio.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from ._connect import UNREACHABLE, CommandError

__all__ = [
    "AUTOSTART_IDLE_EXIT", "ENV_AUTOSTART", "STARTUP_TIMEOUT", "autostart_enabled",
    "ensure_coordinator", "lock_path", "log_path", "start_lock",
]

#: ``UNITSYNC_AUTOSTART=0`` (or ``false``, ``no``, ``off``): a command never starts a
#: coordinator (no coordinator is exit 69 at once, as before).
ENV_AUTOSTART: Final = "UNITSYNC_AUTOSTART"

#: ``serve --idle-exit`` of a coordinator started on first use.
AUTOSTART_IDLE_EXIT: Final = "1h"

#: Seconds the starting command waits for the new coordinator to answer.
STARTUP_TIMEOUT: Final = 10.0


def autostart_enabled(no_autostart: bool) -> bool:
    """False with ``--no-autostart`` or ``UNITSYNC_AUTOSTART=0``."""
    setting = os.environ.get(ENV_AUTOSTART, "").strip().lower()
    return not no_autostart and setting not in {"0", "false", "no", "off"}


def lock_path(path: Path) -> Path:
    """``SOCKET_DIR/unitsync.lock`` for ``SOCKET_DIR/unitsync.sock``."""
    return path.with_suffix(".lock")


def log_path(path: Path) -> Path:
    """``SOCKET_DIR/unitsync.log``: the output of a coordinator started on first use."""
    return path.with_suffix(".log")


@contextlib.contextmanager
def start_lock(path: Path) -> Iterator[None]:
    """Hold the lock that serialises bringing up a coordinator on ``path`` (its directory is
    made and checked first, as for ``serve``: UnitsyncError if it is not ours). Waits as long
    as another holder takes, which is bounded by its own :data:`STARTUP_TIMEOUT`. The lock is
    released when the block ends, or when the process dies."""
    from coordinator.rpc import prepare_directory

    prepare_directory(path.parent)
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure_coordinator(path: Path) -> bool:
    """Make sure a coordinator answers on ``path``: True if this call started one, False if
    one answered meanwhile (started by another command, an ``up``, an explicit ``serve``).
    Raises :class:`CommandError` (exit 69) naming the log when the one it started did not
    answer within :data:`STARTUP_TIMEOUT` or exited first; UnitsyncError if the socket's
    directory is refused."""
    from coordinator.rpc import AddressInUse, prepare_socket

    path = path.absolute()  # the coordinator runs in /
    with start_lock(path):
        try:
            prepare_socket(path)  # a coordinator answers: started while we waited for the lock
        except AddressInUse:
            return False
        process = _spawn(path)
        return _wait_until_serving(path, process)


def _spawn(path: Path) -> subprocess.Popen[bytes]:
    """``unitsync serve`` on ``path``, detached, its output appended to the log."""
    log = log_path(path)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        command = " ".join(["unitsync", *sys.argv[1:]])[:200]
        os.write(fd, f"unitsync: {when} starting a coordinator for pid {os.getpid()} "
                     f"({command})\n".encode())
        # the same code as this command (not whichever `unitsync` PATH finds first)
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--socket", str(path),
             "--idle-exit", AUTOSTART_IDLE_EXIT],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, cwd="/", start_new_session=True,
        )
    finally:
        os.close(fd)


def _wait_until_serving(path: Path, process: subprocess.Popen[bytes]) -> bool:
    """Wait until ``path`` answers: True if ``process`` answers, False if another server
    does (an explicit ``serve`` that won the race: ours then exits by itself, "already
    serving"; the peer's pid tells which). The wait for the process's exit is the backoff
    between two looks at the socket (no event tells when a socket starts to answer)."""
    from coordinator.rpc import connect_socket

    deadline = time.monotonic() + STARTUP_TIMEOUT
    delay = 0.005
    while True:
        try:
            probe = connect_socket(path, timeout=1.0)
        except OSError:
            pass
        else:
            with probe:
                server = _peer_pid(probe)
            _detach(process)
            return server == process.pid
        if process.poll() is not None:
            raise CommandError(
                f"the coordinator started on {path} exited with code {process.returncode} "
                f"before it served; see its log: {log_path(path)}", UNREACHABLE)
        if time.monotonic() >= deadline:
            _detach(process)
            raise CommandError(
                f"the coordinator started on {path} (pid {process.pid}) did not answer within "
                f"{STARTUP_TIMEOUT:g}s; see its log: {log_path(path)}", UNREACHABLE)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(min(delay, max(deadline - time.monotonic(), 0.001)))
        delay = min(delay * 2, 0.05)


def _peer_pid(sock: socket.socket) -> int:
    """The pid of the server at the other end of ``sock`` (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[0])


#: Coordinators this process started and left running: kept referenced, so that no Popen is
#: collected while its process runs (it would warn "subprocess N is still running"). They
#: outlive this process (a new session: init adopts them).
_DETACHED: list[subprocess.Popen[bytes]] = []


def _detach(process: subprocess.Popen[bytes]) -> None:
    _DETACHED.append(process)

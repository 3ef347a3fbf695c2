"""``unitsync serve`` under a service manager, without one: socket activation by fd passing
(the listening socket as fd 3, ``LISTEN_FDS``/``LISTEN_PID`` as systemd sets them) and
readiness on ``$NOTIFY_SOCKET`` (a datagram socket the test binds and reads)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from cli._connect import CommandError
from cli._systemd import Notifier, inherited_socket
from coordinator import UnitsyncError, __version__, connect
from coordinator.rpc import adopt_listener

from .cli_support import ERROR, UNITSYNC, env_for, read_all, read_line, start_serve
from .waits import WAIT

#: What systemd does between fork and exec, in sh: the socket (given as stdin) becomes fd 3,
#: LISTEN_PID is the pid that runs unitsync (exec keeps it), LISTEN_FDS comes from the env.
ACTIVATE = 'exec 3<&0 0</dev/null; export LISTEN_PID=$$; exec "$@"'

#: A client that speaks Cap'n Proto over a connection it is handed as an fd (connected before
#: any server ran): bootstrap, ping, print the version.
QUEUED_CLIENT = """
import asyncio, socket, sys
import capnp
from coordinator.rpc._schema import schema

async def main():
    sock = socket.socket(fileno=int(sys.argv[1]))
    stream = await capnp.AsyncIoStream.create_unix_connection(sock=sock)
    coord = capnp.TwoPartyClient(stream).bootstrap().cast_as(schema().Coordinator)
    print((await coord.ping()).version, flush=True)

asyncio.run(capnp.run(main()))
"""


def listening(path: Path, *, mode: int = 0o600, backlog: int = 16) -> socket.socket:
    """A Unix stream socket bound at ``path`` with ``mode`` and listening, as systemd makes it
    for ``ListenStream=PATH`` / ``SocketMode=``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, mode)
    sock.listen(backlog)
    return sock


async def activated(listener: socket.socket, env: dict[str, str], *options: str) -> trio.Process:
    """``unitsync serve OPTIONS`` started as systemd starts it on a socket unit's first
    connection: ``listener`` as fd 3, ``LISTEN_FDS=1``, ``LISTEN_PID`` its own pid."""
    return await trio.lowlevel.open_process(
        ["sh", "-c", ACTIVATE, "sh", *UNITSYNC, "serve", *options],
        stdin=listener.fileno(), stderr=subprocess.PIPE, env={**env, "LISTEN_FDS": "1"},
    )


def datagram(address: str | bytes) -> trio.socket.SocketType:
    """A Unix datagram socket bound at ``address``, for Trio to read (a service manager's end)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    return trio.socket.from_stdlib_socket(sock)


@pytest.fixture
def notify_socket() -> Iterator[tuple[trio.socket.SocketType, str]]:
    """A datagram socket in the abstract namespace, and its name as ``NOTIFY_SOCKET`` says it."""
    name = f"unitsync-test-notify-{os.getpid()}-{id(object())}"
    with datagram("\0" + name) as sock:
        yield sock, "@" + name


async def test_socket_activation_serves_a_connection_made_before_serve_started(
    sock_dir: Path, notify_socket: tuple[trio.socket.SocketType, str]
) -> None:
    """The point of socket activation: a client that connected while nothing served (queued in
    the backlog of the manager's socket) is served once `serve` starts on that socket. The
    journal goes next to it, READY=1 is said once clients can connect, STOPPING=1 on SIGTERM,
    and the socket file — the manager's — stays for the next activation."""
    notify, notify_name = notify_socket
    path = sock_dir / "unitsync.sock"
    env = {**env_for(path), "NOTIFY_SOCKET": notify_name}
    env.pop("UNITSYNC_SOCKET")  # the socket comes from the manager
    listener = listening(path)
    early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    early.connect(str(path))  # returns at once: queued in the backlog, nothing serves yet
    with trio.fail_after(WAIT * 3):
        client = await trio.lowlevel.open_process(
            [sys.executable, "-c", QUEUED_CLIENT, str(early.fileno())],
            pass_fds=(early.fileno(),), stdout=subprocess.PIPE,
        )
        early.close()
        process = await activated(listener, env)
        listener.close()  # serve has its own copy, as systemd keeps its own
        try:
            assert process.stderr is not None and client.stdout is not None
            assert await read_line(process.stderr) == (
                f"unitsync: {__version__} serving on {path} "
                f"(state: {sock_dir / 'unitsync.state'})\n"
            )
            assert await notify.recv(4096) == f"READY=1\nSTATUS=serving on {path}\n".encode()
            # the early client: bootstrapped and answered over its queued connection
            assert await read_all(client.stdout) == f"{__version__}\n"
            assert await client.wait() == 0
            # and clients that come now
            async with connect(path) as coord:
                await coord.unit("claude").want("git")
                assert (await coord.unit("claude").info()).dependencies[0].depends_on == "git"
            process.send_signal(signal.SIGTERM)
            assert await notify.recv(4096) == b"STOPPING=1\nSTATUS=SIGTERM, stopping\n"
            assert await process.wait() == 0
            assert await read_all(process.stderr) == "unitsync: SIGTERM, stopping\n"
        finally:
            for child in (process, client):
                child.kill()
                with trio.CancelScope(shield=True):
                    await child.wait()
    assert path.is_socket()  # left for the manager, unlike a socket serve bound itself
    assert list(sock_dir.glob("unitsync.state*"))  # the journal, next to the socket


async def test_an_activated_socket_that_is_not_private_is_refused(sock_dir: Path) -> None:
    """The permission checks hold for a socket handed over: a socket file others may connect
    to (SocketMode=0666) is refused with the reason, exit 1, before anything is served."""
    path = sock_dir / "unitsync.sock"
    env = env_for(path)
    listener = listening(path, mode=0o666)
    with trio.fail_after(WAIT * 2):
        process = await activated(listener, env)
        listener.close()
        try:
            assert process.stderr is not None
            said = await read_all(process.stderr)
            assert await process.wait() == ERROR
        finally:
            process.kill()
    assert said == (
        f"unitsync: cannot serve: refusing the socket passed in (fd 3): {path} has mode 0666, "
        "others may connect (SocketMode=0600)\n"
    )


async def test_serve_says_ready_and_stopping_on_a_notify_socket_path(sock_dir: Path) -> None:
    """sd_notify with NOTIFY_SOCKET a path (not abstract), on a socket serve binds itself: READY=1
    once it serves (a client connects at once), STOPPING=1 on SIGTERM, exit 0."""
    path = sock_dir / "unitsync.sock"
    notify_path = sock_dir / "notify"
    notify = datagram(str(notify_path))
    env = {**env_for(path), "NOTIFY_SOCKET": str(notify_path)}
    with notify, trio.fail_after(WAIT * 2):
        process = await start_serve(path, env, "--no-state")
        try:
            assert await notify.recv(4096) == f"READY=1\nSTATUS=serving on {path}\n".encode()
            async with connect(path) as coord:
                assert await coord.ping() == __version__
            process.send_signal(signal.SIGTERM)
            assert await notify.recv(4096) == b"STOPPING=1\nSTATUS=SIGTERM, stopping\n"
            assert await process.wait() == 0
        finally:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


# --- the checks, in this process ------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o644])  # 0644: nobody else may connect (no w bit)
def test_adopt_listener_takes_a_private_listening_socket(sock_dir: Path, mode: int) -> None:
    path = sock_dir / "unitsync.sock"
    with listening(path, mode=mode) as sock:
        listener = adopt_listener(sock, path)
        assert (listener.path, listener.inode) == (path, None)
        assert not sock.getblocking()
        listener.close()
    assert path.is_socket()  # closing an adopted listener leaves the manager's file


@pytest.mark.parametrize("case", ["datagram", "not listening", "abstract", "elsewhere",
                                  "group-writable", "symlinked directory"])
def test_adopt_listener_refuses(sock_dir: Path, case: str) -> None:
    """Each check `bind_listener` makes by construction, made on a socket handed over."""
    path = sock_dir / "unitsync.sock"
    expected = {
        "datagram": "not a Unix stream socket",
        "not listening": "it is not listening",
        "abstract": "not bound to a file",
        "elsewhere": f"it is bound to {path}, not {sock_dir / 'other.sock'}",
        "group-writable": f"{path} has mode 0660, others may connect",
        "symlinked directory": "refusing socket directory .*: it is a symlink",
    }[case]
    if case == "symlinked directory":  # our own directory (named unitsync) may be no symlink
        (sock_dir / "unitsync").symlink_to(sock_dir)
        path = sock_dir / "unitsync" / "unitsync.sock"
    if case in ("datagram", "not listening"):
        sock = socket.socket(socket.AF_UNIX,
                             socket.SOCK_DGRAM if case == "datagram" else socket.SOCK_STREAM)
        sock.bind(str(path))
    elif case == "abstract":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(f"\0unitsync-test-{os.getpid()}")
        sock.listen(1)
    else:
        sock = listening(path, mode=0o660 if case == "group-writable" else 0o600)
    with sock, pytest.raises(UnitsyncError, match=expected):
        adopt_listener(sock, sock_dir / "other.sock" if case == "elsewhere" else None)


def test_inherited_socket_ignores_and_removes_variables_for_another_process() -> None:
    environ = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x",
               "HOME": "/home/x"}
    assert inherited_socket(environ) is None
    assert environ == {"HOME": "/home/x"}  # a process serve starts inherits none of them
    assert inherited_socket({}) is None


def test_inherited_socket_takes_exactly_one() -> None:
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}
    with pytest.raises(CommandError, match="passed 2 sockets"):
        inherited_socket(environ)
    assert environ == {}


def test_notifier_reads_and_removes_notify_socket() -> None:
    environ = {"NOTIFY_SOCKET": "@abstract"}
    assert Notifier.from_environment(environ).address == b"\0abstract"
    assert environ == {}
    assert Notifier.from_environment({"NOTIFY_SOCKET": "/run/x"}).address == "/run/x"
    quiet = Notifier.from_environment({})
    assert quiet.address is None
    quiet.notify(READY="1")  # nothing to tell, nothing sent

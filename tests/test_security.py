"""Security of the socket (issue 6, item 4), with real processes and real sockets.

- A client running as another uid reaches the socket but is refused by the server's
  SO_PEERCRED check, while the server keeps serving its own user. (The tests run as root here;
  the other uid is ``nobody``, reached with ``setpriv`` or ``runuser``. Skipped, saying why, when
  that is impossible.)
- ``unitsync serve`` refuses a socket directory that is a symlink planted there or owned by
  another user — the default directory and an explicit ``--socket`` — and changes nothing.
- The real console script makes the default directory 0700 and the socket 0600.

``tests/test_rpc.py`` covers the in-process ``serve``: 0600/0700 for a ``…/unitsync/`` path, a
stale socket replaced, a live one refused, a plain file never replaced.
"""

from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from coordinator import connect

from .cli_support import (
    ERROR,
    OK,
    UNITSYNC,
    UNREACHABLE,
    read_all,
    read_line,
    serving_line,
)
from .waits import WAIT

#: The other user: a client runs as this uid; a planted directory or symlink belongs to it.
OTHER_USER = "nobody"

#: A raw client: connects (the socket's permissions let it), then waits for the server's first
#: byte; a server that refuses the uid closes at once, before Cap'n Proto says anything.
RAW_CLIENT = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(5)
sock.connect(sys.argv[1])
print("connected", flush=True)
try:
    print("closed" if sock.recv(1) == b"" else "answered")
except ConnectionResetError:
    print("closed")
except TimeoutError:
    print("left open")
"""


def _other_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(OTHER_USER)
    except KeyError:
        pytest.skip(f"no user {OTHER_USER!r} on this machine to play another uid")
    return entry.pw_uid, entry.pw_gid


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"not running as root: cannot {what}")


@functools.cache
def _as_other_user() -> list[str] | str:
    """The command prefix that runs a command as :data:`OTHER_USER` with no supplementary
    groups, or why that is impossible here."""
    if os.geteuid() != 0:
        return "not running as root: cannot run a client as another uid"
    try:
        entry = pwd.getpwnam(OTHER_USER)
    except KeyError:
        return f"no user {OTHER_USER!r} to run a client as"
    if shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    elif shutil.which("runuser"):
        prefix = ["runuser", "-u", OTHER_USER, "--"]
    else:
        return "neither setpriv nor runuser is installed: cannot run a client as another uid"
    return prefix


def _cannot_run(prefix: list[str], command: list[str]) -> str | None:
    """Why the other user cannot run ``command`` (None if it can)."""
    probe = subprocess.run(prefix + command, cwd="/", capture_output=True, timeout=30, check=False)
    if probe.returncode == 0:
        return None
    why = probe.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return f"{OTHER_USER} cannot run {command[0]} (exit {probe.returncode}: {why[0]})"


@functools.cache
def _venv_unusable() -> str | None:
    """Why the other user cannot run our interpreter with capnp and the console script (e.g.
    the venv lives under a directory it may not enter, as in CI), or None."""
    prefix = _as_other_user()
    if isinstance(prefix, str):
        return prefix
    return (_cannot_run(prefix, [sys.executable, "-c", "import coordinator.rpc._server"])
            or _cannot_run(prefix, UNITSYNC + ["--version"]))


def _plain_python(prefix: list[str]) -> str | None:
    """An interpreter the other user can run (ours, else the system's): the raw client needs
    only the standard library."""
    for python in (sys.executable, shutil.which("python3", path="/usr/bin:/bin")):
        if python and _cannot_run(prefix, [python, "-c", "pass"]) is None:
            return python
    return None


@pytest.fixture
def as_other_user() -> list[str]:
    prefix = _as_other_user()
    if isinstance(prefix, str):
        pytest.skip(prefix)
    return prefix


@pytest.fixture
def venv_as_other_user(as_other_user: list[str]) -> list[str]:
    """As :func:`as_other_user`, where that user can also run our venv and console script."""
    why = _venv_unusable()
    if why is not None:
        pytest.skip(why)
    return as_other_user


def _env(**extra: str) -> dict[str, str]:
    """This environment without any socket setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("UNITSYNC_SOCKET", "XDG_RUNTIME_DIR")}
    return {**env, **extra}


class ServeProcess:
    """A running ``unitsync serve``; ``stderr`` is everything it printed, once it has exited."""

    def __init__(self, process: trio.Process, path: Path) -> None:
        self.process = process
        self.path = path
        self.stderr = ""


@asynccontextmanager
async def serve_process(env: dict[str, str], **options: object) -> AsyncIterator[ServeProcess]:
    """``unitsync serve`` until the block ends; then SIGTERM, which must make it exit 0."""
    with trio.fail_after(WAIT * 2):
        process = await trio.lowlevel.open_process(
            UNITSYNC + ["serve"], env=env, stderr=subprocess.PIPE, **options
        )
    try:
        assert process.stderr is not None
        with trio.fail_after(WAIT * 2):
            line = await read_line(process.stderr)
        said = re.fullmatch(r"unitsync: \S+ serving on (.+) \(state: .+\)\n", line)
        assert said is not None, line
        path = Path(said[1])
        assert line == serving_line(path), line
        served = ServeProcess(process, path)
        yield served
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            served.stderr = line + await read_all(process.stderr)
            assert await process.wait() == 0, served.stderr
    finally:
        process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(WAIT):
            await process.wait()


async def run(command: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``command`` to completion (bounded by :data:`WAIT`, killed beyond it)."""
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            command, env=env, cwd="/", capture_stdout=True, capture_stderr=True, check=False
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


# --- a client of another uid ----------------------------------------------------------------


async def test_a_client_of_another_uid_is_refused(sock_dir: Path, as_other_user: list[str]) -> None:
    uid, _gid = _other_ids()
    path = sock_dir / "unitsync.sock"
    env = _env(UNITSYNC_SOCKET=str(path))
    sock_dir.chmod(0o711)  # the other user may pass through to the socket...
    async with serve_process(env) as served:
        path.chmod(0o666)  # ...and connect to it: only the uid check is left to refuse it
        assert await run(UNITSYNC + ["ping"], env) == (OK, "Success\n", "")  # control: our uid

        # the other uid connects, and is hung up on before a single byte
        python = _plain_python(as_other_user)
        if python is None:
            pytest.skip(f"{OTHER_USER} can run no Python interpreter here")
        raw = await run(as_other_user + [python, "-c", RAW_CLIENT, str(path)], env)
        assert raw == (0, "connected\nclosed\n", ""), raw
        refusals = 1
        # the CLI as the other uid gets no answer: "unreachable", nothing on stdout (only
        # where that user can run our venv; in CI it cannot, and the raw client must do)
        if _venv_unusable() is None:
            code, out, err = await run(
                as_other_user + UNITSYNC + ["ping", "--socket", str(path)], env
            )
            assert (code, out) == (UNREACHABLE, ""), (code, out, err)
            assert err.startswith("unitsync: "), err
            refusals += 1

        # our own clients are still served, and the coordinator's state is intact
        assert (await run(UNITSYNC + ["want", "claude", "git"], env))[0] == OK
        with trio.fail_after(WAIT):
            async with connect(path) as client:
                assert (await client.unit("claude").info()).dependencies[0].depends_on == "git"
        assert (await run(UNITSYNC + ["ping"], env))[0] == OK

    # the server refused exactly the two connections of the other uid, and said so
    lines = served.stderr.splitlines()
    refused = [line for line in lines if "refused" in line]
    assert refused == [f"refused a connection from uid {uid}"] * refusals, served.stderr
    assert lines == [serving_line(path).rstrip("\n"), *refused, "unitsync: SIGTERM, stopping"]


# --- serve refuses a directory it cannot trust --------------------------------------------


def _plant_symlink(run_dir: Path, target: Path) -> Path:
    """``$XDG_RUNTIME_DIR/unitsync`` → ``target``: the default directory is a symlink."""
    os.symlink(target, run_dir / "unitsync")
    return run_dir / "unitsync"


def _other_users_dir(run_dir: Path, target: Path) -> Path:
    """``$XDG_RUNTIME_DIR/unitsync`` is a directory of another user."""
    _need_root("give a directory to another user")
    uid, gid = _other_ids()
    (run_dir / "unitsync").mkdir(mode=0o700)
    os.chown(run_dir / "unitsync", uid, gid)
    return run_dir / "unitsync"


@pytest.mark.parametrize(
    ("plant", "why"),
    [(_plant_symlink, "symlink"), (_other_users_dir, "owned by uid")],
    ids=["symlink", "other-owner"],
)
async def test_serve_refuses_an_untrusted_default_directory(
    sock_dir: Path, plant: Callable[[Path, Path], Path], why: str
) -> None:
    run_dir = sock_dir / "run"
    run_dir.mkdir(mode=0o700)
    target = sock_dir / "target"
    target.mkdir(mode=0o700)
    (target / "keep").write_text("untouched")
    directory = plant(run_dir, target)
    before = sorted(os.listdir(directory))

    code, out, err = await run(UNITSYNC + ["serve"], _env(XDG_RUNTIME_DIR=str(run_dir)))
    assert (code, out) == (ERROR, ""), err
    assert err.startswith(f"unitsync: cannot serve: refusing socket directory {directory}: "), err
    assert why in err
    assert sorted(os.listdir(directory)) == before  # no socket in it, nothing replaced
    assert (target / "keep").read_text() == "untouched"
    assert os.path.islink(directory) == (plant is _plant_symlink)


async def test_serve_refuses_a_symlink_planted_at_the_tmp_default(
    sock_dir: Path, venv_as_other_user: list[str]
) -> None:
    """Without ``$XDG_RUNTIME_DIR`` the default is ``/tmp/unitsync-<uid>``, a name anyone can
    take first. Here root plants ``/tmp/unitsync-<nobody>`` as a symlink to a directory that
    even belongs to nobody; nobody's ``serve`` must still refuse it."""
    uid, gid = _other_ids()
    planted = Path(f"/tmp/unitsync-{uid}")
    target = sock_dir / "target"
    target.mkdir(mode=0o700)
    os.chown(target, uid, gid)
    sock_dir.chmod(0o711)
    try:
        os.symlink(target, planted)
    except FileExistsError:
        pytest.skip(f"{planted} exists already: not touching it")
    try:
        code, out, err = await run(venv_as_other_user + UNITSYNC + ["serve"], _env())
        assert (code, out) == (ERROR, ""), err
        assert err.startswith(f"unitsync: cannot serve: refusing socket directory {planted}: "), err
        assert "symlink" in err
        assert os.listdir(target) == []
        assert os.readlink(planted) == str(target)
    finally:
        os.unlink(planted)


def _explicit_in_other_users_dir(sock_dir: Path) -> Path:
    _need_root("give a directory to another user")
    uid, gid = _other_ids()
    theirs = sock_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, uid, gid)
    return theirs


def _explicit_through_planted_symlink(sock_dir: Path) -> Path:
    _need_root("plant a symlink as another user")
    uid, gid = _other_ids()
    target = sock_dir / "target"
    target.mkdir()
    link = sock_dir / "link"
    os.symlink(target, link)
    os.lchown(link, uid, gid)  # the link is theirs, though it points at our directory
    return link


@pytest.mark.parametrize(
    ("plant", "why"),
    [
        (_explicit_in_other_users_dir, "owned by uid"),
        (_explicit_through_planted_symlink, "symlink"),
    ],
    ids=["other-owner", "planted-symlink"],
)
async def test_serve_refuses_an_untrusted_socket_directory_given_explicitly(
    sock_dir: Path, plant: Callable[[Path], Path], why: str
) -> None:
    directory = plant(sock_dir)
    path = directory / "unitsync.sock"
    code, out, err = await run(UNITSYNC + ["serve", "--socket", str(path)], _env())
    assert (code, out) == (ERROR, ""), err
    assert err.startswith(f"unitsync: cannot serve: refusing socket directory {directory}: "), err
    assert why in err
    assert os.listdir(directory) == []


async def test_serve_accepts_a_symlinked_directory_of_its_own(sock_dir: Path) -> None:
    """An explicit ``--socket`` through a symlink we (or root) made is fine: ``/var/run`` is a
    symlink to ``/run`` on most systems."""
    target = sock_dir / "target"
    target.mkdir()
    os.symlink(target, sock_dir / "link")
    path = sock_dir / "link" / "unitsync.sock"
    env = _env(UNITSYNC_SOCKET=str(path))
    async with serve_process(env) as served:
        assert served.path == path
        assert stat.S_ISSOCK(os.lstat(target / "unitsync.sock").st_mode)
        assert (await run(UNITSYNC + ["ping"], env))[0] == OK


# --- the modes a real `unitsync serve` leaves -----------------------------------------------


@pytest.mark.parametrize("existing", [None, 0o755], ids=["created", "existing-0755"])
async def test_console_serve_makes_the_default_directory_0700_and_the_socket_0600(
    sock_dir: Path, existing: int | None
) -> None:
    """Under a umask that would allow everything, with the default path (via
    ``$XDG_RUNTIME_DIR``); a default directory already there with wider rights is narrowed."""
    run_dir = sock_dir / "run"
    run_dir.mkdir(mode=0o700)
    directory = run_dir / "unitsync"
    if existing is not None:
        directory.mkdir()
        directory.chmod(existing)
    env = _env(XDG_RUNTIME_DIR=str(run_dir))
    async with serve_process(env, umask=0) as served:
        assert served.path == directory / "unitsync.sock"
        assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o700
        assert stat.S_ISSOCK(os.lstat(served.path).st_mode)
        assert stat.S_IMODE(os.lstat(served.path).st_mode) == 0o600
        assert (await run(UNITSYNC + ["ping"], env))[0] == OK  # the client finds it the same way
    assert not os.path.lexists(served.path)

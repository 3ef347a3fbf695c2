"""Running the real ``unitsync`` console script in subprocesses, against a real ``unitsync serve``.

``served`` (a fixture in conftest) is one ``unitsync serve`` for the whole session, shared by
tests that use unit names of their own; ``fresh_served`` starts one on a fresh socket for one
test. Both yield a :class:`Served`: ``await served.run("start", "claude")`` runs one command with
that socket in its environment and returns the finished process (stdout/stderr as ``str``).

A test whose subject is one command (``run``, ``wait``, ``why``...) sets the scene and looks at
the outcome through ``served.client()``: the library's own RPC client (``connect``) over the
same real socket, which costs a round trip instead of a console script's start-up (~0.15 s of
CPU each, the bulk of the suite's time). What ``start``/``status``/``list`` print is checked by
the tests of those commands (test_cli.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from coordinator import Coordinator

#: The installed console script, next to this interpreter (``pip install -e .`` puts it there).
_SCRIPT = Path(sys.executable).with_name("unitsync")
UNITSYNC: list[str] = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli"]

#: Exit codes of the CLI (README "Exit codes").
OK, ERROR, USAGE, TIMEOUT, DEPENDENCY_FAILED, CYCLE, UNREACHABLE = 0, 1, 2, 3, 4, 5, 69


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Served:
    """A running ``unitsync serve`` and how to call the CLI against it."""

    path: Path
    env: dict[str, str] = field(default_factory=dict)

    async def run(self, *args: str, check: bool = False, stdin: bytes = b"") -> Result:
        """Run ``unitsync ARGS`` to completion (under the caller's ``fail_after``)."""
        done = await trio.run_process(
            UNITSYNC + list(args), env=self.env, stdin=stdin, capture_stdout=True,
            capture_stderr=True, check=False,
        )
        result = Result(done.returncode, done.stdout.decode(), done.stderr.decode())
        if check and result.returncode != 0:
            raise AssertionError(f"unitsync {' '.join(args)} exited {result.returncode}: {result}")
        return result

    async def open(self, *args: str, **kwargs: object) -> trio.Process:
        """Start ``unitsync ARGS`` without waiting (stdout/stderr piped unless given)."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return await trio.lowlevel.open_process(UNITSYNC + list(args), env=self.env, **kwargs)

    def client(self) -> AbstractAsyncContextManager[Coordinator]:
        """``connect()`` to this coordinator from the test (a real RPC client, real socket)."""
        from coordinator import connect

        return connect(self.path)

    async def state(self, unit: str) -> tuple[str, str]:
        """(status, reason) of ``unit`` as ``status -o json`` spells them ("" for not registered),
        asked over a connection of its own."""
        async with self.client() as client:
            info = await client.unit(unit).info()
        return info.status.value, info.reason


def usage(*args: str) -> Result:
    """``unitsync ARGS`` through the console script's own entry point (``cli.main``), in this
    process: for usage errors and ``--help``, which are decided before anything is sent. The
    socket named in the environment has nothing behind it, so a call that did reach for a
    coordinator exits 69, not 2 (which also tells arguments that were accepted)."""
    import contextlib
    import io
    from unittest import mock

    import cli

    out, err = io.StringIO(), io.StringIO()
    code: object = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch.dict(os.environ, {"UNITSYNC_SOCKET": "/nonexistent/unitsync.sock"}):
        try:
            cli.main(args)
        except SystemExit as exit_:
            code = exit_.code
    assert isinstance(code, int), code
    return Result(code, out.getvalue(), err.getvalue())


@asynccontextmanager
async def background(served: Served, *args: str, **kwargs: object) -> AsyncIterator[trio.Process]:
    """``unitsync ARGS`` running in the background; killed and reaped on the way out."""
    process = await served.open(*args, **kwargs)
    try:
        yield process
    finally:
        await reap(process)


async def reap(process: trio.Process) -> None:
    """Kill ``process``, close its pipes and wait for it (bounded, shielded)."""
    process.kill()
    with trio.CancelScope(shield=True), trio.move_on_after(5.0):
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()
        await process.wait()


async def read_all(stream: trio.abc.ReceiveStream | None) -> str:
    """Everything up to EOF (the caller's ``fail_after`` bounds it)."""
    assert stream is not None
    chunks = []
    while chunk := await stream.receive_some():
        chunks.append(chunk)
    return b"".join(chunks).decode()


def serving_line(path: Path, *options: str) -> str:
    """The line ``unitsync serve OPTIONS`` prints once it serves on ``path``: the version, the
    socket, and the journal (``--state``, ``--no-state``: memory only, ``--store``: the store,
    else next to the socket)."""
    from coordinator import __version__, default_state_path

    state: object = default_state_path(path)
    if "--no-state" in options:
        state = "memory only"
    elif "--state" in options:
        state = options[options.index("--state") + 1]
    elif "--store" in options:
        state = options[options.index("--store") + 1]
    return f"unitsync: {__version__} serving on {path} (state: {state})\n"


async def start_serve(path: Path, env: dict[str, str], *options: str) -> trio.Process:
    """``unitsync serve OPTIONS`` in the background, returned once it has printed that it serves
    on ``path`` (asserted: :func:`serving_line`). Its stderr stays piped; the caller stops and
    reaps it."""
    process = await trio.lowlevel.open_process(
        UNITSYNC + ["serve", *options], env=env, stderr=subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        assert await read_line(process.stderr) == serving_line(path, *options)
    except BaseException:
        process.kill()
        raise
    return process


@contextmanager
def serve_process(
    path: Path, env: dict[str, str], *options: str, timeout: float
) -> Iterator[subprocess.Popen[bytes]]:
    """``unitsync serve OPTIONS`` started with plain :mod:`subprocess`, for a sync fixture that
    outlives one test; yielded once it has printed that it serves on ``path`` (asserted, within
    ``timeout``). A thread drains its stderr meanwhile. On the way out: SIGTERM, and it must
    exit 0 within ``timeout``; it is killed and reaped whatever happens."""
    process = subprocess.Popen(UNITSYNC + ["serve", *options], env=env, stderr=subprocess.PIPE)
    assert process.stderr is not None
    stderr: list[str] = []
    said = threading.Event()

    def drain(stream: IO[bytes]) -> None:
        for line in stream:  # until EOF: the process has exited
            stderr.append(line.decode())
            said.set()
        said.set()

    thread = threading.Thread(target=drain, args=(process.stderr,), name="serve-stderr",
                              daemon=True)
    thread.start()
    try:
        assert said.wait(timeout), f"unitsync serve said nothing within {timeout} s"
        assert stderr[:1] == [serving_line(path, *options)], stderr
        yield process
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout) == 0, stderr
    finally:
        process.kill()
        process.wait(timeout)
        thread.join(timeout)
        process.stderr.close()


def env_for(path: Path) -> dict[str, str]:
    """The environment of a ``unitsync`` subprocess talking to ``path``. Without
    PYTHONDONTWRITEBYTECODE: the suite starts hundreds of them, and with it set (as on a fresh
    CI machine) each one compiled every module of ours again (a fresh clone's fast suite took
    70 s instead of 56)."""
    env = {**os.environ, "UNITSYNC_SOCKET": str(path)}
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


async def read_line(stream: trio.abc.ReceiveStream) -> str:
    """One line from a process pipe ("" at EOF)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        if not chunk:
            break
        data += chunk
    return data.decode()


def table(text: str) -> list[list[str]]:
    """A printed table as rows of cells (columns are separated by two or more spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


_FIELD = re.compile(r"^(Unit|Status|Ready|Reason|Blocked by): ")


def status_parts(text: str) -> tuple[list[str], list[list[str]]]:
    """A printed ``status``: its ``Key: value`` lines, then its dependency table as rows (the
    History section after it is left out: see :func:`history_rows`)."""
    lines = text.split("\n\nHistory:\n", 1)[0].splitlines()
    head = 0
    while head < len(lines) and _FIELD.match(lines[head]):
        head += 1
    return lines[:head], table("\n".join(lines[head:]))


def history_rows(text: str) -> list[list[str]]:
    """The History section of a printed ``status`` as table rows (its header first)."""
    return table(text.split("\n\nHistory:\n", 1)[1])


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


__all__: Sequence[str] = [
    "CYCLE", "DEPENDENCY_FAILED", "ERROR", "OK", "Result", "Served", "TIMEOUT", "UNITSYNC",
    "UNREACHABLE", "USAGE", "background", "env_for", "have", "read_all", "read_line", "reap",
    "serve_process", "serving_line", "start_serve", "status_parts", "history_rows", "table", "usage",
]

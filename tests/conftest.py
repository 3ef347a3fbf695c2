"""Fixtures shared by the suite.

``coord`` is the coordinator under test. Every test written against it runs twice with the same
assertions: against ``open_coordinator()`` in this process (``local``), and against
``connect()`` over a real Unix socket to ``serve()`` (``rpc``). ``server`` is the in-process
coordinator behind it (the same object for ``local``), for its ``statistics()``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from coordinator import Coordinator, LocalCoordinator, connect, open_coordinator, serve

from .cli_support import Served, env_for, serve_process, start_serve
from .waits import WAIT

# No test starts a coordinator by accident (a client command that finds none would start one,
# detached, outliving the test): the tests of that (test_cli_autostart.py) turn it on.
os.environ["UNITSYNC_AUTOSTART"] = "0"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for sockets (a Unix socket path must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="us-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def server() -> AsyncIterator[LocalCoordinator]:
    async with open_coordinator() as coordinator:
        yield coordinator


@pytest.fixture(params=["local", "rpc"])
async def coord(
    request: pytest.FixtureRequest, server: LocalCoordinator, sock_dir: Path
) -> AsyncIterator[Coordinator]:
    if request.param == "local":
        yield server
        return
    async with trio.open_nursery() as nursery:
        path = await nursery.start(serve, server, sock_dir / "unitsync.sock")
        async with connect(path) as client:
            yield client
        nursery.cancel_scope.cancel()


@pytest.fixture(scope="session")
def served() -> Iterator[Served]:
    """One real ``unitsync serve`` process for the whole session (per xdist worker), shared by
    the CLI tests that do not need a coordinator of their own: each of them uses unit names no
    other test uses, so they cannot see each other. Stopped with SIGTERM at the end (and
    required to exit 0). A sync fixture (pytest-trio's async fixtures are function-scoped), so
    the process is a plain ``subprocess.Popen``; see :func:`cli_support.serve_process`.

    A test that looks at the whole coordinator (``list``, ``graph``, ``watch``), stops or
    restarts it, or checks its exit takes :func:`fresh_served` instead."""
    directory = Path(tempfile.mkdtemp(prefix="us-", dir="/tmp"))
    path = directory / "unitsync.sock"
    env = env_for(path)
    try:
        with serve_process(path, env, timeout=WAIT * 2):
            yield Served(path, env)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def fresh_served(sock_dir: Path) -> AsyncIterator[Served]:
    """A real ``unitsync serve`` process on a fresh socket, for this test alone; stopped with
    SIGTERM afterwards (and required to exit 0)."""
    path = sock_dir / "unitsync.sock"
    env = env_for(path)
    with trio.fail_after(WAIT * 2):
        process = await start_serve(path, env)
    try:
        yield Served(path, env)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            assert await process.wait() == 0
    finally:
        process.kill()


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing is logged at ERROR level during the test (asyncio's "Task exception was never
    retrieved", "Exception in callback", a server method failing outside its caller...). A
    module takes it with ``pytestmark = pytest.mark.usefixtures("no_errors_logged")``."""
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, "\n".join(f"{r.name}: {r.getMessage()}" for r in errors)

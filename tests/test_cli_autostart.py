"""A coordinator on first use: real ``unitsync`` processes racing on a fresh socket, the
commands that must not start one, the lock ``up`` shares, and ``serve --idle-exit``."""

from __future__ import annotations

import functools
import os
import signal
import socket
import struct
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from coordinator import Status, connect, open_coordinator, serve

from .cli_support import OK, UNITSYNC, UNREACHABLE, Served, env_for, read_line, serving_line
from .waits import WAIT


def autostart_env(path: Path) -> dict[str, str]:
    return {**env_for(path), "UNITSYNC_AUTOSTART": "1"}


def serve_processes(path: Path) -> list[int]:
    """Pids of the ``serve`` processes on ``path`` (from /proc: what is running now)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if b"serve" in argv and str(path).encode() in argv:
            found.append(int(entry.name))
    return found


def server_pid(path: Path) -> int:
    """The pid of the process serving ``path`` (SO_PEERCRED of a connection to it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[0])


async def wait_exited(pid: int) -> None:
    """Wait until ``pid`` (not our child: adopted by init) has exited: a pidfd becomes
    readable then (the caller's ``fail_after`` bounds it)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


@asynccontextmanager
async def stopped_afterwards(path: Path) -> AsyncIterator[None]:
    """On the way out, SIGTERM every ``serve`` on ``path`` and wait until it has exited."""
    try:
        yield
    finally:
        with trio.CancelScope(shield=True), trio.fail_after(WAIT * 2):
            for pid in serve_processes(path):
                os.kill(pid, signal.SIGTERM)
                await wait_exited(pid)


async def race(path: Path, count: int) -> None:
    """``count`` real ``unitsync want`` processes at once on a socket nobody serves: each
    succeeds, one coordinator comes up (one process, one start in its log, one command said
    it started it), with ``--idle-exit 1h``; the state is journaled for the next one."""
    env = autostart_env(path)
    assert not path.parent.exists()
    results: list[subprocess.CompletedProcess[bytes]] = []

    async def want(index: int) -> None:
        results.append(await trio.run_process(
            UNITSYNC + ["want", f"unit-{index}", "base"], env=env, capture_stdout=True,
            capture_stderr=True, check=False,
        ))

    async with stopped_afterwards(path):
        with trio.fail_after(WAIT * 2 + count * 0.5):
            async with trio.open_nursery() as nursery:
                for index in range(count):
                    nursery.start_soon(want, index)
        assert [r.returncode for r in results] == [OK] * count, [r.stderr for r in results]
        log = path.with_suffix(".log")
        said = [r.stderr.decode() for r in results if b"started a coordinator" in r.stderr]
        assert said == [f"unitsync: started a coordinator on {path} (log: {log})\n"]

        pids = serve_processes(path)
        assert pids == [server_pid(path)]
        argv = Path(f"/proc/{pids[0]}/cmdline").read_bytes().split(b"\0")
        assert argv[-3:-1] == [b"--idle-exit", b"1h"]
        assert log.read_text().count(" serving on ") == 1
        assert oct(path.parent.stat().st_mode & 0o777) == oct(0o700)
        assert oct(log.stat().st_mode & 0o777) == oct(0o600)
        with trio.fail_after(WAIT):
            async with connect(path) as client:
                assert len(await client.list()) == count

    # stopped (as on SIGTERM); the next first call starts another, on the same journal
    assert not path.exists()
    async with stopped_afterwards(path):
        with trio.fail_after(WAIT * 2):
            done = await trio.run_process(UNITSYNC + ["complete", "unit-0"], env=env,
                                          capture_stderr=True, check=False)
        assert done.returncode == OK, done.stderr
        assert b"started a coordinator" in done.stderr
        assert path.with_suffix(".log").read_text().count(" serving on ") == 2


async def test_first_calls_race_one_coordinator_comes_up(sock_dir: Path) -> None:
    await race(sock_dir / "unitsync" / "unitsync.sock", 8)


@pytest.mark.slow
async def test_fifty_first_calls_race_one_coordinator_comes_up(sock_dir: Path) -> None:
    await race(sock_dir / "unitsync" / "unitsync.sock", 50)


@pytest.mark.parametrize("how", ["env", "option"])
async def test_no_autostart_exits_69_at_once(sock_dir: Path, how: str) -> None:
    path = sock_dir / "unitsync" / "unitsync.sock"
    env = autostart_env(path)
    extra = ["--no-autostart"] if how == "option" else []
    if how == "env":
        env["UNITSYNC_AUTOSTART"] = "0"
    with trio.fail_after(WAIT * 2):
        done = await trio.run_process(UNITSYNC + ["complete", "x", *extra], env=env,
                                      capture_stderr=True, check=False)
    assert done.returncode == UNREACHABLE
    assert b"no unitsync coordinator at" in done.stderr
    assert not path.parent.exists()


@pytest.mark.parametrize("command", [
    ["ping"], ["status", "x"], ["list"], ["graph"], ["watch"], ["why", "x"], ["timeline"],
    ["blame"], ["critical-chain"],
])
async def test_questions_do_not_start_a_coordinator(sock_dir: Path, command: list[str]) -> None:
    path = sock_dir / "unitsync" / "unitsync.sock"
    with trio.fail_after(WAIT * 2):
        done = await trio.run_process(UNITSYNC + command, env=autostart_env(path),
                                      capture_stderr=True, check=False)
    assert done.returncode == UNREACHABLE, done.stderr
    assert not path.parent.exists()


async def test_a_coordinator_brought_up_under_the_lock_is_used(sock_dir: Path) -> None:
    """What `up` does: it holds the autostart lock while it checks and starts its own
    coordinator; a first call meanwhile waits for the lock and then uses that one."""
    from cli._autostart import start_lock

    path = sock_dir / "unitsync" / "unitsync.sock"
    with trio.fail_after(WAIT * 2):
        async with open_coordinator() as coord, trio.open_nursery() as nursery:
            with start_lock(path):
                command = await trio.lowlevel.open_process(
                    UNITSYNC + ["want", "a", "b"], env=autostart_env(path),
                    stderr=subprocess.PIPE,
                )
                await nursery.start(serve, coord, path)
            assert await command.wait() == OK
            assert command.stderr is not None
            assert await command.stderr.receive_some() == b""  # it started none
            assert (await coord.unit("a").info()).status is Status.PENDING
            assert not path.with_suffix(".log").exists()
            nursery.cancel_scope.cancel()


async def test_serve_idle_exit(sock_dir: Path) -> None:
    """`serve --idle-exit`: a connected client keeps it, then it stops as on SIGTERM (exit 0,
    socket removed), the journal keeping its state."""
    path = sock_dir / "unitsync.sock"
    env = env_for(path)
    served = Served(path, env)
    process = await trio.lowlevel.open_process(
        UNITSYNC + ["serve", "--idle-exit", "0.4s"], env=env, stderr=subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        with trio.fail_after(WAIT * 2):
            assert await read_line(process.stderr) == serving_line(path)
            async with served.client() as client:
                await client.unit("git").want("ssh-key")
                await client.unit("ssh-key").register()
                await client.unit("ssh-key").skip("not needed")
                await client.unit("git").skip("not needed")
                # a client still connected: no exit however long (a bounded look)
                with trio.move_on_after(1.0):
                    await process.wait()
                assert process.returncode is None
            # the client has gone, nothing pending or started: it stops by itself
            assert await process.wait() == 0
            rest = (await process.stderr.receive_some()).decode()
        assert "no client and no unit pending or started for 0.4s, stopping" in rest
        assert not path.exists()
        async with stopped_afterwards(path):
            with trio.fail_after(WAIT * 2):
                done = await trio.run_process(UNITSYNC + ["status", "git", "-o", "json"],
                                              env=autostart_env(path), check=False)
                assert done.returncode == UNREACHABLE
                again = await trio.run_process(
                    UNITSYNC + ["want", "other", "git"], env=autostart_env(path), check=False,
                    capture_stderr=True,
                )
                assert again.returncode == OK, again.stderr
                async with served.client() as client:
                    assert (await client.unit("git").info()).status is Status.SKIPPED
    finally:
        process.kill()
        await process.wait()


async def test_idle_exit_waits_for_pending_and_started_units(
    sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The library's ``serve(idle_exit=...)``: a pending unit, then a started one, keep the
    coordinator; once every unit has an outcome it closes by itself, and ``serve`` returns."""
    path = sock_dir / "unitsync.sock"
    async with open_coordinator() as coord:
        unit = coord.unit("db")
        await unit.register()
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve, coord, path, idle_exit=60))
            for step in (unit.start, unit.complete):
                with trio.move_on_after(3600) as kept:
                    await coord.wait_closed()
                assert kept.cancelled_caught  # an hour without a client: still there
                await step()
            with trio.fail_after(60 + 30):
                await coord.wait_closed()
        assert not path.exists()


async def test_idle_exit_with_no_unit_at_all(
    sock_dir: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = sock_dir / "unitsync.sock"
    async with open_coordinator() as coord, trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve, coord, path, idle_exit=2))
        with trio.fail_after(2 + 1):
            await coord.wait_closed()
    assert not path.exists()

"""Waiting scripts survive a restart of the coordinator (issue 6).

The real console script against a real ``unitsync serve`` with its journal, killed with
``kill -9`` and started again on the same journal: a waiting ``start``/``wait`` reconnects and
goes on waiting within its own timeout; a ``run`` whose command outlives the coordinator takes
its hold over again, so the unit still fails at once if that ``run`` then dies; a ``run`` that
died together with the coordinator has its unit failed once the hold grace period is over.
The scene is set, and the outcome read, through the library's RPC client
(``served.client()``, ``served.state()``): the scripts under test are the waiting ones.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from coordinator.rpc._client import RECONNECT_INTERVAL

from .cli_support import (
    DEPENDENCY_FAILED,
    OK,
    Served,
    env_for,
    read_all,
    read_line,
    reap,
    start_serve,
)
from .waits import WAIT


class Coordinator:
    """``unitsync serve`` on a journal, which can be killed and started again."""

    def __init__(self, sock_dir: Path, *options: str) -> None:
        self.path = sock_dir / "unitsync.sock"
        self.journal = sock_dir / "unitsync.state"
        self.served = Served(self.path, env_for(self.path))
        self._options = ("--state", str(self.journal), *options)
        self.process: trio.Process | None = None

    async def start(self, **env: str) -> None:
        self.process = await start_serve(
            self.path, {**self.served.env, **env}, *self._options
        )

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()


@asynccontextmanager
async def coordinator(sock_dir: Path, *options: str) -> AsyncIterator[Coordinator]:
    coord = Coordinator(sock_dir, *options)
    await coord.start()
    try:
        yield coord
    finally:
        if coord.process is not None:
            await reap(coord.process)


async def lines_until(stream: trio.abc.ReceiveStream | None, text: str) -> list[str]:
    """Lines of ``stream`` up to and including the first that contains ``text``."""
    assert stream is not None
    lines: list[str] = []
    while not lines or text not in lines[-1]:
        line = await read_line(stream)
        assert line, f"EOF before {text!r}; got {lines}"
        lines.append(line)
    return lines


async def test_waiting_start_and_wait_survive_a_restart(sock_dir: Path) -> None:
    with trio.fail_after(WAIT * 4):
        async with coordinator(sock_dir) as coord:
            served = coord.served
            async with served.client() as client:
                await client.unit("claude").want("git")
                await client.unit("git").start()
            start = await served.open("start", "claude", "--timeout", "30s")
            wait = await served.open("wait", "git", "--timeout", "30s")
            try:
                await lines_until(start.stderr, "is waiting for dependencies")
                waiting = await lines_until(wait.stderr, "is waiting to reach")
                assert waiting == ['Unit "git" is waiting to reach completed (it is started)\n']
                await coord.kill()
                lost = await lines_until(start.stderr, "lost the coordinator")
                assert "reconnecting" in lost[-1], lost
                await coord.start()
                began = trio.current_time()  # the restarted coordinator serves
                await lines_until(start.stderr, "reconnected to the coordinator")
                reconnected = trio.current_time() - began
                # parked again on the restarted coordinator: the same barrier line again
                await lines_until(start.stderr, "is waiting for dependencies to be satisfied")
                await lines_until(wait.stderr, "reconnected to the coordinator")
                await lines_until(wait.stderr, "is waiting to reach")
                async with served.client() as client:
                    await client.unit("git").complete()
                assert await start.wait() == OK
                assert await wait.wait() == OK
                assert start.stdout is not None and wait.stdout is not None
                assert await read_all(start.stdout) == (
                    'Unit "claude" finished waiting for dependencies: [git]\n'
                )
                assert await read_all(wait.stdout) == 'Unit "git" reached completed\n'
            finally:
                await reap(start)
                await reap(wait)
            assert await served.state("claude") == ("started", "")
    print(f"\nreconnected {reconnected * 1000:.0f} ms after the restarted coordinator served")
    assert reconnected < RECONNECT_INTERVAL + 1.0  # retried at least every RECONNECT_INTERVAL


async def test_a_run_waiting_for_its_dependencies_survives_a_restart(sock_dir: Path) -> None:
    with trio.fail_after(WAIT * 4):
        async with coordinator(sock_dir) as coord:
            served = coord.served
            run = await served.open(
                "run", "job", "--after", "dep", "--timeout", "30s", "--", "sh", "-c", "echo ran"
            )
            try:
                await lines_until(run.stderr, "is waiting for dependencies")
                await coord.kill()
                await coord.start()
                await lines_until(run.stderr, "reconnected to the coordinator")
                await lines_until(run.stderr, "is waiting for dependencies")  # parked again
                async with served.client() as client:
                    await client.unit("dep").start()
                    await client.unit("dep").complete()
                assert await run.wait() == OK
                assert run.stdout is not None
                assert await read_all(run.stdout) == "ran\n"
            finally:
                await reap(run)
            assert await served.state("job") == ("completed", "")


async def test_a_listener_that_hangs_up_is_not_a_coordinator_back(sock_dir: Path) -> None:
    """A dying coordinator's listener may still take a connection (the kernel closes a killed
    process's connections before its listener; a shutdown keeps it for up to 1.5 s) and then
    drop it. A waiting script must not take that for the coordinator being back: it says
    "reconnected" only once a coordinator answers."""
    with trio.fail_after(WAIT * 4):
        async with coordinator(sock_dir) as coord:
            wait = await coord.served.open("wait", "git", "--timeout", "30s")
            try:
                await lines_until(wait.stderr, "is waiting to reach")
                await coord.kill()
                await lines_until(wait.stderr, "lost the coordinator")
                coord.path.unlink()
                with trio.socket.socket(trio.socket.AF_UNIX) as impostor:
                    await impostor.bind(str(coord.path))
                    impostor.listen()
                    for _ in range(2):  # each attempt is taken, then hung up on
                        taken, _ = await impostor.accept()
                        taken.close()
                await coord.start()
                said = await lines_until(wait.stderr, "is waiting to reach")
                assert [line for line in said if "unitsync:" in line] == [
                    f"unitsync: reconnected to the coordinator at {coord.path}\n"
                ], said
                async with coord.served.client() as client:
                    await client.unit("git").start()
                    await client.unit("git").complete()
                assert await wait.wait() == OK
            finally:
                await reap(wait)


async def test_a_run_takes_its_hold_back_after_a_restart(sock_dir: Path) -> None:
    """Taken back, the unit is bound to the run again: when that run dies, the unit fails at
    once (a hold grace of 60 s shows it was not the grace period that failed it)."""
    with trio.fail_after(WAIT * 4):
        async with coordinator(sock_dir, "--hold-grace", "60s") as coord:
            served = coord.served
            async with served.client() as client:
                await client.unit("next").want("job")
            run = await served.open(
                "run", "job", "--", "sh", "-c", "echo ready; read line", stdin=subprocess.PIPE,
                start_new_session=True,
            )
            start = await served.open("start", "next", "--timeout", "30s")
            try:
                assert run.stdout is not None
                assert await read_line(run.stdout) == "ready\n"
                await lines_until(start.stderr, "is waiting for dependencies")
                await coord.kill()
                await lines_until(run.stderr, "lost the coordinator")
                await coord.start()
                held = await lines_until(run.stderr, "reconnected")
                assert held[-1].endswith('unit "job" is held again\n'), held
                await lines_until(start.stderr, "is waiting for dependencies")
                os.killpg(run.pid, signal.SIGKILL)  # the run and its command die
                assert await start.wait() == DEPENDENCY_FAILED
                said = await read_all(start.stderr)
                assert "holder disconnected" in said, said
            finally:
                await reap(run)
                await reap(start)


async def test_a_run_that_died_with_its_coordinator_fails_after_the_grace(
    sock_dir: Path,
) -> None:
    with trio.fail_after(WAIT * 4):
        async with coordinator(sock_dir, "--hold-grace", "0.5s") as coord:
            served = coord.served
            async with served.client() as client:
                await client.unit("next").want("job")
            run = await served.open(
                "run", "job", "--", "sh", "-c", "echo ready; sleep 60", start_new_session=True
            )
            start = await served.open("start", "next", "--timeout", "30s")
            try:
                assert run.stdout is not None
                assert await read_line(run.stdout) == "ready\n"
                await lines_until(start.stderr, "is waiting for dependencies")
                # a crash takes both, the coordinator first: killed the other way round, a live
                # coordinator could see run's connection drop and fail job at once
                await coord.kill()
                os.killpg(run.pid, signal.SIGKILL)
                began = trio.current_time()
                await coord.start()
                assert await start.wait() == DEPENDENCY_FAILED
                failed_after = trio.current_time() - began
                said = await read_all(start.stderr)
                assert "reconnected" in said and "holder disconnected" in said, said
                assert await served.state("job") == ("failed", "holder disconnected")
            finally:
                await reap(run)
                await reap(start)
    print(f"\njob failed {failed_after * 1000:.0f} ms after the restart (grace 500 ms)")
    assert failed_after >= 0.5


#: An fdatasync that hangs while a flag file exists: a coordinator that has applied and
#: written a mutation, but dies before it is durable enough to answer.
HANGING_FDATASYNC = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
int fdatasync(int fd) {
    static int (*real)(int);
    const char *flag = getenv("HANG_FDATASYNC_WHILE");
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (flag && access(flag, F_OK) == 0) pause();
    return real(fd);
}
"""


#: The same, but it waits only while the flag file exists: a journal that is slow for a while.
WAITING_FDATASYNC = HANGING_FDATASYNC.replace(
    "pause();", "while (access(flag, F_OK) == 0) usleep(1000);"
)


def _shim(tmp_path: Path, source_text: str) -> Path:
    """A shared object for LD_PRELOAD (built with the C compiler; skipped without one)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the fdatasync shim (apt-get install gcc)")
    source, shim = tmp_path / "shim.c", tmp_path / "shim.so"
    source.write_text(source_text)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(shim), str(source), "-ldl"],
                   check=True, capture_output=True)
    return shim


@pytest.fixture
def hanging_fdatasync(tmp_path: Path) -> Path:
    return _shim(tmp_path, HANGING_FDATASYNC)


@pytest.fixture
def waiting_fdatasync(tmp_path: Path) -> Path:
    return _shim(tmp_path, WAITING_FDATASYNC)


@pytest.mark.parametrize("command", ["start", "run"])
async def test_a_request_applied_but_never_answered_is_taken_as_ours(
    sock_dir: Path, hanging_fdatasync: Path, command: str
) -> None:
    """The coordinator writes the `start` (or the `run`'s hold) to its journal and dies before
    it is durable enough to answer. After the restart the unit is started; the command, whose
    request was in flight, takes that as its own doing — a `run` takes the hold over — instead
    of failing with "already started"."""
    flag = sock_dir / "hang"
    args = [command, "job", "--timeout", "30s", *(["--", "echo", "ran"] if command == "run" else [])]
    with trio.fail_after(WAIT * 4):
        coord = Coordinator(sock_dir)
        await coord.start(LD_PRELOAD=str(hanging_fdatasync), HANG_FDATASYNC_WHILE=str(flag))
        try:
            flag.touch()  # from now on, nothing the coordinator writes becomes durable
            client = await coord.served.open(*args)
            try:
                log = Path(f"{coord.journal}.log")
                while '"unit":"job","status":"started"' not in log.read_text():
                    await trio.sleep(0.01)  # polling a file another process writes
                await coord.kill()
                await coord.start()
                assert await client.wait() == OK
                said = await read_all(client.stderr)
                assert "reconnected to the coordinator" in said, said
                if command == "start":
                    assert "this start reached the coordinator before it went" in said, said
                assert client.stdout is not None
                out = await read_all(client.stdout)
                assert out == ("ran\n" if command == "run" else
                               'Unit "job" started with no dependencies\n'), out
            finally:
                await reap(client)
            expected = "completed" if command == "run" else "started"
            assert await coord.served.state("job") == (expected, "")
        finally:
            if coord.process is not None:
                await reap(coord.process)


#: A service that says its pid, listens on the port it is given once told to, and exits 3
#: when its stdin closes.
PID_SERVICE = r"""
import os, socket, sys
print(os.getpid(), flush=True)
sys.stdin.readline()
listener = socket.socket()
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen()
sys.stdin.read()
sys.exit(3)
"""


async def test_a_service_ending_while_its_completion_is_not_yet_durable_ended_after_ready(
    sock_dir: Path, waiting_fdatasync: Path
) -> None:
    """The probe passed and `run` completed the unit; the coordinator applied it (others see it
    completed) but answers only once it is durable — and the service ends in between. It ended
    after it was ready: `run` waits for that answer instead of taking it for an end before
    readiness (it did, when the journal was slow: a flaky test showed it)."""
    import sys

    from coordinator import Status

    with socket_port() as port:
        pass
    flag = sock_dir / "hang"
    with trio.fail_after(WAIT * 4):
        coord = Coordinator(sock_dir)
        await coord.start(LD_PRELOAD=str(waiting_fdatasync), HANG_FDATASYNC_WHILE=str(flag))
        try:
            run = await coord.served.open(
                "run", "db", "--ready-tcp", f"127.0.0.1:{port}", "--ready-interval", "20ms",
                "--", sys.executable, "-c", PID_SERVICE, str(port), stdin=subprocess.PIPE,
            )
            try:
                assert run.stdout is not None and run.stdin is not None
                pid = int(await read_line(run.stdout))
                flag.touch()  # from now on nothing becomes durable: answers wait
                await run.stdin.send_all(b"go\n")
                async with coord.served.client() as client:
                    await client.unit("db").reached(Status.COMPLETED)  # applied, pushed
                await run.stdin.aclose()  # the service ends: exit 3
                while os.path.exists(f"/proc/{pid}"):  # another process's end: its pid
                    await trio.sleep(0.01)
                flag.unlink()  # the journal catches up: the answers go out
                assert await run.wait() == 3
            finally:
                await reap(run)
            assert await coord.served.state("db") == ("failed", "exit code 3 (after it was ready)")
        finally:
            if coord.process is not None:
                await reap(coord.process)


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A free TCP port on loopback (free once the block is left)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        yield int(probe.getsockname()[1])

"""``unitsync serve`` as a real process: ready line, clients, a second server refused,
SIGINT/SIGTERM stop it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from coordinator import Status, connect

from .cli_support import (
    UNITSYNC,
    UNREACHABLE,
    USAGE,
    Served,
    background,
    env_for,
    read_all,
    read_line,
    start_serve,
)
from .waits import WAIT


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_runs_until_signalled(sock_dir: Path, signum: int) -> None:
    path = sock_dir / "unitsync.sock"
    env = env_for(path)
    with trio.fail_after(WAIT * 2):
        process = await start_serve(path, env)
        try:
            assert oct(path.stat().st_mode & 0o777) == oct(0o600)

            async with connect(path) as coord:
                await coord.unit("claude").want("git")
                assert (await coord.unit("claude").info()).dependencies[0].current is Status.NOT_REGISTERED

            second = await trio.run_process(UNITSYNC + ["serve", "--socket", str(path)],
                                            env=env, capture_stderr=True, check=False)
            assert second.returncode == 1
            assert b"already serving on" in second.stderr

            process.send_signal(signum)
            assert await process.wait() == 0
        finally:
            process.kill()
    assert not path.exists()


def test_serve_limit_defaults_are_the_library_defaults() -> None:
    """`unitsync serve` spells its defaults out (its --help must not import Trio or capnp);
    they must stay those of the library."""
    import inspect

    from cli._serve import serve as serve_command
    from coordinator._registry import MAX_UNITS
    from coordinator.rpc._server import ServerLimits

    defaults = {n: p.default for n, p in inspect.signature(serve_command).parameters.items()}
    assert defaults["max_units"] == MAX_UNITS
    assert defaults["max_connections"] == ServerLimits().max_connections
    assert defaults["max_waiters"] == ServerLimits().max_waiters_per_connection
    assert defaults["frame_timeout"] == ServerLimits().frame_timeout


def test_serve_freezes_its_start_and_collects_young_objects_less_often() -> None:
    # in a process of its own: the collector's settings are the whole process's
    code = (
        "import gc; from cli._serve import GC_THRESHOLDS, _tune_the_collector; "
        "before = gc.get_freeze_count(); _tune_the_collector(); "
        "print(before, gc.get_freeze_count(), gc.get_threshold() == GC_THRESHOLDS)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    before, frozen, thresholds = done.stdout.split()
    assert int(before) == 0 and int(frozen) > 10_000  # the imports' objects, out of sight
    assert thresholds == "True"


def _cpus_of_each_thread(pid: int) -> set[str]:
    """The Cpus_allowed_list of every thread of ``pid`` (the KJ thread, Trio's, the journal's)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found.add(line.split(":", 1)[1].strip())
    return found


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
async def test_serve_keeps_its_threads_on_one_cpu_unless_told_all(sock_dir: Path) -> None:
    from cli._affinity import _ranges

    path = sock_dir / "unitsync.sock"
    env = env_for(path)
    allowed = os.sched_getaffinity(0)
    one = {str(cpu) for cpu in allowed}  # auto: the one it started on, whichever
    for options, expected in (((), one), (("--cpu", str(min(allowed))), {str(min(allowed))}),
                              (("--cpu", "all"), {_ranges(allowed)})):
        with trio.fail_after(WAIT * 2):
            process = await start_serve(path, env, "--no-state", *options)
            try:
                async with connect(path) as coord:  # the KJ thread and Trio's are running
                    await coord.unit("a").want("b")
                    threads = _cpus_of_each_thread(process.pid)
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
            finally:
                process.kill()
        assert len(threads) == 1 and threads <= expected, (options, threads)
    with trio.fail_after(WAIT):
        refused = await trio.run_process(UNITSYNC + ["serve", "--no-state", "--cpu", "4096"],
                                         env=env, capture_stderr=True, check=False)
    assert refused.returncode == USAGE
    assert f"--cpu 4096: this process may only run on CPU {_ranges(allowed)}" in refused.stderr.decode()
    assert not path.exists()


@pytest.mark.parametrize(("cpus", "said"), [({0}, "0"), ({0, 1, 2, 3, 6, 8, 9}, "0-3,6,8-9")])
def test_cpu_sets_are_said_as_taskset_says_them(cpus: set[int], said: str) -> None:
    from cli._affinity import _ranges

    assert _ranges(cpus) == said


@pytest.mark.parametrize("value", ["", "two", "-1.5"])
def test_cpu_must_be_auto_all_or_a_number(value: str) -> None:
    from cli._affinity import parse_cpu

    with pytest.raises(ValueError, match="use auto, all or a CPU number"):
        parse_cpu(value)


async def test_sigterm_tells_waiting_scripts_the_coordinator_is_shutting_down(
    sock_dir: Path,
) -> None:
    """Issue 6: SIGTERM answers every parked waiter with a clear error instead of a dropped
    connection, and `serve` exits 0 within 2 s. The waiting scripts say why, try to reconnect
    (a restart would find them waiting again) and, when no coordinator is back within their
    timeout, exit 69 saying so."""
    path = sock_dir / "unitsync.sock"
    env = env_for(path)
    with trio.fail_after(WAIT * 3):
        process = await start_serve(path, env)
        try:
            served = Served(path, env)
            assert (await served.run("want", "claude", "git")).returncode == 0
            async with background(served, "start", "claude", "--timeout", "1s") as start, \
                    background(served, "wait", "git", "--timeout", "1s") as wait:
                assert start.stderr is not None
                assert "is waiting for dependencies" in await read_line(start.stderr)
                began = trio.current_time()
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
                stopped = trio.current_time() - began
                assert await start.wait() == UNREACHABLE
                said = await read_all(start.stderr)
                assert "(the coordinator is shutting down); reconnecting" in said, said
                assert "went away and did not come back within 1s" in said, said
                # `wait` prints nothing while it waits, so it may be parked (told "shutting
                # down", then not back in time) or still connecting (unreachable): 69 either way
                assert await wait.wait() == UNREACHABLE
            print(f"\nserve stopped {stopped * 1000:.0f} ms after SIGTERM")
            assert stopped < 2.0
        finally:
            process.kill()
    assert not path.exists()


async def test_a_remote_watch_ends_when_the_coordinator_is_killed(sock_dir: Path) -> None:
    """kill -9 sends no last event: the client ends every watch itself when its connection
    drops (CoordinatorClosed), instead of leaving the watcher waiting forever."""
    from coordinator import CoordinatorClosed

    path = sock_dir / "unitsync.sock"
    env = env_for(path)
    with trio.fail_after(WAIT * 2):
        process = await start_serve(path, env)
        try:
            async with connect(path) as coord, coord.watch() as events:
                await coord.unit("git").start()
                first = await events.__anext__()
                assert (first.unit, first.new) == ("git", Status.STARTED)
                process.kill()
                with pytest.raises(CoordinatorClosed):  # before: waited forever
                    await events.__anext__()
        finally:
            process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(WAIT):
                await process.wait()
                assert process.stderr is not None
                await process.stderr.aclose()

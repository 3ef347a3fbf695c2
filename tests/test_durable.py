"""The coordinator over a journal: acknowledged mutations survive a restart (and ``kill -9``),
restored units behave as before (readiness, blocking, cycles refused)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import trio

from coordinator import CycleError, DependencyFailed, Status, connect, open_coordinator

from .cli_support import UNITSYNC, env_for, read_line, start_serve
from .waits import WAIT


async def snapshot(coord: object) -> list[tuple[str, str, str, tuple[tuple[str, str, str], ...]]]:
    return [
        (u.name, u.status.value, u.reason,
         tuple((d.depends_on, d.required.value, d.current.value) for d in u.dependencies))
        for u in await coord.list()  # type: ignore[attr-defined]
    ]


async def test_state_survives_a_restart(sock_dir: Path) -> None:
    journal = sock_dir / "state"
    with trio.fail_after(WAIT):
        async with open_coordinator(state=journal) as coord:
            await coord.unit("claude").want("git", "setup")
            await coord.unit("review").want("claude", requires=Status.STARTED)
            await coord.unit("setup").start()
            await coord.unit("setup").complete()
            await coord.unit("git").start()
            await coord.unit("git").fail("clone failed")
            before = await snapshot(coord)
        async with open_coordinator(state=journal) as coord:
            assert await snapshot(coord) == before
            with pytest.raises(DependencyFailed) as caught:  # blocking is derived again
                await coord.unit("review").ready()
            assert caught.value.path == ("review", "claude", "git")
            with pytest.raises(CycleError):  # the restored edges still refuse a cycle
                await coord.unit("git").want("review")
            await coord.unit("git").start()  # a re-run unblocks, as before the restart
            await coord.unit("git").complete()
            assert (await coord.unit("claude").info()).ready


async def test_acknowledged_mutations_survive_kill_9(sock_dir: Path) -> None:
    path, journal = sock_dir / "unitsync.sock", sock_dir / "unitsync.state"
    env = env_for(path)

    async def start_server() -> trio.Process:
        return await start_serve(path, env, "--state", str(journal))

    with trio.fail_after(WAIT * 3):
        server = await start_server()
        try:
            async with connect(path) as coord:
                for i in range(50):
                    await coord.unit(f"u{i}").want(f"u{i + 1}")
                for i in range(50, 25, -1):
                    await coord.unit(f"u{i}").start()
                    await coord.unit(f"u{i}").complete()
                await coord.unit("u25").start()
                await coord.unit("u25").fail("exit code 3")
                before = await snapshot(coord)
            server.send_signal(signal.SIGKILL)
            await server.wait()
        finally:
            server.kill()
        server = await start_server()
        try:
            async with connect(path) as coord:
                assert await snapshot(coord) == before
                with pytest.raises(CycleError):
                    await coord.unit("u50").want("u0")
                with pytest.raises(DependencyFailed):
                    await coord.unit("u0").ready()
            server.send_signal(signal.SIGTERM)
            assert await server.wait() == 0
        finally:
            server.kill()


async def test_serve_keeps_its_journal_next_to_the_socket_unless_told_not_to(
    sock_dir: Path,
) -> None:
    path = sock_dir / "unitsync.sock"
    env = env_for(path)
    with trio.fail_after(WAIT * 2):
        for options, journal_expected in (([], True), (["--no-state"], False)):
            process = await start_serve(path, env, *options)
            try:
                assert bool(list(sock_dir.glob("unitsync.state*"))) is journal_expected
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
            finally:
                process.kill()
            for leftover in sock_dir.glob("unitsync.state*"):
                leftover.unlink()
        both = await trio.run_process(
            UNITSYNC + ["serve", "--no-state", "--state", str(sock_dir / "x")], env=env,
            capture_stderr=True, check=False,
        )
        assert both.returncode == 2
        assert b"--state and --no-state exclude each other" in both.stderr


async def test_run_records_its_outcome_after_the_coordinator_restarts(sock_dir: Path) -> None:
    """kill -9 of `serve` while `run`'s command runs: the unit is restored (started) from the
    journal, `run` reconnects to the restarted coordinator and takes its hold back, and records
    the outcome there when the command ends."""
    from .cli_support import Served, read_all, reap

    path, journal = sock_dir / "unitsync.sock", sock_dir / "unitsync.state"
    env = env_for(path)
    processes: list[trio.Process] = []

    async def start_server() -> trio.Process:
        process = await start_serve(path, env, "--state", str(journal))
        processes.append(process)
        return process

    with trio.fail_after(WAIT * 4):
        server = await start_server()
        run = await Served(path, env).open(
            "run", "job", "--", "sh", "-c", "echo ready; read line; exit 0", stdin=subprocess.PIPE
        )
        processes.append(run)
        try:
            assert run.stdout is not None and run.stdin is not None and run.stderr is not None
            assert await read_line(run.stdout) == "ready\n"
            server.kill()  # kill -9 while the command runs
            await server.wait()
            assert "lost the coordinator" in await read_line(run.stderr)
            server = await start_server()
            # the command ends only once run is back (else the outcome may go by name before
            # run has said that it reconnected)
            assert "reconnected to the coordinator" in (line := await read_line(run.stderr)), line
            assert 'unit "job" is held again' in line, line
            await run.stdin.send_all(b"go\n")
            assert await run.wait() == 0
            assert await read_all(run.stderr) == ""  # recorded on the lease taken back
            status = await Served(path, env).run("status", "job", "-o", "json")
            assert '"status": "completed"' in status.stdout, status
        finally:
            for process in processes:
                await reap(process)

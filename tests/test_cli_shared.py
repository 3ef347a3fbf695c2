"""Several ``unitsync serve --store etcd://...`` processes on one real etcd, driven through the
command line as scripts on different machines would be: each talks to its own coordinator (its
own socket), and they share one graph — the git → claude example across coordinators, the
cycle race through the CLI, fail-fast across, a ``serve`` killed with SIGKILL while its ``run``
holds a unit, a store that cannot be reached at start."""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from coordinator import Status

from .cli_support import (
    CYCLE,
    DEPENDENCY_FAILED,
    OK,
    UNREACHABLE,
    UNITSYNC,
    Served,
    env_for,
    read_line,
    reap,
    start_serve,
)
from .etcd_support import EtcdCluster, etcd_node, requires_etcd, unused_ports

__all__ = ["etcd_node"]  # fixtures, used by name

pytestmark = requires_etcd
WAIT = 20.0  # seconds: an upper bound for any one test step (CLI start-ups included)


def store_url(cluster: EtcdCluster, workspace: str) -> str:
    hosts = ",".join(e.removeprefix("http://") for e in cluster.endpoints)
    return f"etcd://{hosts}/{workspace}"


@asynccontextmanager
async def coordinators(
    tmp_path: Path, url: str, count: int
) -> AsyncIterator[list[tuple[Served, trio.Process]]]:
    """``count`` ``unitsync serve --store URL`` processes, each on a socket of its own (one per
    "machine"); stopped with SIGTERM (and reaped) on the way out."""
    started: list[tuple[Served, trio.Process]] = []
    try:
        for n in range(count):
            path = tmp_path / f"m{n}" / "unitsync.sock"
            path.parent.mkdir(mode=0o700)
            served = Served(path, env_for(path))
            started.append((served, await start_serve(path, served.env, "--store", url)))
        yield started
    finally:
        for _, process in started:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        with trio.move_on_after(5.0):
            for _, process in started:
                await process.wait()
        for _, process in started:
            await reap(process)


@pytest.fixture
def url(etcd_node: EtcdCluster) -> str:
    return store_url(etcd_node, f"ws-{uuid.uuid4().hex[:12]}")


async def test_git_then_claude_across_two_coordinators(tmp_path: Path, url: str) -> None:
    with trio.fail_after(WAIT):
        async with coordinators(tmp_path, url, 2) as [(a, _), (b, _)]:
            # agent.sh on machine B waits for the clone on machine A
            assert (await b.run("want", "claude", "git")).returncode == OK
            async with trio.open_nursery() as nursery:
                agent: list[object] = []

                async def agent_sh() -> None:
                    agent.append(await b.run("run", "claude", "--", "sh", "-c", "echo agent ran"))

                nursery.start_soon(agent_sh)
                clone = await a.run("run", "git", "--", "sh", "-c", "echo cloned")
                assert clone.returncode == OK, clone
            (result,) = agent
            assert result.returncode == OK, result  # type: ignore[attr-defined]
            assert "agent ran" in result.stdout  # type: ignore[attr-defined]
            for served in (a, b):
                assert await served.state("git") == ("completed", "")
                assert await served.state("claude") == ("completed", "")


async def test_a_failure_on_one_machine_fails_fast_on_the_other(tmp_path: Path, url: str) -> None:
    with trio.fail_after(WAIT):
        async with coordinators(tmp_path, url, 2) as [(a, _), (b, _)]:
            assert (await b.run("want", "claude", "git")).returncode == OK
            async with trio.open_nursery() as nursery:
                waited: list[object] = []

                async def start_claude() -> None:
                    waited.append(await b.run("start", "claude", "--timeout", "15s"))

                nursery.start_soon(start_claude)
                failed = await a.run("run", "git", "--", "sh", "-c", "exit 3")
                assert failed.returncode == 3, failed
            (result,) = waited
            assert result.returncode == DEPENDENCY_FAILED, result  # type: ignore[attr-defined]
            assert "git" in result.stderr and "exit code 3" in result.stderr  # type: ignore[attr-defined]
            assert await b.state("git") == ("failed", "exit code 3")


async def test_the_two_halves_of_a_cycle_through_the_cli_never_both_land(
    tmp_path: Path, url: str
) -> None:
    with trio.fail_after(WAIT * 3):
        async with coordinators(tmp_path, url, 3) as machines:
            (a, _), (b, _), (c, _) = machines
            for round_ in range(5):
                x, y = f"x{round_}", f"y{round_}"
                results: dict[str, object] = {}

                async def want(served: Served, unit: str, dep: str) -> None:
                    results[unit] = await served.run("want", unit, dep)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(want, a, x, y)
                    nursery.start_soon(want, b, y, x)
                codes = sorted(r.returncode for r in results.values())  # type: ignore[attr-defined]
                assert codes == [OK, CYCLE], results
                refused = next(r for r in results.values() if r.returncode == CYCLE)  # type: ignore[attr-defined]
                assert x in refused.stderr and y in refused.stderr  # type: ignore[attr-defined]
                landed = (x, y) if results[x].returncode == OK else (y, x)  # type: ignore[attr-defined]
                async with c.client() as client:  # the third coordinator has that edge only
                    edges = {(u, d.depends_on) for u in (x, y)
                             for d in (await client.unit(u).info()).dependencies}
                assert edges == {landed}


@pytest.mark.slow  # waits out the dead member's lease (its TTL, 5 s): the default run's longest
async def test_a_serve_killed_while_its_run_holds_a_unit(tmp_path: Path, url: str) -> None:
    with trio.fail_after(WAIT * 2):
        async with coordinators(tmp_path, url, 2) as [(a, a_process), (b, _)]:
            assert (await b.run("want", "agent", "build")).returncode == OK
            run = await a.open("run", "build", "--", "sleep", "60")
            try:
                async with b.client() as client:
                    # started by the run on machine A, seen on machine B
                    with trio.fail_after(WAIT):
                        await client.unit("build").reached(Status.STARTED)
                a_process.send_signal(signal.SIGKILL)  # machine A dies: nobody revokes its lease
                await a_process.wait()
                start = trio.current_time()
                waited = await b.run("start", "agent", "--timeout", "15s")
                took = trio.current_time() - start
                assert waited.returncode == DEPENDENCY_FAILED, waited
                assert "holder disconnected" in waited.stderr
                assert await b.state("build") == ("failed", "holder disconnected")
                assert took < 12.0  # the lease's TTL (5 s) and the watch, not a timeout
            finally:
                await reap(run)


async def test_a_store_that_cannot_be_reached_at_start_exits_69(tmp_path: Path) -> None:
    (port,) = unused_ports(1)
    path = tmp_path / "unitsync.sock"
    with trio.fail_after(WAIT):
        done = await trio.run_process(
            UNITSYNC + ["serve", "--store", f"etcd://127.0.0.1:{port}/ws"], env=env_for(path),
            capture_stdout=True, capture_stderr=True, check=False,
        )
    assert done.returncode == UNREACHABLE
    assert f"cannot reach the store etcd://127.0.0.1:{port}/ws" in done.stderr.decode()


@pytest.mark.slow  # the restart must beat the old lease's TTL (5 s): not under a loaded -n 3 run
async def test_a_run_takes_its_hold_back_from_a_serve_started_again(
    tmp_path: Path, url: str, etcd_node: EtcdCluster
) -> None:
    gate = tmp_path / "gate"
    with trio.fail_after(WAIT * 2):
        async with coordinators(tmp_path, url, 2) as [(a, a_process), (b, _)]:
            run = await a.open("run", "build", "--", "sh", "-c",
                               f"echo running; while [ ! -e {gate} ]; do sleep 0.05; done")
            try:
                async with b.client() as client:
                    await client.unit("build").reached(Status.STARTED)
                # the command runs: the run holds its lease (killed before, A may not have
                # answered the hold yet, and the run takes it over as it starts, silently)
                assert run.stdout is not None
                assert await read_line(run.stdout) == "running\n"
                a_process.send_signal(signal.SIGKILL)  # A's coordinator dies; its run lives on
                await a_process.wait()
                again = await start_serve(a.path, a.env, "--store", url)  # same host, socket
                try:
                    assert run.stderr is not None
                    said = ""
                    while "is held again" not in said:  # the run reconnected, resumed its hold
                        line = await read_line(run.stderr)
                        assert line, said
                        said += line
                    # the old lease expires (its TTL, 5 s): the hold moved to the new one
                    await _leases_down_to(etcd_node, 2)
                    assert await b.state("build") == ("started", "")
                    gate.touch()
                    assert await run.wait() == OK
                    for served in (a, b):
                        assert await served.state("build") == ("completed", "")
                finally:
                    again.send_signal(signal.SIGTERM)
                    await again.wait()
            finally:
                gate.touch()  # the command ends even if the run was killed (a failed test)
                await reap(run)


async def _leases_down_to(cluster: EtcdCluster, count: int) -> None:
    """Until the store has ``count`` leases (the others expired): asked every 0.1 s, an
    external clock's event (the caller's ``fail_after`` bounds it)."""
    import httpx

    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
        while True:
            answer = await http.post(f"{cluster.endpoints[0]}/v3/lease/leases", json={})
            if len(answer.json().get("leases", [])) <= count:
                return
            await trio.sleep(0.1)

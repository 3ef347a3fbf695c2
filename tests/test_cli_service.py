"""``unitsync run`` for services: readiness probes, and time limits on the command itself.

Real console script, real ``unitsync serve`` (the session's shared one: unit names here are
used by no other test), real child processes, real listeners: a TCP socket, Python's own HTTP
server, a file for a shell probe, a line printed late. The units' states are read, and
readiness awaited, through the library's RPC client on the same socket (``served.client()``):
each console script costs ~0.15 s of CPU, and ``status``/``wait`` have tests of their own.
"""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest
import trio

from coordinator import Status

from .cli_support import OK, USAGE, Served, background, read_all, read_line, usage
from .waits import WAIT


#: A service: says it starts, waits for a line on stdin, then does ARGV[1] (print a line, or
#: listen on a port), then runs until stdin closes and exits with ARGV[2].
SERVICE = r"""
import socket, sys
print("starting", flush=True)
sys.stdin.readline()
if sys.argv[1] == "print":
    print("noise\nready on http", flush=True)
else:
    listener = socket.socket()
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen()
    print("listening", flush=True)
sys.stdin.read()
sys.exit(int(sys.argv[2]))
"""


async def state_of(served: Served, unit: str) -> tuple[str, str]:
    return await served.state(unit)


async def reached(served: Served, unit: str, status: Status = Status.COMPLETED) -> None:
    """Until ``unit`` has reached ``status`` (pushed by the coordinator, as ``wait`` is)."""
    async with served.client() as client:
        await client.unit(unit).reached(status)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_log_line_makes_the_unit_completed_while_the_service_runs(
    served: Served,
) -> None:
    with trio.fail_after(WAIT * 2):
        async with background(
            served, "run", "web", "--ready-log", "ready on", "--",
            sys.executable, "-c", SERVICE, "print", "0", stdin=-1,
        ) as run:
            assert run.stdout is not None and run.stdin is not None
            assert await read_line(run.stdout) == "starting\n"  # passed through, as it came
            assert await state_of(served, "web") == ("started", "")  # not ready yet
            await run.stdin.send_all(b"go\n")
            assert await read_line(run.stdout) == "noise\n"
            assert await read_line(run.stdout) == "ready on http\n"
            await reached(served, "web")  # completed, pushed
            assert run.poll() is None  # the service still runs, under run
            await run.stdin.aclose()  # the service ends: exit 0 keeps it completed
            assert await run.wait() == OK
            assert await read_all(run.stdout) == ""
        assert await state_of(served, "web") == ("completed", "")


async def test_a_tcp_probe_and_a_service_that_fails_after_it_was_ready(served: Served) -> None:
    port = free_port()
    with trio.fail_after(WAIT * 2):
        async with background(
            served, "run", "db", "--ready-tcp", f"127.0.0.1:{port}", "--ready-interval", "20ms",
            "--", sys.executable, "-c", SERVICE, str(port), "3", stdin=-1,
        ) as run:
            assert run.stdout is not None and run.stdin is not None
            assert await read_line(run.stdout) == "starting\n"
            assert await state_of(served, "db") == ("started", "")
            await run.stdin.send_all(b"go\n")
            await reached(served, "db")
            await run.stdin.aclose()
            assert await run.wait() == 3
        assert await state_of(served, "db") == ("failed", "exit code 3 (after it was ready)")


async def test_an_http_probe_against_a_real_server_and_a_dependent(served: Served) -> None:
    port = free_port()
    with trio.fail_after(WAIT * 2):
        async with served.client() as client:
            await client.unit("app").want("api")
        async with background(
            served, "run", "api", "--ready-http", f"http://127.0.0.1:{port}/",
            "--ready-interval", "20ms", "--",
            sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
        ) as run:
            started = await served.run("start", "app")  # waits until api answers 2xx
            assert started.returncode == OK, started
            assert await state_of(served, "api") == ("completed", "")
            run.send_signal(signal.SIGTERM)  # forwarded: the server dies of it
            assert await run.wait() == 128 + signal.SIGTERM
        assert await state_of(served, "api") == (
            "failed", "killed by signal SIGTERM (after it was ready)"
        )


async def test_a_command_probe(served: Served, tmp_path: Path) -> None:
    flag = tmp_path / "up"
    with trio.fail_after(WAIT * 2):
        async with background(
            served, "run", "svc", "--ready-cmd", f"test -e {flag}", "--ready-interval", "20ms",
            "--", "sleep", "30",
        ) as run:
            await reached(served, "svc", Status.STARTED)
            assert await state_of(served, "svc") == ("started", "")
            flag.touch()
            await reached(served, "svc")
            assert run.poll() is None


async def test_not_ready_in_time_stops_the_command_and_fails_the_unit(served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        result = await served.run(
            "run", "slow-db", "--ready-tcp", f"127.0.0.1:{free_port()}", "--ready-interval", "20ms",
            "--ready-timeout", "300ms", "--", "sleep", "30",
        )
        assert result.returncode == 124, result
        assert "not ready within 0.3s; stopping the command" in result.stderr
        assert await state_of(served, "slow-db") == ("failed", "not ready within 0.3s")


async def test_the_run_timeout_stops_the_command_even_if_it_ignores_sigterm(
    served: Served,
) -> None:
    with trio.fail_after(WAIT * 2):
        result = await served.run("run", "timed-job", "--run-timeout", "200ms", "--", "sleep", "30")
        assert result.returncode == 124, result
        assert await state_of(served, "timed-job") == ("failed", "timed out after 0.2s")
        stubborn = await served.run(
            "run", "stubborn", "--run-timeout", "200ms", "--kill-after", "200ms", "--",
            "sh", "-c", "trap '' TERM; exec sleep 30",  # sleep inherits the ignored SIGTERM
        )
        assert stubborn.returncode == 124, stubborn
        assert await state_of(served, "stubborn") == ("failed", "timed out after 0.2s")


async def test_a_service_that_exits_before_it_is_ready_fails(served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        result = await served.run("run", "early-web", "--ready-log", "never", "--", "echo", "bye")
        assert (result.returncode, result.stdout) == (1, "bye\n")
        assert await state_of(served, "early-web") == ("failed", "exit code 0 before it was ready")
        crashed = await served.run("run", "early-web", "--ready-log", "never", "--", "sh", "-c", "exit 5")
        assert crashed.returncode == 5
        assert await state_of(served, "early-web") == ("failed", "exit code 5 before it was ready")


@pytest.mark.parametrize(("options", "message"), [
    (["--ready-log", "a("], "invalid regular expression 'a('"),
    (["--ready-tcp", "5432"], "invalid address '5432'"),
    (["--ready-http", "ftp://x/"], "invalid URL 'ftp://x/'"),
    (["--ready-interval", "0"], "--ready-interval must be more than 0"),
    (["--run-timeout=-1s"], "invalid duration"),
])
def test_bad_probe_options_exit_2_before_anything_is_sent(
    options: list[str], message: str
) -> None:
    result = usage("run", "x", *options, "--", "true")  # in process, no coordinator behind
    assert result.returncode == USAGE, result
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

"""``unitsync run``, ``wait``, ``watch`` and ``graph`` as real processes against a real
``unitsync serve`` (README "Command line" is the contract: output wording, JSON keys, exit codes):
the session's (``served``; each test uses unit names of its own), or one of the test's own
(``fresh_served``) for ``watch`` and ``graph``, which see every unit.

The scene around the command under test is set, and its outcome read, through the library's
RPC client on the same socket (``served.client()``, ``served.state()``): what ``start`` and
``status`` print is test_cli.py's business, and each console script costs ~0.15 s of CPU.

Order comes from lines the processes print (``ready`` from a child, the waiting line on stderr,
``unitsync: watching ...``), never from sleeping; every wait is bounded by ``fail_after``, and
every process started here is killed in a ``finally``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
import pytest
import trio

from coordinator import Dependency, DependencyFailed, Status, UnitInfo

from .cli_support import (
    CYCLE,
    DEPENDENCY_FAILED,
    OK,
    TIMEOUT,
    UNITSYNC,
    Served,
    background,
    env_for,
    have,
    read_all,
    read_line,
    reap,
    serving_line,
)
from .waits import WAIT

EVENT_KEYS = {"seq", "time", "unit_name", "old_status", "new_status", "reason", "depends_on",
              "required_status"}


def waiting_for(unit: str, dependency: str) -> str:
    """The end of run's stderr line while ``unit`` waits for ``dependency`` (diagnostics carry a
    `unitsync: ` prefix)."""
    return f'Unit "{unit}" is waiting for dependencies to be satisfied: [{dependency}]\n'


#: A child that prints ``ready``, then on SIGINT/SIGTERM/SIGHUP prints ``got-<SIGNAL>`` and exits 3.
TRAPPING_CHILD = """\
import signal, sys

def on_signal(signum, frame):
    print("got-" + signal.Signals(signum).name, flush=True)
    sys.exit(3)

for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(signum, on_signal)
print("ready", flush=True)
while True:
    signal.pause()
"""


# --- helpers ---------------------------------------------------------------------------------


async def info_of(served: Served, unit: str) -> UnitInfo:
    async with served.client() as client:
        return await client.unit(unit).info()


async def state_of(served: Served, unit: str) -> tuple[str, str]:
    """(status, reason) of ``unit``, as ``status UNIT -o json`` spells them."""
    return await served.state(unit)


def kill_pid(pid: int | None) -> None:
    if pid is not None:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- run: exit codes, output, the unit's fate ------------------------------------------------


async def test_run_exit_zero_completes_the_unit(served: Served) -> None:
    with trio.fail_after(WAIT):
        result = await served.run("run", "exit-zero", "--", "sh", "-c", "exit 0")
        assert (result.returncode, result.stdout) == (OK, "")
        info = await info_of(served, "exit-zero")
        assert (info.status, info.reason, info.ready) == (Status.COMPLETED, "", True)


async def test_run_nonzero_exit_fails_the_unit_with_the_code(served: Served) -> None:
    with trio.fail_after(WAIT):
        result = await served.run("run", "exit-seven", "--", "sh", "-c", "exit 7")
        assert (result.returncode, result.stdout) == (7, "")
        assert await state_of(served, "exit-seven") == ("failed", "exit code 7")


async def test_run_passes_the_childs_output_through_unchanged(served: Served) -> None:
    with trio.fail_after(WAIT):
        result = await served.run("run", "echo", "--", "echo", "hello")
        assert (result.returncode, result.stdout) == (OK, "hello\n")

        # stdin is inherited too, and bytes go through as they are
        piped = await served.run("run", "cat", "--", "cat", stdin=b"line one\n\tno newline")
        assert (piped.returncode, piped.stdout) == (OK, "line one\n\tno newline")
        assert await state_of(served, "cat") == ("completed", "")


async def test_run_child_killed_by_a_signal_exits_128_plus_n(served: Served) -> None:
    with trio.fail_after(WAIT):
        result = await served.run("run", "kill-9", "--", "sh", "-c", "kill -9 $$")
        assert result.returncode == 128 + signal.SIGKILL
        assert await state_of(served, "kill-9") == ("failed", "killed by signal SIGKILL")


async def test_run_command_not_found_exits_127_and_fails_the_unit(
    served: Served, tmp_path: Path
) -> None:
    with trio.fail_after(WAIT):
        result = await served.run(
            "run", "not-found", "--", str(tmp_path / "no-such-command"), "arg"
        )
        assert (result.returncode, result.stdout) == (127, "")
        assert result.stderr.startswith("unitsync: "), result.stderr
        status, reason = await state_of(served, "not-found")
        assert status == "failed"
        assert reason != ""


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
async def test_run_forwards_signals_to_the_child(served: Served, signum: signal.Signals) -> None:
    unit = f"trap-{signum.name}"
    with trio.fail_after(WAIT):
        async with background(
            served, "run", unit, "--", sys.executable, "-c", TRAPPING_CHILD
        ) as run:
            assert run.stdout is not None
            assert await read_line(run.stdout) == "ready\n"
            # while run holds the unit, it is started
            assert await state_of(served, unit) == ("started", "")

            run.send_signal(signum)
            assert await read_line(run.stdout) == f"got-{signum.name}\n"
            assert await read_line(run.stdout) == ""  # nothing else on stdout
            assert await run.wait() == 3
        assert await state_of(served, unit) == ("failed", "exit code 3")


async def test_run_child_killed_by_the_forwarded_sigterm(served: Served) -> None:
    child = "import time; print('ready', flush=True); time.sleep(30)"
    with trio.fail_after(WAIT):
        async with background(served, "run", "sleeper", "--", sys.executable, "-c", child) as run:
            assert run.stdout is not None
            assert await read_line(run.stdout) == "ready\n"
            run.send_signal(signal.SIGTERM)
            assert await run.wait() == 128 + signal.SIGTERM
        assert await state_of(served, "sleeper") == ("failed", "killed by signal SIGTERM")


async def test_run_killed_itself_fails_the_unit_holder_disconnected(served: Served) -> None:
    child_pid = None
    try:
        with trio.fail_after(WAIT):
            # the child prints its pid, then becomes `sleep 30` (same pid): it outlives run
            child = ["sh", "-c", "echo $$; exec sleep 30"]
            async with background(served, "run", "orphan", "--", *child) as run:
                assert run.stdout is not None
                child_pid = int(await read_line(run.stdout))
                assert await state_of(served, "orphan") == ("started", "")
                run.kill()
                assert await run.wait() == -signal.SIGKILL

            async with served.client() as client:  # pushed once the coordinator sees run gone
                with pytest.raises(DependencyFailed):
                    await client.unit("orphan").reached(Status.COMPLETED)
            assert await state_of(served, "orphan") == ("failed", "holder disconnected")
    finally:
        kill_pid(child_pid)


# --- run --after: waiting for dependencies ---------------------------------------------------


async def test_run_after_a_dependency_that_already_failed(served: Served, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with trio.fail_after(WAIT):
        async with served.client() as client:
            await client.unit("failed-a").start()
            await client.unit("failed-a").fail("broken")

        result = await served.run(
            "run", "failed-x", "--after", "failed-a", "--", "touch", str(marker)
        )
        assert (result.returncode, result.stdout) == (DEPENDENCY_FAILED, "")
        assert result.stderr.startswith("unitsync: "), result.stderr
        assert not marker.exists()
        info = await info_of(served, "failed-x")
        assert (info.status, info.blocked_by, info.ready) == (Status.SKIPPED, "failed-a", False)
        assert info.reason == 'dependency "failed-a" failed: broken'
        assert 'unitsync: Unit "failed-x" skipped: dependency "failed-a" failed: broken\n' in (
            result.stderr
        )


async def test_run_after_a_dependency_that_fails_while_waiting(
    served: Served, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with trio.fail_after(WAIT):
        async with served.client() as client:
            await client.unit("failing-a").start()
            async with background(
                served, "run", "failing-x", "--after", "failing-a", "--", "touch", str(marker)
            ) as run:
                assert run.stderr is not None
                line = await read_line(run.stderr)
                assert line.endswith(waiting_for("failing-x", "failing-a")), line

                await client.unit("failing-a").fail("broken")
                assert await run.wait() == DEPENDENCY_FAILED
                assert await read_all(run.stdout) == ""
            assert not marker.exists()
            assert (await client.unit("failing-x").info()).blocked_by == "failing-a"


async def test_run_after_waits_until_the_dependency_completes(
    served: Served, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    child = ["sh", "-c", 'touch "$1"; echo ran', "sh", str(marker)]
    with trio.fail_after(WAIT):
        async with (
            served.client() as client,
            background(served, "run", "waits-x", "--after", "waits-a", "--", *child) as run,
        ):
            assert run.stderr is not None
            line = await read_line(run.stderr)
            assert line.endswith(waiting_for("waits-x", "waits-a")), line
            assert (await client.unit("waits-x").info()).status == Status.PENDING

            await client.unit("waits-a").start()  # started does not meet `completed`
            assert not marker.exists()
            assert run.poll() is None

            await client.unit("waits-a").complete()
            assert await read_all(run.stdout) == "ran\n"
            assert await run.wait() == OK
        assert marker.exists()
        assert await state_of(served, "waits-x") == ("completed", "")


async def test_run_after_requires_started(served: Served) -> None:
    with trio.fail_after(WAIT):
        async with (
            served.client() as client,
            background(
                served, "run", "started-x", "--after", "started-a", "--requires", "started",
                "--", "echo", "ran",
            ) as run,
        ):
            assert run.stderr is not None
            line = await read_line(run.stderr)
            assert line.endswith(waiting_for("started-x", "started-a")), line
            await client.unit("started-a").start()
            assert await read_all(run.stdout) == "ran\n"
            assert await run.wait() == OK
            edges = (await client.unit("started-x").info()).dependencies
        assert edges == (Dependency(depends_on="started-a", required=Status.STARTED,
                                    current=Status.STARTED, satisfied=True),)


async def test_run_after_times_out_without_running(served: Served, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with trio.fail_after(WAIT):
        result = await served.run(
            "run", "timeout-x", "--after", "timeout-a", "--timeout", "250ms",
            "--", "touch", str(marker),
        )
        assert (result.returncode, result.stdout) == (TIMEOUT, "")
        assert not marker.exists()
        assert await state_of(served, "timeout-x") == ("pending", "")


async def test_run_after_refuses_a_cycle(served: Served, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with trio.fail_after(WAIT):
        async with served.client() as client:
            await client.unit("cycle-b").want("cycle-a")
        result = await served.run(
            "run", "cycle-a", "--after", "cycle-b", "--", "touch", str(marker)
        )
        assert (result.returncode, result.stdout) == (CYCLE, "")
        cycle = "dependency cycle refused: cycle-a -> cycle-b -> cycle-a"
        assert cycle in result.stderr, result.stderr
        assert not marker.exists()
        assert (await info_of(served, "cycle-a")).dependencies == ()


# --- the coordinator going away while the child runs ----------------------------------------


async def test_run_outlives_the_coordinator(sock_dir: Path) -> None:
    path = sock_dir / "own.sock"
    served = Served(path, env_for(path))
    child = "echo ready; read line; echo still-here \"$line\"; exit 5"
    server = run = None
    try:
        # run gives the coordinator --reconnect-timeout (here 250ms, by default 10s) to come
        # back once CMD has ended: the bound fails if the option is not honoured
        with trio.fail_after(WAIT * 2):
            server = await trio.lowlevel.open_process(
                UNITSYNC + ["serve"], env=served.env, stderr=subprocess.PIPE
            )
            assert server.stderr is not None
            assert await read_line(server.stderr) == serving_line(path)

            run = await served.open("run", "u", "--reconnect-timeout", "250ms", "--",
                                    "sh", "-c", child, stdin=subprocess.PIPE)
            assert run.stdout is not None and run.stdin is not None
            assert await read_line(run.stdout) == "ready\n"

            server.send_signal(signal.SIGTERM)
            assert await server.wait() == 0

            # the child is still there and answers; run returns its exit code
            await run.stdin.send_all(b"hello\n")
            assert await read_line(run.stdout) == "still-here hello\n"
            stderr = await read_all(run.stderr)
            assert await run.wait() == 5
            assert "coordinator" in stderr.lower(), stderr
            assert all(line.startswith("unitsync: ") for line in stderr.splitlines()), stderr
            # one loss, said once (the listener may still accept during the shutdown grace)
            assert stderr.count("lost the coordinator") == 1, stderr
            # it gave up on recording the outcome (nobody restarted the coordinator)
            assert "the outcome (exit code 5) was not recorded" in stderr, stderr
    finally:
        for process in (run, server):
            if process is not None:
                await reap(process)


# --- wait ------------------------------------------------------------------------------------


async def test_wait_for_completed(served: Served) -> None:
    with trio.fail_after(WAIT):
        async with background(served, "wait", "wait-completed", "--for", "completed") as waiting:
            assert waiting.stderr is not None  # once parked: a barrier, as start's line
            assert await read_line(waiting.stderr) == (
                'Unit "wait-completed" is waiting to reach completed (it is not registered)\n'
            )
            async with served.client() as client:
                await client.unit("wait-completed").start()
                await client.unit("wait-completed").complete()
            assert await read_all(waiting.stdout) == 'Unit "wait-completed" reached completed\n'
            assert await waiting.wait() == OK

        # already there: at once, default --for is completed
        again = await served.run("wait", "wait-completed")
        assert (again.returncode, again.stdout) == (OK, 'Unit "wait-completed" reached completed\n')


async def test_wait_for_started(served: Served) -> None:
    with trio.fail_after(WAIT):
        async with background(served, "wait", "wait-started", "--for", "started") as waiting:
            async with served.client() as client:
                await client.unit("wait-started").start()
            assert await read_all(waiting.stdout) == 'Unit "wait-started" reached started\n'
            assert await waiting.wait() == OK
        assert await state_of(served, "wait-started") == ("started", "")


async def test_wait_exits_4_when_the_unit_fails(served: Served) -> None:
    with trio.fail_after(WAIT):
        async with background(served, "wait", "wait-fails", "--for", "completed") as waiting:
            async with served.client() as client:
                await client.unit("wait-fails").start()
                await client.unit("wait-fails").fail("boom")
            assert await read_all(waiting.stdout) == ""
            assert await waiting.wait() == DEPENDENCY_FAILED


async def test_wait_times_out(served: Served) -> None:
    with trio.fail_after(WAIT):
        async with served.client() as client:
            await client.unit("wait-timeout").start()
        started = time.monotonic()
        result = await served.run(
            "wait", "wait-timeout", "--for", "completed", "--timeout", "250ms"
        )
        assert (result.returncode, result.stdout) == (TIMEOUT, "")
        assert time.monotonic() - started >= 0.25
        assert await state_of(served, "wait-timeout") == ("started", "")


# --- watch -----------------------------------------------------------------------------------


async def test_watch_json_streams_every_change_in_order(fresh_served: Served) -> None:
    expected = [
        ("claude", "", "pending", ""),
        ("claude", "pending", "pending", ""),  # the edge: see depends_on below
        ("git", "", "started", ""),
        ("git", "started", "completed", ""),
        ("claude", "pending", "started", ""),
        ("claude", "started", "failed", "agent crashed"),
    ]
    with trio.fail_after(WAIT * 2):
        async with background(fresh_served, "watch", "-o", "json") as watch:
            assert watch.stdout is not None and watch.stderr is not None
            assert await read_line(watch.stderr) == f"unitsync: watching {fresh_served.path}\n"
            async with fresh_served.client() as client:
                claude, git = client.unit("claude"), client.unit("git")
                before = time.time()
                await claude.want("git")
                await git.start()
                await git.complete()
                await claude.start()
                await claude.fail("agent crashed")
                after = time.time()

            events = [json.loads(await read_line(watch.stdout)) for _ in expected]
            watch.send_signal(signal.SIGTERM)
            assert await watch.wait() == OK
            assert await read_all(watch.stdout) == ""  # nothing past the six events

    for event in events:
        assert set(event) == EVENT_KEYS, event
        assert isinstance(event["seq"], int) and isinstance(event["time"], float), event
        assert before - 0.01 <= event["time"] <= after + 0.01, (before, event, after)
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(expected))), seqs
    changes = [(e["unit_name"], e["old_status"], e["new_status"], e["reason"]) for e in events]
    assert changes == expected
    edges = [(e["depends_on"], e["required_status"]) for e in events]
    assert edges == [("", ""), ("git", "completed")] + [("", "")] * 4


async def test_watch_text_one_line_per_change(fresh_served: Served) -> None:
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    with trio.fail_after(WAIT * 2):
        async with fresh_served.client() as client:
            git, setup = client.unit("git"), client.unit("setup")
            await git.want("setup", requires=Status.STARTED)
            await setup.start()
            async with background(fresh_served, "watch") as watch:
                assert watch.stdout is not None and watch.stderr is not None
                assert await read_line(watch.stderr) == (
                    f"unitsync: watching {fresh_served.path}\n"
                )
                await git.start()
                await git.complete()
                await setup.fail("disk full")
                await setup.want("lint", requires=Status.FINISHED)
                lines = [await read_line(watch.stdout) for _ in range(4)]
                watch.send_signal(signal.SIGINT)
                assert await watch.wait() == OK

    expected = ["git: pending -> started", "git: started -> completed",
                "setup: started -> failed (disk full)", "setup: depends on lint (finished)"]
    for line, text in zip(lines, expected, strict=True):
        assert re.fullmatch(f"{stamp} {re.escape(text)}\n", line), (line, text)


# --- graph -----------------------------------------------------------------------------------


async def declare_graph(served: Served) -> None:
    async with served.client() as client:
        await client.unit("claude").want("git", "setup")
        await client.unit("setup").want("base", requires=Status.STARTED)
        await client.unit("git").start()


@pytest.mark.skipif(not have("dot"), reason="graphviz `dot` is not installed")
async def test_graph_dot_is_accepted_by_graphviz(fresh_served: Served) -> None:
    with trio.fail_after(WAIT):
        await declare_graph(fresh_served)
        result = await fresh_served.run("graph", check=True)
        svg = await trio.run_process(["dot", "-Tsvg"], stdin=result.stdout.encode(),
                                     capture_stdout=True, capture_stderr=True)
        assert svg.stderr == b""
        assert b"<svg" in svg.stdout

        plain = await trio.run_process(["dot", "-Tplain"], stdin=result.stdout.encode(),
                                       capture_stdout=True)
    rows = [line.split() for line in plain.stdout.decode().splitlines()]
    nodes = {row[1] for row in rows if row[0] == "node"}
    edges = {(row[1], row[2]) for row in rows if row[0] == "edge"}
    assert {"claude", "git", "setup"} <= nodes, nodes
    assert edges == {("claude", "git"), ("claude", "setup"), ("setup", "base")}, edges


async def test_graph_json(fresh_served: Served) -> None:
    with trio.fail_after(WAIT):
        empty = await fresh_served.run("graph", "-o", "json", check=True)
        assert json.loads(empty.stdout) == {"units": [], "edges": []}

        await declare_graph(fresh_served)
        result = await fresh_served.run("graph", "-o", "json", check=True)
        listed = await fresh_served.run("list", "-o", "json", check=True)
    graph = json.loads(result.stdout)
    assert graph == {
        "units": [
            {"unit_name": "claude", "status": "pending", "is_ready": False},
            {"unit_name": "git", "status": "started", "is_ready": True},
            {"unit_name": "setup", "status": "pending", "is_ready": False},
        ],
        "edges": [
            {"unit_name": "claude", "depends_on": "git", "required_status": "completed",
             "current_status": "started", "is_satisfied": False},
            {"unit_name": "claude", "depends_on": "setup", "required_status": "completed",
             "current_status": "pending", "is_satisfied": False},
            {"unit_name": "setup", "depends_on": "base", "required_status": "started",
             "current_status": "", "is_satisfied": False},
        ],
    }
    assert graph["units"] == json.loads(listed.stdout)  # units as in `list`


COUNTING_CHILD = """\
import signal, sys, time
count = 0
def on_sigint(signum, frame):
    global count
    count += 1
signal.signal(signal.SIGINT, on_sigint)
print("ready", flush=True)
while count == 0:
    signal.pause()
time.sleep(0.3)  # a window in which a second, forwarded SIGINT would arrive
print(f"sigints={count}", flush=True)
"""


async def read_pty(fd: int) -> bytes:
    """What the terminal shows next (cancellable: the blocked read is abandoned)."""
    return await trio.to_thread.run_sync(os.read, fd, 1024, abandon_on_cancel=True)


async def test_a_ctrl_c_in_the_terminal_reaches_the_child_once(served: Served) -> None:
    """`run` in the foreground of a terminal: the terminal sends SIGINT to the whole process
    group (run and CMD), so run must not forward it a second time."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # in the child, before exec: a session on the pty
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    try:
        with trio.fail_after(WAIT * 2):
            process = await trio.lowlevel.open_process(
                UNITSYNC + ["run", "tty", "--", sys.executable, "-c", COUNTING_CHILD],
                env=served.env, stdin=slave, stdout=slave, stderr=slave,
                preexec_fn=controlling_terminal,
            )
            try:
                output = b""
                while b"ready" not in output:
                    output += await read_pty(master)
                os.write(master, b"\x03")  # Ctrl-C, as typed
                while not re.search(rb"sigints=\d+\r?\n", output):
                    output += await read_pty(master)
                assert await process.wait() == 0
            finally:
                process.kill()
    finally:
        os.close(master)
        os.close(slave)
    assert b"sigints=1" in output, output
    assert (await state_of(served, "tty")) == ("completed", "")

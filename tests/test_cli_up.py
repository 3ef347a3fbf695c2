"""``unitsync up``: the workspace file run by real ``unitsync up`` processes — with a coordinator
of its own or a running one, outside scripts reporting, a failure and a skip, the stop in
reverse dependency order, ``kill -9``, a pseudo-terminal's status block, logs."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import textwrap
from pathlib import Path

import trio

from coordinator import Status

from .cli_support import (
    ERROR,
    OK,
    UNITSYNC,
    UNREACHABLE,
    USAGE,
    Served,
    env_for,
    read_all,
    read_line,
    reap,
    table,
)
from .waits import WAIT

WORKSPACE = """\
[units.ssh-key]
run = "echo key made"
[units.git]
run = ["sh", "-c", "echo cloning; echo to stderr >&2"]
after = ["ssh-key"]
[units.lint]
run = "echo lint; exit 3"
after = ["git"]
[units.report]
run = "echo never"
after = ["lint"]
[units.claude]
run = "echo claude"
after = ["git"]
"""


def workspace(directory: Path, text: str) -> Path:
    path = directory / "unitsync.toml"
    path.write_text(textwrap.dedent(text))
    return path


async def up(served: Served, directory: Path, *args: str) -> tuple[int, str, str]:
    done = await trio.run_process(
        [*UNITSYNC, "up", *args], cwd=directory, env=served.env, capture_stdout=True,
        capture_stderr=True, check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_up_runs_each_unit_when_ready_with_its_own_coordinator(
    sock_dir: Path, tmp_path: Path
) -> None:
    workspace(tmp_path, WORKSPACE)
    served = Served(sock_dir / "unitsync.sock", env_for(sock_dir / "unitsync.sock"))
    with trio.fail_after(WAIT * 2):
        code, out, err = await up(served, tmp_path, "--log-dir", str(tmp_path / "logs"))
    assert code == ERROR, (out, err)
    assert f"unitsync: no coordinator on {served.path}: running one in this process" in err
    lines = out.splitlines()
    output = [line for line in lines if " | " in line]
    # each command's lines behind its name; a unit's output before its dependents' output
    assert output.index("ssh-key | key made") < output.index("git     | cloning")
    assert output.index("git     | cloning") < output.index("lint    | lint")
    assert "git     | to stderr" in err  # a command's stderr stays stderr (piped)
    assert "report  | never" not in output
    summary = table("\n".join(lines[lines.index(next(l for l in lines if l.startswith("UNIT"))):]))
    assert [row[:2] for row in summary] == [
        ["UNIT", "OUTCOME"], ["ssh-key", "completed"], ["git", "completed"],
        ["lint", "failed: exit code 3"],
        ["report", 'skipped: dependency "lint" failed: exit code 3'],
        ["claude", "completed"],
    ]
    assert err.rstrip().endswith("2 of 5 units did not complete: lint, report")
    assert (tmp_path / "logs" / "git.log").read_text() in (
        "cloning\nto stderr\n", "to stderr\ncloning\n"
    )
    page = (tmp_path / "logs" / "timeline.html").read_text()  # the run, drawn
    assert len(re.findall(r'<g class="unit( critical)?" data-unit=', page)) == 5
    assert not served.path.exists()  # its coordinator went with it


async def test_up_of_some_units_runs_what_they_need_and_uses_the_running_coordinator(
    served: Served, tmp_path: Path
) -> None:
    workspace(tmp_path, """\
        [units.upa-dotfiles]
        [units.upa-git]
        run = "echo git"
        [units.upa-claude]
        run = "echo claude"
        after = ["upa-git", "upa-dotfiles"]
        [units.upa-other]
        run = "echo other"
    """)
    with trio.fail_after(WAIT * 2):
        async with trio.open_nursery() as nursery:
            result: list[tuple[int, str, str]] = []

            async def run_up() -> None:
                # --no-autostart: a running coordinator is used all the same
                result.append(await up(served, tmp_path, "upa-claude", "--no-autostart"))

            nursery.start_soon(run_up)
            async with served.client() as client:  # an outside script reports dotfiles
                await client.unit("upa-dotfiles").reached(Status.PENDING)  # up applied the file
                await client.unit("upa-dotfiles").start()
                await client.unit("upa-dotfiles").complete()
    code, out, err = result[0]
    assert code == OK, (out, err)
    assert "running one in this process" not in err
    rows = table(out[out.index("UNIT"):])
    assert [row[:2] for row in rows] == [
        ["UNIT", "OUTCOME"], ["upa-dotfiles", "completed"], ["upa-git", "completed"],
        ["upa-claude", "completed"],
    ]
    assert "other" not in out


async def test_up_no_autostart_without_a_coordinator_exits_69_and_runs_nothing(
    sock_dir: Path, tmp_path: Path
) -> None:
    workspace(tmp_path, """\
        [units.made]
        run = "touch made"
    """)
    served = Served(sock_dir / "unitsync.sock", env_for(sock_dir / "unitsync.sock"))
    with trio.fail_after(WAIT * 2):
        code, out, err = await up(served, tmp_path, "--no-autostart")
    assert code == UNREACHABLE, (out, err)
    assert f"no unitsync coordinator at {served.path}" in err
    assert "running one in this process" not in err
    assert not (tmp_path / "made").exists() and not served.path.exists()


async def test_a_unit_the_file_starts_at_once_still_waits_for_an_edge_declared_outside(
    served: Served, tmp_path: Path
) -> None:
    """up holds a unit without ``after`` at once, without asking first; refused (NotReady: a
    script declared a dependency on the coordinator), it waits for it and says so."""
    workspace(tmp_path, """\
        [units.upb-solo]
        run = "echo solo"
        [units.upb-waits]
        run = "echo waits"
        after = ["upb-solo"]
    """)
    with trio.fail_after(WAIT * 2):
        async with served.client() as client:
            await client.unit("upb-solo").want("upb-outside")
            process = await trio.lowlevel.open_process(
                [*UNITSYNC, "up"], cwd=tmp_path, env=served.env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                await until_line(process.stderr, "upb-solo waiting for upb-outside")
                assert (await client.unit("upb-solo").info()).status is Status.PENDING
                await client.unit("upb-outside").start()
                await client.unit("upb-outside").complete()
                out = await read_all(process.stdout)
                assert await process.wait() == OK
            finally:
                await reap(process)
    rows = table(out[out.index("UNIT"):])
    assert [row[:2] for row in rows] == [
        ["UNIT", "OUTCOME"], ["upb-solo", "completed"], ["upb-waits", "completed"],
    ]
    assert out.index("| solo\n") < out.index("| waits\n")


async def test_up_refuses_a_bad_file_and_unknown_units_before_running_anything(
    served: Served, tmp_path: Path
) -> None:
    workspace(tmp_path, '[units.upb-a]\nrun = "touch ran"\naftr = []\n')
    with trio.fail_after(WAIT):
        code, _, err = await up(served, tmp_path)
        assert (code, err) == (USAGE, 'unitsync: unitsync.toml:3: unit "upb-a": unknown key '
                                      '"aftr" (did you mean "after"?)\n')
        workspace(tmp_path, '[units.upb-a]\nrun = "touch ran"\n')
        code, _, err = await up(served, tmp_path, "upb-nothere")
        assert code == USAGE and "not in unitsync.toml: upb-nothere" in err
        workspace(tmp_path, '[units.upb-b]\nrun = ["./no-such-program"]\n')
        code, out, err = await up(served, tmp_path)
    assert not (tmp_path / "ran").exists()
    assert code == ERROR
    assert "upb-b  failed: cannot run './no-such-program': No such file or directory" in out


SERVICES = """\
[units.db]
run = "trap 'echo stopping db; exit 0' TERM; echo db up; while :; do sleep 0.02; done"
ready = { log = "db up" }
[units.app]
run = "trap 'echo stopping app; exit 0' TERM; echo app up; while :; do sleep 0.02; done"
after = ["db"]
ready = { log = "app up" }
"""


async def test_sigint_stops_dependents_first_and_kill_9_leaves_no_command(
    sock_dir: Path, tmp_path: Path
) -> None:
    workspace(tmp_path, SERVICES)
    env = env_for(sock_dir / "unitsync.sock")
    # two ups, each starting a coordinator of its own and two services: under a loaded -n 3
    # run, 15 s was once not enough for the whole (a TooSlowError in the last wait, 19.7 s)
    with trio.fail_after(WAIT * 6):
        process = await trio.lowlevel.open_process(
            [*UNITSYNC, "up"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            await until_line(process.stderr, "app", "ready")
            process.send_signal(signal.SIGINT)
            out = await read_all(process.stdout)
            assert await process.wait() == OK
        finally:
            await reap(process)
        output = [line for line in out.splitlines() if " | " in line]
        assert output.index("app | stopping app") < output.index("db  | stopping db")

        # kill -9: the commands, and their own children, get SIGTERM from up's watchdog (the
        # end of its pipe), not left running. No TERM trap in these commands: a shell's trap
        # swallows the TERM that a child it has just forked gets before it execs (dash runs
        # the parent's handler until it resets its traps), and under load `sleep 600` was
        # still that child when up died (2 runs in 60, beside two busy loops)
        pids = tmp_path / "pids"
        record = f"sleep 600 & echo $! >> {pids}; echo $$ >> {pids}"  # a child of the command
        workspace(tmp_path, SERVICES.replace("trap 'echo stopping db; exit 0' TERM; ", "")
                  .replace("trap 'echo stopping app; exit 0' TERM; ", "")
                  .replace("echo db up", f"{record}; echo db up")
                  .replace("echo app up", f"{record}; echo app up"))
        assert "trap" not in (tmp_path / "unitsync.toml").read_text()
        process = await trio.lowlevel.open_process(
            [*UNITSYNC, "up"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            await until_line(process.stderr, "app", "ready")
            process.kill()
            await process.wait()
        finally:
            await reap(process)
        children = [int(pid) for pid in pids.read_text().split()]
        assert len(children) == 4  # two commands, a `sleep 600` each
        for pid in children:  # another process's end: nothing to wait on but its pid
            while _alive(pid):
                await trio.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (not reaped yet by init) is gone
        return stat.read().split(") ", 1)[1][0] != "Z"


async def test_on_a_terminal_a_status_block_is_redrawn_under_the_output(
    sock_dir: Path, tmp_path: Path
) -> None:
    workspace(tmp_path, WORKSPACE)
    env = {**env_for(sock_dir / "unitsync.sock"), "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    primary, secondary = pty.openpty()
    with trio.fail_after(WAIT * 2):
        process = await trio.lowlevel.open_process(
            [*UNITSYNC, "up"], cwd=tmp_path, env=env, stdin=secondary, stdout=secondary,
            stderr=secondary,
        )
        os.close(secondary)
        chunks = []
        try:
            while True:
                await trio.lowlevel.wait_readable(primary)
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # EIO: the terminal's other side is closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            assert await process.wait() == ERROR
        finally:
            os.close(primary)
            await reap(process)
    screen = b"".join(chunks).decode()
    assert "\x1b[5F\x1b[J" in screen  # up over the 5 units' block, cleared, drawn again
    plain = screen.replace("\r", "")
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", plain)
    assert re.search(r"^lint +failed +\d+\.\ds +exit code 3$", plain, re.M), plain
    assert re.search(r"^ssh-key \| key made$", plain, re.M)
    assert plain.rstrip().endswith("2 of 5 units did not complete: lint, report")


async def until_line(stream: trio.abc.ReceiveStream | None, *words: str) -> None:
    """Read ``stream`` until a line with every one of ``words`` (the caller's fail_after)."""
    assert stream is not None
    while True:
        line = await read_line(stream)
        assert line, f"EOF before a line with {words}"
        if all(word in line for word in words):
            return


async def test_abort_on_failure_stops_the_others_and_a_second_signal_kills(
    sock_dir: Path, tmp_path: Path
) -> None:
    env = env_for(sock_dir / "unitsync.sock")
    workspace(tmp_path, """\
        [units.web]
        run = "trap 'echo web stopped; exit 0' TERM; echo web up; while :; do sleep 0.02; done"
        ready = { log = "web up" }
        [units.broken]
        run = "exit 1"
        after = ["web"]
    """)
    with trio.fail_after(WAIT * 3):
        code, out, err = await up(Served(sock_dir / "unitsync.sock", env), tmp_path,
                                  "--abort-on-failure")
        assert code == ERROR, (out, err)
        assert "unitsync: broken failed: stopping everything (--abort-on-failure)" in err
        assert "web    | web stopped" in out

        # a command that ignores SIGTERM: the first SIGINT waits --grace, the second kills
        workspace(tmp_path, """\
            [units.stubborn]
            run = "trap '' TERM; echo stubborn up; while :; do sleep 0.02; done"
            ready = { log = "stubborn up" }
        """)
        process = await trio.lowlevel.open_process(
            [*UNITSYNC, "up", "--grace", "1h"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            await until_line(process.stderr, "stubborn", "ready")
            process.send_signal(signal.SIGINT)
            await until_line(process.stderr, "SIGINT: stopping")
            process.send_signal(signal.SIGINT)
            await until_line(process.stderr, "SIGINT again: killing every command")
            out = await read_all(process.stdout)
            assert await process.wait() == ERROR
        finally:
            await reap(process)
    assert "stubborn  failed: killed by signal SIGKILL (after it was ready)" in out

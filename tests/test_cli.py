"""The ``unitsync`` command line as a user runs it: the real console script in subprocesses,
against a real ``unitsync serve``: the session's (the ``served`` fixture; each test uses unit
names of its own), or one of the test's own (``fresh_served``) where it looks at every unit
(``list``) or needs an empty coordinator.

Everything is checked against the command reference (README "Command line"): the exact stdout
lines (coder's wording), the JSON keys, the diagnostics on stderr and the exit codes. Waits are
ordered by what the processes print (the waiting ``start`` announces itself on stderr before we
complete its dependency), never by sleeping; every wait is bounded by ``fail_after``. Steps
that only set the scene for the command under test go through the library's RPC client on the
same socket (``served.client()``): each console script costs ~0.15 s of CPU, and the command's
own output is checked where it is the subject.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio

from coordinator import __version__

from .cli_support import (
    CYCLE,
    DEPENDENCY_FAILED,
    ERROR,
    OK,
    TIMEOUT,
    UNITSYNC,
    UNREACHABLE,
    USAGE,
    Result,
    Served,
    background,
    env_for,
    read_all,
    read_line,
    status_parts,
    table,
    usage,
)
from .waits import WAIT

#: How much later than its ``--timeout`` a command may give up. A process's own start-up and
#: exit count too, and take seconds on a loaded runner; the bound is generous on purpose: it
#: only has to tell the given timeout from one read wrongly (``250ms`` as 250 s) or ignored (the
#: default, 5m).
LATE = 3.0

#: ``status`` lines before the dependency table: ``Unit: x``, ``Status: ...``, ``Reason: ...``.
def without_history(printed: str) -> dict[str, object]:
    """``status -o json`` without its ``history`` (test_cli_history.py checks that)."""
    shown = json.loads(printed)
    assert isinstance(shown.pop("history"), list), shown
    return shown


def diagnostic(line: str) -> str:
    """A line the CLI wrote to stderr, without the ``unitsync: `` prefix diagnostics carry."""
    return line.removeprefix("unitsync: ")


async def announced(process: trio.Process) -> str:
    """The first stderr line of a waiting ``start`` (printed once it waits), without prefix."""
    assert process.stderr is not None
    return diagnostic(await read_line(process.stderr))


async def finished(process: trio.Process) -> tuple[Result, float]:
    """Wait for ``process`` to exit: its result and when it exited (``trio.current_time()``)."""
    returncode = await process.wait()
    exited = trio.current_time()
    stdout = await read_all(process.stdout)
    stderr = await read_all(process.stderr)
    return Result(returncode, stdout, stderr), exited


def ok(result: Result, stdout: str) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (OK, stdout, ""), result


# --- golden cases ---------------------------------------------------------------------------


async def test_ping(served: Served) -> None:
    with trio.fail_after(WAIT):
        ok(await served.run("ping"), "Success\n")


async def test_nothing_registered(fresh_served: Served) -> None:
    with trio.fail_after(WAIT):
        ok(await fresh_served.run("list"), "No units registered\n")
        result = await fresh_served.run("list", "-o", "json")
        assert (result.returncode, json.loads(result.stdout)) == (OK, []), result

        result = await fresh_served.run("status", "nobody")
        assert result.returncode == OK, result
        assert status_parts(result.stdout) == (
            ["Unit: nobody", "Status: not registered", "Ready: true"],
            [["No dependencies found"]],
        ), result.stdout

        result = await fresh_served.run("status", "nobody", "-o", "json")
        assert result.returncode == OK, result
        assert without_history(result.stdout) == {
            "unit_name": "nobody", "status": "", "is_ready": True, "dependencies": [],
            "reason": "", "blocked_by": "",
        }
        # looking does not register
        ok(await fresh_served.run("list"), "No units registered\n")


async def test_start_and_complete_without_dependencies(served: Served) -> None:
    with trio.fail_after(WAIT):
        ok(await served.run("start", "solo"), 'Unit "solo" started with no dependencies\n')
        result = await served.run("status", "solo")
        assert result.returncode == OK, result
        assert status_parts(result.stdout) == (
            ["Unit: solo", "Status: started", "Ready: true"], [["No dependencies found"]]
        ), result.stdout

        ok(await served.run("complete", "solo"), "Success\n")
        result = await served.run("status", "solo")
        assert result.returncode == OK, result
        assert status_parts(result.stdout) == (
            ["Unit: solo", "Status: completed", "Ready: true"], [["No dependencies found"]]
        ), result.stdout


async def test_want_status_and_start_with_satisfied_dependencies(served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        # several deps in one step, printed as given (not sorted)
        ok(await served.run("want", "claude", "zeta", "git"),
           'Unit "claude" declared dependencies: [zeta, git]\n')
        ok(await served.run("want", "claude", "setup", "--requires", "started"),
           'Unit "claude" declared dependencies: [setup]\n')
        ok(await served.run("start", "zeta"), 'Unit "zeta" started with no dependencies\n')
        ok(await served.run("complete", "zeta"), "Success\n")
        ok(await served.run("start", "git"), 'Unit "git" started with no dependencies\n')

        # git started (completed required), setup not registered, zeta completed
        result = await served.run("status", "claude", "-o", "json")
        assert result.returncode == OK, result
        shown = json.loads(result.stdout)
        assert list(shown) == [
            "unit_name", "status", "is_ready", "dependencies", "reason", "blocked_by", "history"
        ]
        assert [e["event"] for e in shown.pop("history")] == [
            "registered (pending)", "depends on zeta (completed)", "depends on git (completed)",
            "depends on setup (started)",
        ]
        shown["dependencies"].sort(key=lambda dep: dep["depends_on"])
        assert shown == {
            "unit_name": "claude",
            "status": "pending",
            "is_ready": False,
            "dependencies": [
                {"depends_on": "git", "required_status": "completed",
                 "current_status": "started", "is_satisfied": False},
                {"depends_on": "setup", "required_status": "started",
                 "current_status": "", "is_satisfied": False},
                {"depends_on": "zeta", "required_status": "completed",
                 "current_status": "completed", "is_satisfied": True},
            ],
            "reason": "",
            "blocked_by": "",
        }

        result = await served.run("status", "claude")
        assert result.returncode == OK, result
        head, rows = status_parts(result.stdout)
        assert head == ["Unit: claude", "Status: pending", "Ready: false"], result.stdout
        assert rows[0] == ["DEPENDS ON", "REQUIRED STATUS", "CURRENT STATUS", "SATISFIED"]
        assert sorted(rows[1:]) == [
            ["git", "completed", "started", "false"],
            ["setup", "started", "not registered", "false"],
            ["zeta", "completed", "completed", "true"],
        ], result.stdout

        # `started` is reached by a started setup; git completes: claude is ready
        ok(await served.run("start", "setup"), 'Unit "setup" started with no dependencies\n')
        ok(await served.run("complete", "git"), "Success\n")
        result = await served.run("status", "claude")
        assert status_parts(result.stdout)[0] == [
            "Unit: claude", "Status: pending", "Ready: true"
        ], result.stdout

        # dependencies sorted by name in the answer
        ok(await served.run("start", "claude"),
           'Unit "claude" started immediately, dependencies already satisfied: '
           "[git, setup, zeta]\n")
        result = await served.run("status", "claude")
        head, rows = status_parts(result.stdout)
        assert head == ["Unit: claude", "Status: started", "Ready: true"], result.stdout
        assert sorted(rows[1:]) == [
            ["git", "completed", "completed", "true"],
            ["setup", "started", "started", "true"],
            ["zeta", "completed", "completed", "true"],
        ], result.stdout


async def test_list_sorted_as_table_and_json(fresh_served: Served) -> None:
    with trio.fail_after(WAIT):
        ok(await fresh_served.run("want", "claude", "git"),
           'Unit "claude" declared dependencies: [git]\n')
        ok(await fresh_served.run("start", "git"), 'Unit "git" started with no dependencies\n')
        ok(await fresh_served.run("start", "agent"), 'Unit "agent" started with no dependencies\n')
        ok(await fresh_served.run("complete", "agent"), "Success\n")

        result = await fresh_served.run("list")
        assert (result.returncode, result.stderr) == (OK, ""), result
        assert table(result.stdout) == [
            ["UNIT", "STATUS", "READY"],
            ["agent", "completed", "true"],
            ["claude", "pending", "false"],
            ["git", "started", "true"],
        ], result.stdout

        result = await fresh_served.run("list", "-o", "json")
        assert (result.returncode, result.stderr) == (OK, ""), result
        assert json.loads(result.stdout) == [
            {"unit_name": "agent", "status": "completed", "is_ready": True},
            {"unit_name": "claude", "status": "pending", "is_ready": False},
            {"unit_name": "git", "status": "started", "is_ready": True},
        ]


async def test_start_waits_until_both_dependencies_complete(served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        ok(await served.run("want", "pair", "second", "first"),
           'Unit "pair" declared dependencies: [second, first]\n')
        async with background(served, "start", "pair") as start:
            assert await announced(start) == (
                'Unit "pair" is waiting for dependencies to be satisfied: [first, second]\n'
            )
            ok(await served.run("start", "first"), 'Unit "first" started with no dependencies\n')
            ok(await served.run("complete", "first"), "Success\n")
            # one of two: still waiting, and claude is still pending
            result = await served.run("status", "pair")
            assert status_parts(result.stdout)[0] == [
                "Unit: pair", "Status: pending", "Ready: false"
            ], result.stdout
            assert start.poll() is None
            ok(await served.run("start", "second"), 'Unit "second" started with no dependencies\n')
            ok(await served.run("complete", "second"), "Success\n")
            result, _ = await finished(start)
        assert (result.returncode, result.stdout) == (
            OK, 'Unit "pair" finished waiting for dependencies: [first, second]\n'
        ), result
        result = await served.run("status", "pair")
        assert status_parts(result.stdout)[0] == [
            "Unit: pair", "Status: started", "Ready: true"
        ], result.stdout


async def test_start_is_woken_by_complete(served: Served) -> None:
    """Checked by order, not by a wall clock (which a loaded runner breaks): the waiting `start`
    has not exited when the last dependency completes, and then exits with its line. That the
    wake-up is pushed at once, not polled, is timed by the autojump clock in-process
    (test_semantics.py::test_ready_is_answered_the_moment_its_dependency_completes)."""
    with trio.fail_after(WAIT * 2):
        async with served.client() as client:
            await client.unit("woken").want("woken-git", "woken-setup")
            await client.unit("woken-setup").start()
            await client.unit("woken-setup").complete()
            await client.unit("woken-git").start()
        async with background(served, "start", "woken") as start:
            # only the unmet dependency is announced
            assert await announced(start) == (
                'Unit "woken" is waiting for dependencies to be satisfied: [woken-git]\n'
            )
            launched = trio.current_time()
            assert start.poll() is None  # still waiting: woken-setup alone did not wake it
            ok(await served.run("complete", "woken-git"), "Success\n")
            completed = trio.current_time()
            result, exited = await finished(start)
        elapsed = exited - completed
        print(f"\nstart exited {elapsed * 1000:.0f} ms after `complete woken-git` returned "
              f"({(exited - launched) * 1000:.0f} ms after it was launched, which took "
              f"{(completed - launched) * 1000:.0f} ms)")
        assert (result.returncode, result.stdout) == (
            OK, 'Unit "woken" finished waiting for dependencies: [woken-git, woken-setup]\n'
        ), result


# --- errors, and the coordinator keeps working after each -------------------------------------


async def test_start_times_out(served: Served) -> None:
    with trio.fail_after(WAIT):
        async with served.client() as client:
            await client.unit("timeout-claude").want("timeout-git")
        began = trio.current_time()
        result = await served.run("start", "timeout-claude", "--timeout", "250ms")
        elapsed = trio.current_time() - began
        print(f"\nstart --timeout 250ms gave up after {elapsed:.2f} s")
        assert (result.returncode, result.stdout) == (TIMEOUT, ""), result
        assert re.search(r"tim(ed|e|ing) ?out", result.stderr, re.IGNORECASE), result.stderr
        assert 0.25 <= elapsed < 0.25 + LATE  # never early; late only by the process's own time

        # nothing changed: claude still pending, and it starts once git completes
        result = await served.run("status", "timeout-claude")
        assert status_parts(result.stdout)[0] == [
            "Unit: timeout-claude", "Status: pending", "Ready: false"
        ], result.stdout
        async with served.client() as client:
            await client.unit("timeout-git").start()
            await client.unit("timeout-git").complete()
        ok(await served.run("start", "timeout-claude", "--timeout", "1s"),
           'Unit "timeout-claude" started immediately, dependencies already satisfied: '
           "[timeout-git]\n")


BLOCKED_CLAUDE = """\
Unit: claude
Status: skipped
Ready: false
Reason: dependency "git" failed: clone failed
Blocked by: git

DEPENDS ON  REQUIRED STATUS  CURRENT STATUS  SATISFIED
git         completed        failed          false
setup       started          not registered  false
"""


async def test_dependency_failing_answers_waiting_starts(fresh_served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        ok(await fresh_served.run("want", "claude", "git"),
           'Unit "claude" declared dependencies: [git]\n')
        ok(await fresh_served.run("want", "claude", "setup", "--requires", "started"),
           'Unit "claude" declared dependencies: [setup]\n')
        ok(await fresh_served.run("want", "review", "claude"),
           'Unit "review" declared dependencies: [claude]\n')
        ok(await fresh_served.run("start", "git"), 'Unit "git" started with no dependencies\n')
        async with (
            background(fresh_served, "start", "claude") as claude,
            background(fresh_served, "start", "review") as review,
        ):
            assert await announced(claude) == (
                'Unit "claude" is waiting for dependencies to be satisfied: [git, setup]\n'
            )
            assert await announced(review) == (
                'Unit "review" is waiting for dependencies to be satisfied: [claude]\n'
            )
            launched = trio.current_time()
            assert claude.poll() is None and review.poll() is None  # both still waiting
            ok(await fresh_served.run("fail", "git", "--reason", "clone failed"), "Success\n")
            failed = trio.current_time()
            direct, direct_exited = await finished(claude)
            transitive, transitive_exited = await finished(review)
        print(f"\nstart exited {(direct_exited - failed) * 1000:.0f} ms after `fail git` "
              f"returned (transitively: {(transitive_exited - failed) * 1000:.0f} ms; "
              f"`fail git` took {(failed - launched) * 1000:.0f} ms)")
        for result in (direct, transitive):
            assert (result.returncode, result.stdout) == (DEPENDENCY_FAILED, ""), result
            assert "git" in result.stderr and "clone failed" in result.stderr, result.stderr
        # answered at once, not at their timeout (the default, 5m): the fail_after bounds it; that
        # the failure is pushed at once is timed in-process by the autojump clock
        # (test_semantics.py::test_ready_is_answered_the_moment_its_dependency_completes)

        # the failed unit shows its reason, the unit it holds back shows what blocks it
        result = await fresh_served.run("status", "git")
        assert result.returncode == OK, result
        assert status_parts(result.stdout) == (
            ["Unit: git", "Status: failed", "Ready: true", "Reason: clone failed"],
            [["No dependencies found"]],
        ), result.stdout
        result = await fresh_served.run("status", "git", "-o", "json")
        assert without_history(result.stdout) == {
            "unit_name": "git", "status": "failed", "is_ready": True, "dependencies": [],
            "reason": "clone failed", "blocked_by": "",
        }

        # the README's example, to the character: claude's start marked it skipped
        shown = await fresh_served.run("status", "claude")
        assert shown.returncode == OK, shown
        before, history = shown.stdout.split("\nHistory:\n")
        assert before == BLOCKED_CLAUDE
        assert [row[2:] for row in table(history)] == [
            ["EVENT"], ["registered (pending)"], ["depends on git (completed)"],
            ["depends on setup (started)"],
            ["pending -> skipped: dependency \"git\" failed: clone failed"],
        ]
        result = await fresh_served.run("status", "claude", "-o", "json")
        assert without_history(result.stdout) == {
            "unit_name": "claude", "status": "skipped", "is_ready": False,
            "dependencies": [
                {"depends_on": "git", "required_status": "completed",
                 "current_status": "failed", "is_satisfied": False},
                {"depends_on": "setup", "required_status": "started",
                 "current_status": "", "is_satisfied": False},
            ],
            "reason": 'dependency "git" failed: clone failed', "blocked_by": "git",
        }
        review = json.loads((await fresh_served.run("status", "review", "-o", "json")).stdout)
        assert (review["status"], review["reason"], review["blocked_by"]) == (
            "skipped", 'dependency "git" failed: clone failed', "git"
        )

        # a start after the failure is answered at once, the same way
        result = await fresh_served.run("start", "claude")
        assert (result.returncode, result.stdout) == (DEPENDENCY_FAILED, ""), result
        assert "git" in result.stderr and "clone failed" in result.stderr, result.stderr


async def test_cycle_refused_and_nothing_changed(fresh_served: Served) -> None:
    with trio.fail_after(WAIT):
        ok(await fresh_served.run("want", "a", "b"), 'Unit "a" declared dependencies: [b]\n')
        ok(await fresh_served.run("want", "b", "c"), 'Unit "b" declared dependencies: [c]\n')
        before = await fresh_served.run("list", "-o", "json")
        assert [u["unit_name"] for u in json.loads(before.stdout)] == ["a", "b"], before

        result = await fresh_served.run("want", "c", "a")
        assert (result.returncode, result.stdout) == (CYCLE, ""), result
        found = re.search(r"dependency cycle refused: (.+)$", result.stderr, re.MULTILINE)
        assert found, result.stderr
        path = found.group(1).strip().split(" -> ")
        # the whole cycle, closed: a -> b -> c -> a or a rotation of it
        assert len(path) == 4 and path[0] == path[-1], path
        assert sorted(path[:-1]) == ["a", "b", "c"], path
        edges = {("a", "b"), ("b", "c"), ("c", "a")}
        assert set(zip(path, path[1:])) == edges, path

        # c was not registered, a's and b's dependencies are as before
        after = await fresh_served.run("list", "-o", "json")
        assert json.loads(after.stdout) == json.loads(before.stdout), after
        result = await fresh_served.run("status", "c")
        assert status_parts(result.stdout) == (
            ["Unit: c", "Status: not registered", "Ready: true"], [["No dependencies found"]]
        ), result.stdout
        ok(await fresh_served.run("ping"), "Success\n")


async def test_refused_requests_exit_1(served: Served) -> None:
    with trio.fail_after(WAIT):
        ok(await served.run("start", "refused-git"),
           'Unit "refused-git" started with no dependencies\n')
        result = await served.run("start", "refused-git")
        assert (result.returncode, result.stdout) == (ERROR, ""), result
        assert result.stderr.startswith("unitsync: "), result.stderr
        assert "refused-git" in result.stderr and "already started" in result.stderr, result

        result = await served.run("complete", "refused-nobody")
        assert (result.returncode, result.stdout) == (ERROR, ""), result
        assert result.stderr.startswith("unitsync: "), result.stderr
        assert "refused-nobody" in result.stderr and "not found" in result.stderr, result

        # git is still started, nobody was not registered
        assert await served.state("refused-git") == ("started", "")
        assert await served.state("refused-nobody") == ("", "")
        ok(await served.run("complete", "refused-git"), "Success\n")


def test_usage_errors_exit_2() -> None:
    # (arguments, what stderr must mention)
    cases: list[tuple[tuple[str, ...], str]] = [
        (("start", "x", "--timeout", "5q"), "5q"),  # bad duration
        (("start", "x", "--timeout=-1s"), "-1s"),
        (("start", ""), "unitsync: invalid unit name"),  # empty names
        (("want", "", "a"), "unitsync: invalid unit name"),
        (("want", "a", ""), "unitsync: invalid unit name"),
        (("complete", "x" * 256), "unitsync: invalid unit name"),  # too long
        (("status", "a\tb"), "unitsync: invalid unit name"),  # control character
        (("want", "a", "b", "--requires", "pending"), "pending"),  # not a requirement
        (("list", "-o", "yaml"), "yaml"),
        (("start",), "start"),  # missing argument
        (("start", "x", "--bogus"), "--bogus"),
        (("frobnicate",), "frobnicate"),
    ]
    for args, mentioned in cases:  # in process: none of them gets as far as a coordinator
        result = usage(*args)
        assert (result.returncode, result.stdout) == (USAGE, ""), (args, result)
        assert mentioned in result.stderr, (args, result.stderr)
        assert result.stderr.startswith("unitsync: ") and result.stderr.count("\n") == 1


def test_durations_accepted() -> None:
    # in process: an accepted duration gets as far as reaching for the coordinator, which is not
    # there (exit 69); a refused one would exit 2. That 250ms is a quarter of a second, not 250
    # seconds, test_start_times_out checks on a real coordinator.
    for duration in ["30s", "5m", "1h30m", "250ms", "1.5s", "7", "0"]:
        result = usage("start", "u", "--timeout", duration)
        assert (result.returncode, result.stdout) == (UNREACHABLE, ""), (duration, result)
        assert "unitsync serve" in result.stderr, (duration, result.stderr)


async def test_bad_duration_is_a_unitsync_diagnostic(served: Served) -> None:
    # README: diagnostics go to stderr as `unitsync: <message>`; a duration is ours to explain
    with trio.fail_after(WAIT):
        result = await served.run("start", "x", "--timeout", "5q")
    assert result.returncode == USAGE, result
    assert result.stderr.startswith("unitsync: ") and "5q" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args", [("ping",), ("start", "claude"), ("status", "claude"), ("list",)]
)
async def test_no_coordinator_exits_69(sock_dir: Path, args: tuple[str, ...]) -> None:
    path = sock_dir / "unitsync.sock"
    with trio.fail_after(WAIT):
        result = await Served(path, env_for(path)).run(*args)
    assert (result.returncode, result.stdout) == (UNREACHABLE, ""), result
    assert str(path) in result.stderr, result.stderr
    assert "unitsync serve" in result.stderr, result.stderr


async def test_socket_option_overrides_environment(served: Served, sock_dir: Path) -> None:
    bogus = sock_dir / "elsewhere.sock"
    elsewhere = Served(bogus, env_for(bogus))
    with trio.fail_after(WAIT):
        result = await elsewhere.run("ping")
        assert result.returncode == UNREACHABLE and str(bogus) in result.stderr, result
        ok(await elsewhere.run("ping", "--socket", str(served.path)), "Success\n")
        ok(await elsewhere.run("start", "socket-git", "--socket", str(served.path)),
           'Unit "socket-git" started with no dependencies\n')
        assert await served.state("socket-git") == ("started", "")


# --- without a coordinator: version and help -------------------------------------------------


async def cli(*args: str) -> Result:
    """``unitsync ARGS`` with no coordinator anywhere (the socket points at nothing)."""
    nowhere = Path("/nonexistent/unitsync.sock")
    with trio.fail_after(WAIT):
        return await Served(nowhere, env_for(nowhere)).run(*args)


async def test_version() -> None:
    result = await cli("--version")
    assert result.returncode == OK, result
    assert __version__ in result.stdout.split(), result.stdout


COMMANDS = ["serve", "ping", "want", "start", "complete", "fail", "status", "list", "graph",
            "wait", "watch", "run"]


async def test_help_lists_commands_and_exit_codes() -> None:
    result = await cli("--help")
    assert result.returncode == OK, result
    flat = " ".join(result.stdout.split())
    for command in COMMANDS:
        assert re.search(rf"\b{command}\b", flat), (command, result.stdout)
    assert "exit code" in flat.lower(), result.stdout
    for code, meaning in [(0, "ok"), (1, "error"), (2, "usage"), (3, "timeout"),
                          (4, "dependency failed"), (5, "cycle"), (69, "unreachable")]:
        assert re.search(rf"\b{code}\W+(\w+\W+){{0,2}}?{meaning}", flat, re.IGNORECASE), (
            code, result.stdout
        )


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("serve", ["--socket"]),
        ("ping", ["--socket"]),
        ("want", ["--requires", "--socket"]),
        ("start", ["--timeout", "--socket"]),
        ("complete", ["--socket"]),
        ("fail", ["--reason", "--socket"]),
        ("status", ["-o", "json", "--socket"]),
        ("list", ["-o", "json", "--socket"]),
        ("graph", ["-o", "dot", "--socket"]),
        ("wait", ["--for", "--timeout", "--socket"]),
        ("watch", ["-o", "--socket"]),
        ("run", ["--after", "--requires", "--timeout", "--reconnect-timeout", "--socket"]),
    ],
)
def test_command_help(command: str, options: list[str]) -> None:
    # in process, through the same entry point (test_help_lists_commands runs the console script)
    result = usage(command, "--help")
    assert (result.returncode, result.stderr) == (OK, ""), result
    for option in options:
        assert option in result.stdout, (option, result.stdout)


def test_console_script_installed() -> None:
    # the suite must run the real entry point, not a stand-in
    assert Path(UNITSYNC[0]).name == "unitsync", UNITSYNC

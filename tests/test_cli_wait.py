"""``unitsync wait`` on several units and on all of them, and the progress lines of ``start``,
``wait`` and ``run`` (real console script, real ``unitsync serve``). The units around the
command under test are moved through the library's RPC client on the same socket
(``served.client()``): each console script costs ~0.15 s of CPU, and ``start``/``complete``/
``fail`` have tests of their own (test_cli.py)."""

from __future__ import annotations

import re

import pytest
import trio


from .cli_support import (
    DEPENDENCY_FAILED, OK, USAGE, Served, background, read_all, read_line, usage,
)
from .waits import WAIT



async def test_wait_for_several_units(served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        async with served.client() as client:
            a, b, c = (client.unit(name) for name in ("w-a", "w-b", "w-c"))
            await a.start()
            await b.start()
            await a.complete()
            async with background(
                served, "wait", "w-a", "w-b", "w-c", "--for", "completed"
            ) as waiting:
                assert waiting.stderr is not None and waiting.stdout is not None
                # w-a is there already; each other one says so once its wait is held
                lines = {await read_line(waiting.stderr), await read_line(waiting.stderr)}
                assert lines == {
                    'Unit "w-b" is waiting to reach completed (it is started)\n',
                    'Unit "w-c" is waiting to reach completed (it is not registered)\n',
                }
                await b.complete()
                assert waiting.poll() is None  # w-c still missing
                await c.start()
                await c.complete()
                assert await waiting.wait() == OK
                assert await read_all(waiting.stdout) == (
                    "Units [w-a, w-b, w-c] reached completed\n"
                )


async def test_wait_all_waits_for_units_registered_meanwhile(fresh_served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        async with fresh_served.client() as client:
            x, y, z = (client.unit(name) for name in "xyz")
            await x.start()
            await y.start()
            await y.complete()
            async with background(fresh_served, "wait", "--all") as waiting:
                assert waiting.stderr is not None and waiting.stdout is not None
                assert await read_line(waiting.stderr) == (
                    'Unit "x" is waiting to reach completed (it is started)\n'
                )
                await z.start()  # registered during the wait
                await x.complete()
                assert await read_line(waiting.stderr) == (
                    'Unit "z" is waiting to reach completed (it is started)\n'
                )
                await z.complete()
                assert await waiting.wait() == OK
                assert await read_all(waiting.stdout) == "All 3 units reached completed\n"


@pytest.mark.parametrize(("args", "waiting_lines"), [(["a", "b"], 2), (["--all"], 1)])
async def test_wait_stops_at_the_first_failure(
    fresh_served: Served, args: list[str], waiting_lines: int
) -> None:
    with trio.fail_after(WAIT * 2):
        async with fresh_served.client() as client:
            await client.unit("b").start()
            async with background(fresh_served, "wait", *args) as waiting:
                assert waiting.stderr is not None
                for _ in range(waiting_lines):  # a (not registered) and b, or the registered b
                    await read_line(waiting.stderr)
                await client.unit("b").fail("broke")
                assert await waiting.wait() == DEPENDENCY_FAILED
                assert "unit 'b' failed: broke" in await read_all(waiting.stderr)


def test_wait_needs_units_or_all_not_both() -> None:
    for args in (["wait"], ["wait", "x", "--all"]):
        result = usage(*args)  # in process, no coordinator behind
        assert result.returncode == USAGE, result
        assert result.stderr.startswith("unitsync: wait needs units, or --all")


PROGRESS = r"\((\d+s)\)\n$"


async def test_progress_lines_while_waiting(fresh_served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        async with fresh_served.client() as client:
            await client.unit("claude").want("git", "db")
            await client.unit("git").start()
        async with background(fresh_served, "start", "claude", "--progress", "100ms") as start:
            assert start.stderr is not None
            assert await read_line(start.stderr) == (
                'Unit "claude" is waiting for dependencies to be satisfied: [db, git]\n'
            )
            line = await read_line(start.stderr)
            assert re.fullmatch(
                r'unitsync: Unit "claude" still waiting for dependencies: '
                r"\[db \(not registered\), git \(started\)\] " + PROGRESS, line
            ), line
            async with fresh_served.client() as client:
                await client.unit("db").start()
                await client.unit("db").complete()
            # lines printed before db completed may still come; then one knows db is there
            while "[db (" in (line := await read_line(start.stderr)):
                pass
            assert re.fullmatch(
                r'unitsync: Unit "claude" still waiting for dependencies: \[git \(started\)\] '
                + PROGRESS, line
            ), line

        for args, skipped, expected in (
            (["git"], 1, r'unitsync: Unit "git" still waiting to reach completed \(it is started\) '),
            (["--all"], 2, r"unitsync: 1 of 3 reached completed; waiting for: claude \(pending\), "
                           r"git \(started\) "),
        ):
            async with background(fresh_served, "wait", *args, "--progress", "100ms") as wait:
                assert wait.stderr is not None
                for _ in range(skipped):  # the "is waiting" lines
                    await read_line(wait.stderr)
                line = await read_line(wait.stderr)
                assert re.fullmatch(expected + PROGRESS, line), line

"""The command line for outcomes: ``--requires finished``, ``skip``, ``wait --for finished``,
and what ``status`` shows of them (real console script, real ``unitsync serve``). Steps that
only set the scene go through the library's RPC client on the same socket
(``served.client()``): a console script costs ~0.15 s of CPU, and ``start``/``fail``/
``complete`` have tests of their own."""

from __future__ import annotations

import json

import trio

from .cli_support import DEPENDENCY_FAILED, ERROR, OK, TIMEOUT, Served, status_parts
from .waits import WAIT



async def test_a_finished_requirement_runs_after_a_failure(served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        declared = await served.run("want", "report", "build", "--requires", "finished")
        assert declared.stdout == 'Unit "report" declared dependencies: [build]\n'
        async with served.client() as client:
            await client.unit("build").start()
        status = await served.run("status", "report", check=True)
        assert status_parts(status.stdout)[1] == [
            ["DEPENDS ON", "REQUIRED STATUS", "CURRENT STATUS", "SATISFIED"],
            ["build", "finished", "started", "false"],
        ]
        async with served.client() as client:
            await client.unit("build").fail("compile error")
        started = await served.run("start", "report")
        assert (started.returncode, started.stdout) == (
            OK, 'Unit "report" started immediately, dependencies already satisfied: [build]\n'
        )
        waited = await served.run("wait", "build", "--for", "finished")
        assert (waited.returncode, waited.stdout) == (OK, 'Unit "build" reached finished\n')


async def test_skip_and_what_it_tells_dependents(served: Served) -> None:
    with trio.fail_after(WAIT * 2):
        async with served.client() as client:
            await client.unit("lint-user").want("lint")
            await client.unit("lint").want("fmt")
        skipped = await served.run("skip", "lint", "--reason", "not on CI")
        assert (skipped.returncode, skipped.stdout) == (OK, "Success\n")
        data = json.loads((await served.run("status", "lint", "-o", "json", check=True)).stdout)
        assert (data["status"], data["reason"]) == ("skipped", "not on CI")
        again = await served.run("skip", "lint")
        assert (again.returncode, again.stderr) == (
            ERROR, "unitsync: unit 'lint' is already skipped\n"
        )
        claude = await served.run("start", "lint-user")
        assert claude.returncode == DEPENDENCY_FAILED, claude
        assert "unit 'lint' was skipped: not on CI (via lint-user -> lint)" in claude.stderr
        assert 'Unit "lint-user" skipped: dependency "lint" was skipped: not on CI' in claude.stderr
        listed = json.loads((await served.run("list", "-o", "json", check=True)).stdout)
        statuses = {u["unit_name"]: u["status"] for u in listed}
        assert (statuses["lint-user"], statuses["lint"]) == ("skipped", "skipped")
        rerun = await served.run("start", "lint", "--timeout", "200ms")  # a re-run waits
        assert rerun.returncode == TIMEOUT, rerun  # for fmt, like any start
        async with served.client() as client:
            await client.unit("fmt").start()
            await client.unit("fmt").complete()
        assert (await served.run("start", "lint")).returncode == OK

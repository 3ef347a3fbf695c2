"""Cross-language interop: clients written against ``schema/unitsync.capnp`` alone, in separate
processes, talk to ``serve()`` running in this process.

* Interop 1: ``interop/plain_client.py`` — plain pycapnp + asyncio, no import from this project.
* Interop 2: ``interop/client.c++`` — the C++ Cap'n Proto library (Debian's libcapnp-dev), the
  schema compiled with ``capnp compile -oc++``. Needs ``g++``, ``capnp`` and ``pkg-config``'s
  ``capnp-rpc`` (Debian: ``apt-get install g++ capnproto libcapnp-dev pkg-config``; ``.ci/run``
  installs them); skipped, saying so, only when they cannot be found.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import trio

from coordinator import LocalCoordinator, Status, serve
from coordinator.rpc._convert import REVISION
from stress._cxx import BuildError, build_cached, missing_tools

from .waits import WAIT

HERE = Path(__file__).resolve().parent
SCHEMA = HERE.parent / "schema" / "unitsync.capnp"
INTEROP = HERE / "interop"

#: Upper bound for running one client process (interpreter start-up included).
PROCESS_WAIT = 20.0

#: What every client does to find an error's code (see the schema header).
CODE = re.compile(r"unitsync\.[a-z-]+: ")


def code_of(description: str) -> str | None:
    found = CODE.search(description)
    return found.group(0)[:-2] if found else None


async def run_client(args: list[str]) -> dict:
    """Run a client process; its one line of JSON on stdout, parsed."""
    with trio.fail_after(PROCESS_WAIT):
        done = await trio.run_process(args, capture_stdout=True, capture_stderr=True, check=False)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"{args[0]} exited {done.returncode}:\n{stderr}"
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {done.stdout!r}\nstderr:\n{stderr}"
    return json.loads(lines[0])


async def check_server_side(server: LocalCoordinator, *also: str) -> None:
    """What both scenarios leave in the coordinator, seen in-process."""
    with trio.fail_after(WAIT):
        git = await server.unit("git").info()
        claude = await server.unit("claude").info()
        names = [info.name for info in await server.list()]
    assert git.status is Status.COMPLETED
    assert claude.ready
    assert claude.status is Status.PENDING  # became ready; nobody started it
    assert [(d.depends_on, d.required, d.current) for d in claude.dependencies] == [
        ("git", Status.COMPLETED, Status.COMPLETED)
    ]
    assert names == sorted(["claude", "git", *also])  # the refused calls registered nothing


# --- Interop 1: plain pycapnp ---------------------------------------------------------------


async def test_plain_pycapnp_client(server: LocalCoordinator, sock_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            path = await nursery.start(serve, server, sock_dir / "s.sock")
        seen = await run_client(
            [sys.executable, str(INTEROP / "plain_client.py"), str(SCHEMA), str(path)]
        )
        await check_server_side(server)
        nursery.cancel_scope.cancel()

    assert seen["version"]
    assert code_of(seen["start_not_ready"]) == "unitsync.not-ready"
    assert "unitsync.not-ready: unit 'claude' is not ready" in seen["start_not_ready"]
    assert seen["ready_before"] is False
    assert seen["ready"] is True
    assert seen["status"] == "pending"
    assert seen["dependencies"] == [
        {"dependsOn": "git", "required": "completed", "current": "completed", "satisfied": True}
    ]
    assert code_of(seen["cycle"]) == "unitsync.cycle"
    assert "git -> claude -> git" in seen["cycle"]
    assert code_of(seen["invalid_name"]) == "unitsync.invalid-name"
    assert code_of(seen["not_found"]) == "unitsync.not-found"
    assert "'ghost'" in seen["not_found"]
    # each description carries the machine-readable data line after the message
    for key in ("start_not_ready", "cycle", "invalid_name", "not_found"):
        data = seen[key].split("\nunitsync-data: ", 1)[1].splitlines()[0]
        assert json.loads(data)["type"]
    assert json.loads(seen["cycle"].split("\nunitsync-data: ", 1)[1].splitlines()[0]) == {
        "type": "CycleError",
        "args": [["git", "claude", "git"]],
    }


# --- Interop 2: C++ -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cxx_client() -> Path:
    """The C++ client, built from a copy of the schema (``stress/_cxx.py``, as the wake-up
    benchmark's waiters are; kept in the temp directory per content of the client and the
    schema). Skips (loudly) only when the toolchain is missing; a build failure fails the
    test."""
    missing = missing_tools()
    if missing:
        pytest.skip(
            "INTEROP 2 (C++ client) NOT RUN: missing " + ", ".join(missing)
            + " — install with `apt-get install g++ capnproto libcapnp-dev pkg-config`"
        )
    try:
        return build_cached(INTEROP / "client.c++")
    except BuildError as error:
        pytest.fail(str(error))


async def test_cxx_client(cxx_client: Path, server: LocalCoordinator, sock_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            path = await nursery.start(serve, server, sock_dir / "s.sock")
        seen = await run_client([str(cxx_client), f"unix:{path}"])
        await check_server_side(server, "lint", "report")
        nursery.cancel_scope.cancel()

    assert seen["version"]
    # ready() was sent, pipelined, before this info(); git was not registered yet
    assert seen["before"]["ready"] is False
    assert seen["before"]["dependencies"] == [
        {"dependsOn": "git", "required": "completed", "current": "notRegistered", "satisfied": False}
    ]
    assert seen["ready"] == {
        "name": "claude",
        "status": "pending",
        "ready": True,
        "dependencies": [
            {"dependsOn": "git", "required": "completed", "current": "completed", "satisfied": True}
        ],
    }
    assert code_of(seen["cycle"]) == "unitsync.cycle"
    assert "unitsync.cycle: dependency cycle refused: git -> claude -> git\n" in seen["cycle"]
    assert seen["cycleType"] == "failed"
    # the client says hello(2) and the server its own revision: the connection speaks 2,
    # so finished and skipped arrive as they are
    assert seen["revision"] == REVISION  # the server's
    assert seen["report"] == {
        "name": "report", "status": "pending", "ready": True,
        "dependencies": [
            {"dependsOn": "lint", "required": "finished", "current": "skipped", "satisfied": True}
        ],
    }
    assert (seen["lint"]["status"], seen["lint"]["ready"]) == ("skipped", True)


async def test_a_client_built_from_revision_1_never_meets_a_value_it_does_not_know(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """Revision 2 added ``skipped`` and ``finished``; a client built from the revision-1 schema
    (``interop/unitsync-r1.capnp``, kept as it was) never says hello, so it is sent a skipped
    unit as failed and a finished requirement as completed — and keeps working."""
    with trio.fail_after(WAIT):
        await server.unit("report").want("build", requires=Status.FINISHED)
        await server.unit("claude").want("build")
        await server.unit("build").register()
        await server.unit("build").skip("not needed")

    async def skip_late() -> None:  # the client registers "late" once it watches
        async with server.watch() as events:
            async for event in events:
                if event.unit == "late":
                    await server.unit("late").skip("late")
                    return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(skip_late)
        with trio.fail_after(WAIT):
            path = await nursery.start(serve, server, sock_dir / "s.sock")
        seen = await run_client([
            sys.executable, str(INTEROP / "r1_client.py"), str(INTEROP / "unitsync-r1.capnp"),
            str(path), "build", "report", "claude",
        ])
        nursery.cancel_scope.cancel()
    units = seen["units"]
    assert units["build"] == {
        "status": "failed", "reason": "not needed", "blockedBy": "", "dependencies": []
    }
    assert units["report"]["dependencies"] == [["build", "completed", "failed", True]]
    assert units["report"]["status"] == "pending"
    assert (units["claude"]["blockedBy"], units["claude"]["dependencies"]) == (
        "build", [["build", "completed", "failed", False]]
    )
    assert ["build", "failed"] in seen["list"]
    assert seen["events"] == [
        ["late", "notRegistered", "pending", ""], ["late", "pending", "failed", "late"],
    ]
    assert (await server.unit("build").info()).status is Status.SKIPPED  # the truth, in process

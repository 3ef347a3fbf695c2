"""Interop 1: a unitsync client written against the wire contract only.

Uses nothing but pycapnp, asyncio and ``schema/unitsync.capnp`` — no import from the unitsync
project — the way a third party would. Usage::

    python plain_client.py SCHEMA.capnp SOCKET_PATH

Drives a scenario against the coordinator at SOCKET_PATH, prints one JSON line with what it
observed and exits 0; any unexpected result prints the reason to stderr and exits 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys

import capnp

#: How a client finds the error code in a capnp exception description (see the schema header).
CODE = re.compile(r"unitsync\.[a-z-]+: ")


class Unexpected(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Unexpected(what)


def code_of(description: str) -> str | None:
    found = CODE.search(description)
    return found.group(0)[:-2] if found else None


async def expect_error(awaitable, code: str, what: str) -> str:
    """Await a call that must fail with ``code``; return the exception description."""
    try:
        result = await awaitable
    except capnp.KjException as exc:
        description = exc.description or str(exc)
        check(code_of(description) == code, f"{what}: expected {code}, got {description!r}")
        return description
    raise Unexpected(f"{what}: expected {code}, but the call returned {result!r}")


async def main(schema_path: str, socket_path: str) -> dict:
    # /capnp/stream.capnp (imported by our schema) ships inside pycapnp's own directory.
    S = capnp.load(schema_path, imports=[os.path.dirname(os.path.dirname(capnp.__file__))])
    stream = await capnp.AsyncIoStream.create_unix_connection(socket_path)
    client = capnp.TwoPartyClient(stream)
    coord = client.bootstrap().cast_as(S.Coordinator)
    seen: dict = {}

    seen["version"] = (await coord.ping()).version

    # Pipelining: use the Unit capability before unit() has answered.
    claude = coord.unit("claude").unit
    await claude.want(["git"], "completed")

    seen["start_not_ready"] = await expect_error(claude.start(), "unitsync.not-ready", "start claude")

    # ready() is sent now and stays pending until git completes.
    ready = claude.ready()
    before = (await claude.info()).info
    seen["ready_before"] = before.ready
    check(before.ready is False, "claude ready before git completed")

    git = coord.unit("git").unit
    await git.start()
    await git.complete()
    info = (await ready).info
    seen["ready"] = info.ready
    seen["status"] = str(info.status)
    seen["dependencies"] = [
        {
            "dependsOn": d.dependsOn,
            "required": str(d.required),
            "current": str(d.current),
            "satisfied": d.satisfied,
        }
        for d in info.dependencies
    ]
    check(info.ready is True, "ready() answered with ready = false")
    check(len(info.dependencies) == 1, f"dependencies: {seen['dependencies']}")
    check(info.dependencies[0].current == "completed", f"dependencies: {seen['dependencies']}")

    # `requires` is passed explicitly: left out it is the enum's default, notRegistered, which
    # the coordinator refuses (unitsync.invalid-argument) before looking for a cycle.
    seen["cycle"] = await expect_error(
        git.want(["claude"], "completed"), "unitsync.cycle", "git wants claude"
    )
    check("git -> claude -> git" in seen["cycle"], f"cycle not named: {seen['cycle']!r}")

    # unit("") fails on the call itself; a call on its pipelined capability fails the same way.
    seen["invalid_name"] = await expect_error(coord.unit(""), "unitsync.invalid-name", "unit('')")

    seen["not_found"] = await expect_error(
        coord.unit("ghost").unit.complete(), "unitsync.not-found", "complete ghost"
    )
    return seen


def entry() -> int:
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} SCHEMA.capnp SOCKET_PATH", file=sys.stderr)
        return 2
    try:
        seen = asyncio.run(capnp.run(main(sys.argv[1], sys.argv[2])))
    except Unexpected as exc:
        print(f"unexpected: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(entry())

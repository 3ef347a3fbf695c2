"""The yardstick: a plain pycapnp asyncio server built from our schema, no Trio, no actors.

``ping`` answers the version; ``unit(name).info()`` answers from an in-memory dict. Run as
``python -m stress.baseline_server SOCKET``; prints ``ready`` once listening.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import capnp

from coordinator.rpc._schema import schema

S = schema()
UNITS: dict[str, dict[str, Any]] = {}


class Unit(S.Unit.Server):  # type: ignore[name-defined,misc]
    def __init__(self, name: str) -> None:
        self.name = name

    async def info(self, _context: Any, **kwargs: Any) -> None:
        record = UNITS.setdefault(self.name, {"status": "pending", "ready": True})
        info = _context.results.info
        info.name = self.name
        info.status = record["status"]
        info.ready = record["ready"]


class Coordinator(S.Coordinator.Server):  # type: ignore[name-defined,misc]
    async def ping(self, _context: Any, **kwargs: Any) -> None:
        _context.results.version = "baseline"

    async def unit(self, name: str, _context: Any, **kwargs: Any) -> None:
        _context.results.unit = Unit(name)


async def main(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)

    async def connection(stream: Any) -> None:
        await capnp.TwoPartyServer(stream, bootstrap=Coordinator()).on_disconnect()

    server = await capnp.AsyncIoStream.create_unix_server(connection, path, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(capnp.run(main(sys.argv[1])))

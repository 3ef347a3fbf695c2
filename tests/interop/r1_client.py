"""A client built from revision 1 of the schema (``unitsync-r1.capnp``): it never says hello.

Usage: ``python r1_client.py SCHEMA.capnp SOCKET_PATH UNIT...``. Prints one JSON line: for each
UNIT its info as this client reads it, the registered units of ``list``, and the events of a
watch that saw the unit ``late`` registered (by this client) and then skipped (by the test).
Imports nothing of ours.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import capnp


async def main(schema_path: str, socket_path: str, units: list[str]) -> dict:
    S = capnp.load(schema_path, imports=[os.path.dirname(os.path.dirname(capnp.__file__))])
    stream = await capnp.AsyncIoStream.create_unix_connection(socket_path)
    client = capnp.TwoPartyClient(stream)
    coord = client.bootstrap().cast_as(S.Coordinator)
    seen: dict = {"units": {}}
    for name in units:
        info = (await coord.unit(name).unit.info()).info
        seen["units"][name] = {
            "status": str(info.status),  # str() of a value this schema lacks would raise
            "reason": info.reason,
            "blockedBy": info.blockedBy,
            "dependencies": [[str(d.dependsOn), str(d.required), str(d.current), d.satisfied]
                             for d in info.dependencies],
        }
    page = await coord.list("", 0)
    seen["list"] = [[u.name, str(u.status)] for u in page.units]

    events: list = []
    two = asyncio.Event()

    class Watcher(S.Watcher.Server):
        async def event(self, event, _context, **kwargs):
            events.append([event.unit, str(event.old), str(event.new), event.reason])
            if len(events) == 2:
                two.set()

    subscription = (await coord.watch(Watcher())).subscription
    # registering "late" tells the test to skip it (revision 1 has no skip): two events
    await coord.unit("late").unit.register()
    await asyncio.wait_for(two.wait(), 5)
    seen["events"] = events
    del subscription
    return seen


if __name__ == "__main__":
    result = asyncio.run(capnp.run(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
    print(json.dumps(result))

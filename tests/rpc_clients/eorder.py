"""E-order over plain pycapnp: ``python eorder.py SOCKET UNIT BATCHES SIZE``.

One ``Unit`` capability (pipelined: ``coord.unit(UNIT).unit``, never awaited) gets BATCHES
batches of SIZE calls. Within a batch every call is *sent* before any answer is awaited; call
number ``k`` (counted over all batches) is

    k % 4 == 0: start()    1: complete()    2: start()    3: fail(reason=str(k))

so each call succeeds only if the one before it was applied first (start twice, complete twice
or fail twice is ``unitsync.already``), and the unit's reason names the last fail applied.
After each batch, prints one JSON line: ``{"batch", "errors": [[k, text], ...], "status",
"reason", "seconds"}`` (status/reason from an ``info()`` sent after the batch's answers).
No Trio, no coordinator client: only the schema and pycapnp, as a client in another language
would do it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import capnp

from coordinator.rpc._schema import schema
from coordinator.rpc._socket import connect_socket


def send(unit: Any, k: int) -> Any:
    match k % 4:
        case 0 | 2:
            return unit.start()
        case 1:
            return unit.complete()
        case _:
            return unit.fail(str(k))


async def answer(k: int, promise: Any) -> tuple[int, str] | None:
    try:
        await promise
    except capnp.KjException as exc:
        return (k, str(exc.description))
    return None


async def main(path: str, name: str, batches: int, size: int) -> None:
    S = schema()
    sock = connect_socket(Path(path))
    stream = await capnp.AsyncIoStream.create_unix_connection(sock=sock)
    client = capnp.TwoPartyClient(stream)
    try:
        coord = client.bootstrap().cast_as(S.Coordinator)
        unit = coord.unit(name).unit  # a promised capability: unit() is never awaited
        for batch in range(batches):
            started = time.perf_counter()
            promises = [(k, send(unit, k)) for k in range(batch * size, (batch + 1) * size)]
            outcomes = await asyncio.gather(*(answer(k, p) for k, p in promises))
            info = (await unit.info()).info
            print(
                json.dumps(
                    {
                        "batch": batch,
                        "errors": [o for o in outcomes if o is not None],
                        "status": str(info.status),
                        "reason": str(info.reason),
                        "seconds": time.perf_counter() - started,
                    }
                ),
                flush=True,
            )
        del unit, coord
    finally:
        client.close()
        stream.close()


async def amain(*args: Any) -> None:
    async with capnp.kj_loop():
        await main(*args)


if __name__ == "__main__":
    asyncio.run(amain(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))

"""Build an N-unit chain in-process and propagate completion from the leaf to the root.

``u0`` wants ``u1`` wants ... ``u{N-1}``. Each unit is driven by its own task, exactly as N
scripts would: wait for ``ready()``, ``start``, ``complete``. Completion of the leaf therefore
travels the whole chain through the actors: N ready-promises, N status changes.
"""

from __future__ import annotations

import argparse
import json
import time

import trio
import trio.testing

from coordinator import open_coordinator


async def run(units: int) -> dict[str, float]:
    async with open_coordinator() as coord:
        t0 = time.perf_counter()
        for i in range(units - 1):
            await coord.unit(f"u{i}").want(f"u{i + 1}")
        await coord.unit(f"u{units - 1}").register()
        build = time.perf_counter() - t0

        go = trio.Event()

        async def script(i: int, *, task_status: trio.TaskStatus[None]) -> None:
            unit = coord.unit(f"u{i}")
            task_status.started()
            if i == units - 1:
                await go.wait()
            await unit.ready()
            await unit.start()
            await unit.complete()

        async with trio.open_nursery() as nursery:
            for i in range(units):
                await nursery.start(script, i)
            await trio.testing.wait_all_tasks_blocked()
            t1 = time.perf_counter()
            go.set()
        propagate = time.perf_counter() - t1
        stats = await coord.statistics()
    return {
        "units": units,
        "edges": stats.edges,
        "build_s": round(build, 4),
        "build_us_per_edge": round(build / max(units - 1, 1) * 1e6, 1),
        "propagate_s": round(propagate, 4),
        "propagate_us_per_unit": round(propagate / units * 1e6, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress chain")
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    result = trio.run(run, args.units)
    if not args.json:
        for key, value in result.items():
            print(f"{key:40} {value}")
    print(json.dumps(result))
    return 0

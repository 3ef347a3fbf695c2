"""In-process fan-out: what one dependency's start, then its completion, costs the coordinator
for N dependents with a parked ``ready()`` each — the Trio side of ``wakeup``, without RPC.

Per size N and round, on a fresh ``open_coordinator()`` (memory only): ``apply`` declares
``w0..w{N-1}`` each wanting ``dep`` (``completed``); a task per waiter, as N scripts would,
parks ``ready(w_i)``; then

* ``start dep``, timed until every task is blocked again (``wait_all_tasks_blocked``): the
  *start wave*, what telling the dependents that ``dep`` started costs (``start_us_per_waiter``);
* ``complete dep``, timed until the last waiter's ``ready()`` returned: the *wake-up*
  (``complete_us_per_waiter``).

Both as wall time and as the Trio thread's CPU (``time.thread_time``); medians over
``--rounds``. One thread, no sockets: the figures move with the coordinator's own code only (and
the host's speed). Before 2026-12-06 a start woke every dependent's actor as a completion does;
since, a state that changes nothing a dependent answers is kept for its next message
(``UnitState.moved_by``).

``python -m stress fanout [--sizes 1000,5000] [--rounds 5] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import trio
import trio.testing

from coordinator import Status, open_coordinator


async def one_round(waiters: int) -> dict[str, float]:
    async with open_coordinator() as coord:
        graph = {f"w{i}": {"dep": Status.COMPLETED} for i in range(waiters)}
        await coord.apply({**graph, "dep": {}})
        left = waiters
        all_ready = trio.Event()

        async def waiter(name: str) -> None:
            nonlocal left
            await coord.unit(name).ready()
            left -= 1
            if not left:
                all_ready.set()

        async with trio.open_nursery() as nursery:
            for name in graph:
                nursery.start_soon(waiter, name)
            await trio.testing.wait_all_tasks_blocked()
            t0, c0 = time.perf_counter(), time.thread_time()
            await coord.unit("dep").start()
            await trio.testing.wait_all_tasks_blocked()
            t1, c1 = time.perf_counter(), time.thread_time()
            await coord.unit("dep").complete()
            await all_ready.wait()
            t2, c2 = time.perf_counter(), time.thread_time()
    per = 1e6 / waiters
    return {
        "start_us_per_waiter": (t1 - t0) * per, "start_cpu_us_per_waiter": (c1 - c0) * per,
        "complete_us_per_waiter": (t2 - t1) * per, "complete_cpu_us_per_waiter": (c2 - c1) * per,
    }


def run(waiters: int, rounds: int) -> dict[str, float]:
    results = [trio.run(one_round, waiters) for _ in range(rounds)]
    figures: dict[str, float] = {"waiters": waiters, "rounds": rounds}
    for key in results[0]:
        figures[key] = round(statistics.median(r[key] for r in results), 2)
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress fanout")
    parser.add_argument("--sizes", default="1000,5000", help="comma-separated dependents")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size (medians)")
    parser.add_argument("--quick", action="store_true", help="100 dependents, 2 rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    sizes = [100] if args.quick else [int(s) for s in args.sizes.split(",")]
    rounds = 2 if args.quick else args.rounds
    runs = [run(n, rounds) for n in sizes]
    for figures in runs:
        print("  ".join(f"{key} {value:g}" for key, value in figures.items()))
    if args.json:
        print(json.dumps({"runs": runs}))
    return 0

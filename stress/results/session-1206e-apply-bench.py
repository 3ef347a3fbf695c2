"""In-process apply of the stress DAG (200 units, 500 edges), seeds 1-7, fresh coordinator each: median ms."""
import random, statistics, sys, time
import trio
from stress.up import random_dag
from coordinator import Status, open_coordinator
async def main():
    out = []
    for seed in range(1, 8):
        g = random_dag(200, 500, random.Random(seed))
        graph = {u: {d: Status.COMPLETED for d in deps} for u, deps in g.items()}
        async with open_coordinator() as coord:
            await coord.unit("warm").register()
            t0 = time.perf_counter(); await coord.apply(graph); out.append(time.perf_counter() - t0)
    print(f"apply median {statistics.median(out)*1e3:.2f} ms (min {min(out)*1e3:.2f}, max {max(out)*1e3:.2f})")
trio.run(main)

"""Several coordinators on one etcd against the local journal, same run (issue 15's figures).

Three configurations, one after the other in each run, each on fresh processes in the run's
temp dir (a short /tmp dir: sockets, journals, etcd data dirs):

* ``journal``: one ``unitsync serve --state J`` (the default store: its journal, ``fdatasync``
  per batch of mutations);
* ``etcd1``: an etcd single node, started here on free loopback ports (``stress/_etcd.py``), and
  two ``unitsync serve --store etcd://.../WS`` processes on it (A and B: two "machines");
* ``etcd3``: the same with a 3-member etcd cluster (every member listed in the URL).

Per configuration:

1. **Wake-up across machines.** ``--rounds`` rounds: unit ``w0.r`` wants ``dep.r`` (declared
   through A); one waiter process (``stress._wakeup_client``, asyncio + pycapnp, its own
   connection) parks ``ready(w0.r)`` on **B** and says ``parked`` once the call is known to be
   parked server-side (E-order, see that module); the driver starts ``dep.r`` and completes it
   through **A**. Latency: from just before the ``complete`` is sent to the waiter's ``ready()``
   resolving (``time.monotonic()`` in both processes: CLOCK_MONOTONIC is system-wide), p50 /
   p99 / max over the rounds. For ``journal`` A and B are the same coordinator.
2. **Throughput** through the RPC client (``coordinator.connect``, one connection to A):
   ``want`` (``t.wN`` wants ``t.base``: a new unit and a new edge each) and ``complete`` (of
   pending units registered before, untimed), ``--calls`` calls sequentially and the same
   number from ``--concurrency`` tasks at once; calls/s.
3. **Load at start.** A fresh journal / workspace is filled in-process (``open_coordinator``
   with ``state=`` or ``store=``, ``apply`` in parts of 50 units) with ``--load-units`` units,
   each but the first wanting up to 2 random earlier units (seeded: the same graph in every
   configuration); then ``unitsync serve`` is spawned on it and timed from the spawn to its
   ``serving on`` line (``load_ms``), and ``list()`` must show every unit and edge. The same
   serve's start on an empty workspace / journal is ``start_empty_ms`` (A's start in step 1).

Goal (issue 15): wake-up p99 <= 10 ms on the 3-member loopback cluster.

Figures (``--json``: one object, every configuration's keys prefixed with its name, e.g.
``etcd3_wake_p99_ms``): ``wake_p50_ms wake_p99_ms wake_max_ms want_seq_per_s
want_conc_per_s complete_seq_per_s complete_conc_per_s load_ms start_empty_ms`` and
``load_units load_edges rounds calls concurrency loadavg goal_met``.

``--runs K`` repeats the whole (all three configurations) K times and reports medians and
ranges (``_min``/``_max`` beside each median), as the README's sections do. ``--churn``: the
fault test instead (``stress/shared_churn.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from coordinator import Status, connect, open_coordinator

from ._etcd import ETCD, NO_ETCD, EtcdCluster, open_cluster, store_url
from ._stats import percentile
from .churn import ROOT, first_line
from .crash import UNITSYNC, keep_reading

CONFIGS: Final = ("journal", "etcd1", "etcd3")
#: Spawn of a serve until its "serving on" line, at most (10,000 units included).
START_LIMIT: Final = 120.0
#: Any one step (a round's wake-up, a throughput part) at most.
STEP_LIMIT: Final = 120.0
#: Units per ``apply`` when filling a workspace (each one txn in etcd: under its 128 ops).
APPLY_PART: Final = 50
GOAL_P99_MS: Final = 10.0
FIGURES: Final = ("wake_p50_ms", "wake_p99_ms", "wake_max_ms", "want_seq_per_s",
                  "want_conc_per_s", "complete_seq_per_s", "complete_conc_per_s", "load_ms",
                  "start_empty_ms")


# --- serve processes --------------------------------------------------------------------------


@dataclass
class Serve:
    process: trio.Process
    start_s: float  # spawn until its "serving on" line
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=200))


@asynccontextmanager
async def serving(sock: Path, *args: str) -> AsyncIterator[Serve]:
    """``unitsync serve --socket SOCK ARGS``, yielded once it printed ``serving on``; SIGTERM
    (then SIGKILL) and reaped on the way out."""
    sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "UNITSYNC_SOCKET": str(sock)}
    t0 = time.monotonic()
    process = await trio.lowlevel.open_process(
        [*UNITSYNC, "serve", "--socket", str(sock), *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
        env=env,
    )
    assert process.stderr is not None
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(START_LIMIT):
                line = await first_line(process.stderr)
            started = time.monotonic() - t0
            if b"serving on" not in line:
                raise RuntimeError(f"unitsync serve {' '.join(args)} did not start: "
                                   f"{line.decode(errors='replace')!r}")
            serve = Serve(process, started)
            serve.tail.append(line.decode(errors="replace"))
            nursery.start_soon(keep_reading, process.stderr, serve.tail)
            try:
                yield serve
            finally:
                with trio.CancelScope(shield=True):
                    if process.returncode is None:
                        process.send_signal(signal.SIGTERM)
                    with trio.move_on_after(10):
                        await process.wait()
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


# --- 1. wake-up across machines ---------------------------------------------------------------


async def lines_of(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = await stream.receive_some()
            if not chunk:
                return
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        yield line.decode()


async def wake_up(a: Path, b: Path, rounds: int) -> list[float]:
    """Per round, ms from the complete sent (through ``a``) to the waiter's ready() on ``b``."""
    from ._wakeup_client import unit_name
    from .wakeup import dependency

    latencies: list[float] = []
    async with connect(a) as coord_a, connect(b) as coord_b:
        for round_ in range(rounds):
            await coord_a.unit(unit_name("w", 0, round_)).want(dependency(round_))
        # B has seen every declaration: a read no older than the call (issue 15's promise)
        seen = {info.name for info in await coord_b.list()}
        missing = {unit_name("w", 0, r) for r in range(rounds)} - seen
        if missing:
            raise RuntimeError(f"B does not list {len(missing)} units A declared: {sorted(missing)[:5]}")
        waiter = await trio.lowlevel.open_process(
            [sys.executable, "-m", "stress._wakeup_client", "waiters", "--socket", str(b),
             "--count", "1", "--rounds", str(rounds), "--timeout", str(STEP_LIMIT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
        )
        assert waiter.stdin is not None and waiter.stdout is not None
        try:
            lines = lines_of(waiter.stdout)
            for round_ in range(rounds):
                with trio.fail_after(STEP_LIMIT):
                    line = await anext(lines)
                    if line.strip() != "parked":
                        raise RuntimeError(f"the waiter said {line!r}, not parked")
                    await coord_a.unit(dependency(round_)).start()
                    t0 = time.monotonic()
                    await coord_a.unit(dependency(round_)).complete()
                    report = json.loads(await anext(lines))
                (stamp,) = report["stamps"]
                if stamp is None or report["errors"]:
                    raise RuntimeError(f"round {round_}: the waiter was not woken: {report}")
                latencies.append((stamp - t0) * 1e3)
                if round_ + 1 < rounds:
                    await waiter.stdin.send_all(b"next\n")  # the waiter's go for the next round
        finally:
            with trio.CancelScope(shield=True):
                if waiter.returncode is None:
                    waiter.kill()
                await waiter.wait()
    return latencies


# --- 2. throughput ----------------------------------------------------------------------------


async def calls_per_s(calls: int, concurrency: int,
                      call: Callable[[int], Awaitable[None]]) -> float:
    """``call(0..calls-1)``, from ``concurrency`` tasks (each its share in order); calls/s."""
    async def share(first: int) -> None:
        for i in range(first, calls, concurrency):
            await call(i)

    t0 = time.monotonic()
    with trio.fail_after(STEP_LIMIT):
        async with trio.open_nursery() as nursery:
            for k in range(concurrency):
                nursery.start_soon(share, k)
    return calls / (time.monotonic() - t0)


async def throughput(a: Path, calls: int, concurrency: int) -> dict[str, float]:
    figures = {}
    async with connect(a) as coord:
        await coord.unit("t.base").register()
        for mode, tasks in (("seq", 1), ("conc", concurrency)):
            async def want(i: int, mode: str = mode) -> None:
                await coord.unit(f"t.{mode}.w{i}").want("t.base")

            figures[f"want_{mode}_per_s"] = await calls_per_s(calls, tasks, want)
            names = [f"t.{mode}.c{i}" for i in range(calls)]
            with trio.fail_after(STEP_LIMIT):
                for k in range(0, calls, APPLY_PART):
                    await coord.apply({name: {} for name in names[k:k + APPLY_PART]})

            async def complete(i: int, names: list[str] = names) -> None:
                await coord.unit(names[i]).complete()

            figures[f"complete_{mode}_per_s"] = await calls_per_s(calls, tasks, complete)
        # every call took effect
        infos = {info.name: info for info in await coord.list()}
        for mode in ("seq", "conc"):
            for i in range(calls):
                wanted = infos[f"t.{mode}.w{i}"]
                assert [d.depends_on for d in wanted.dependencies] == ["t.base"], wanted
                assert infos[f"t.{mode}.c{i}"].status is Status.COMPLETED
    return figures


# --- 3. load at start -------------------------------------------------------------------------


def load_graph(units: int, seed: int = 15) -> dict[str, dict[str, Status]]:
    """``g{i}`` wants up to 2 random earlier units (a DAG by construction)."""
    rng = random.Random(seed)
    graph: dict[str, dict[str, Status]] = {"g0": {}}
    for i in range(1, units):
        graph[f"g{i}"] = {f"g{j}": Status.COMPLETED
                          for j in {rng.randrange(i) for _ in range(min(i, 2))}}
    return graph


async def fill(graph: dict[str, dict[str, Status]], **where: str) -> None:
    names = list(graph)
    with trio.fail_after(STEP_LIMIT * 5):
        async with open_coordinator(**where) as coord:  # type: ignore[arg-type]
            for k in range(0, len(names), APPLY_PART):
                await coord.apply({name: graph[name] for name in names[k:k + APPLY_PART]})


async def load_at_start(sock: Path, graph: dict[str, dict[str, Status]], *args: str) -> float:
    """Spawn to ``serving on`` of a serve on the filled store; its ``list()`` checked."""
    async with serving(sock, *args) as serve:
        with trio.fail_after(STEP_LIMIT):
            async with connect(sock) as coord:
                infos = await coord.list()
        edges = {(info.name, d.depends_on) for info in infos for d in info.dependencies}
        want = {(unit, dep) for unit, deps in graph.items() for dep in deps}
        if {info.name for info in infos} != set(graph) or edges != want:
            raise RuntimeError(f"serve {' '.join(args)} loaded {len(infos)} units and "
                               f"{len(edges)} edges, not {len(graph)} and {len(want)}")
        return serve.start_s


# --- one configuration ------------------------------------------------------------------------


def loadavg() -> float:
    return os.getloadavg()[0]


@asynccontextmanager
async def cluster_for(kind: str, base: Path) -> AsyncIterator[EtcdCluster | None]:
    if kind == "journal":
        yield None
        return
    base.mkdir()
    async with open_cluster(base, 1 if kind == "etcd1" else 3) as cluster:
        yield cluster


async def run_config(kind: str, workdir: Path, args: argparse.Namespace,
                     graph: dict[str, dict[str, Status]]) -> dict[str, Any]:
    here = workdir / kind
    here.mkdir(mode=0o700)
    result: dict[str, Any] = {"loadavg": round(loadavg(), 2)}
    async with cluster_for(kind, here / "etcd") as cluster:
        if cluster is None:
            where_a: list[str] = ["--state", str(here / "a.state")]
            where_b: list[str] | None = None
        else:
            url = store_url(cluster, "bench")
            where_a = where_b = ["--store", url]
        sock_a, sock_b = here / "a" / "s.sock", here / "b" / "s.sock"
        async with serving(sock_a, *where_a) as a:
            result["start_empty_ms"] = a.start_s * 1e3
            if where_b is None:
                latencies = await wake_up(sock_a, sock_a, args.rounds)
            else:
                async with serving(sock_b, *where_b):
                    latencies = await wake_up(sock_a, sock_b, args.rounds)
            result.update(await throughput(sock_a, args.calls, args.concurrency))
        latencies.sort()
        result.update(wake_p50_ms=percentile(latencies, 0.5), wake_p99_ms=percentile(latencies, 0.99),
                      wake_max_ms=latencies[-1])
        # load: a fresh journal / workspace, filled, then a serve started on it
        if cluster is None:
            journal = here / "load.state"
            await fill(graph, state=str(journal))
            load_s = await load_at_start(here / "l" / "s.sock", graph, "--state", str(journal))
        else:
            url = store_url(cluster, "load")
            await fill(graph, store=url)
            load_s = await load_at_start(here / "l" / "s.sock", graph, "--store", url)
        result["load_ms"] = load_s * 1e3
    return {key: round(value, 3) if isinstance(value, float) else value
            for key, value in result.items()}


async def run_once(args: argparse.Namespace, graph: dict[str, dict[str, Status]]) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="us-shared-", dir="/tmp"))
    result: dict[str, Any] = {}
    for kind in args.configs:
        figures = await run_config(kind, workdir, args, graph)
        result.update({f"{kind}_{key}": value for key, value in figures.items()})
        if not args.json:
            print(f"{kind}: " + ", ".join(f"{k} {v}" for k, v in figures.items()), flush=True)
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One run: its figures; several: each figure's median, with ``_min``/``_max``."""
    if len(runs) == 1:
        return dict(runs[0])
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        out[key] = round(statistics.median(values), 3)
        out[f"{key}_min"], out[f"{key}_max"] = min(values), max(values)
    out["per_run"] = runs
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress shared")
    parser.add_argument("--rounds", type=int, default=200, help="wake-ups per configuration")
    parser.add_argument("--calls", type=int, default=500,
                        help="want and complete calls, sequential and concurrent each")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--load-units", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1, help="the whole, K times: medians")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"which of {','.join(CONFIGS)}")
    parser.add_argument("--churn", action="store_true",
                        help="the fault test instead: stress/shared_churn.py (its own options)")
    parser.add_argument("--quick", action="store_true",
                        help="20 rounds, 40 calls, 300 units (smoke test)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    if "--churn" in argv:  # its own options (and --help)
        from . import shared_churn

        return shared_churn.main([a for a in argv if a != "--churn"])
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.load_units = 20, 40, 300
    args.configs = [c for c in args.configs.split(",") if c]
    if unknown := set(args.configs) - set(CONFIGS):
        parser.error(f"unknown configurations {sorted(unknown)}")
    if ETCD is None and set(args.configs) - {"journal"}:
        print(f"python -m stress shared: {NO_ETCD}", file=sys.stderr)
        return 2
    graph = load_graph(args.load_units)
    runs = []
    for k in range(args.runs):
        if not args.json and args.runs > 1:
            print(f"run {k + 1} of {args.runs} (load average {loadavg():.2f})", flush=True)
        runs.append(trio.run(run_once, args, graph))
    result = summarise(runs)
    result.update(rounds=args.rounds, calls=args.calls, concurrency=args.concurrency,
                  load_units=len(graph),
                  load_edges=sum(len(deps) for deps in graph.values()),
                  configs=args.configs, runs=args.runs)
    if "etcd3" in args.configs:
        result["goal_p99_ms"] = GOAL_P99_MS
        result["goal_met"] = result["etcd3_wake_p99_ms"] <= GOAL_P99_MS
    if not args.json:
        for key, value in result.items():
            if key != "per_run":
                print(f"{key:32} {value}")
    print(json.dumps(result))
    return 0

"""Wake-up latency: N clients parked in ``ready()`` on units that all want one dependency.

Per size N, on a fresh ``unitsync serve`` process (socket in a short /tmp dir, SIGTERM at the end;
its journal in that dir, ``--state``, the default as for ``serve`` itself — every mutation, the
``complete`` included, is acknowledged after its ``fdatasync`` — or none, ``--no-state``):

* the driver declares ``w0..w{N-1}`` and ``p0..p{M-1}``, each wanting ``dep`` (completed);
* P client worker processes share the waiters, one connection per waiter, and call
  ``ready(w_i)``; each prints ``parked`` once all its ``ready`` calls are known to be parked
  server-side (an ``info`` on the same unit and connection, sent after ``ready`` and awaited:
  E-order). They are C++ (``stress/wakeup_client.c++``, built from the schema by
  ``stress/_cxx.py`` and cached; ``waiter_client: "c++"``) unless ``--waiter-client python`` or
  the toolchain is missing: then ``stress._wakeup_client`` (asyncio + pycapnp, no Trio), which
  spends several times their CPU on the two cores the server needs;
* one more worker runs M pollers, one connection each, polling ``info(p_i)`` once a second from
  a random phase until it answers ready — coder's CLI, the baseline, in the same run;
* the driver then calls ``start dep`` and ``complete dep`` and stamps ``t = time.monotonic()``
  as the complete returns. Workers stamp each ``ready()`` resolving (or the poll that saw it)
  with ``time.monotonic()`` (CLOCK_MONOTONIC is system-wide, so stamps compare across
  processes). Latency = stamp - t. A wake-up may beat the complete's own reply: such latencies
  stay negative in the figures and are counted in ``negative``. The headline is the same
  wake-ups timed from the ``complete`` being *sent* (``from_call_*``): with the journal on, the
  complete's reply waits for its fdatasync while the waiters are woken at once (the state
  change is not delayed), so timing from the reply would flatter the journal.

``--rounds R`` repeats the wake-up R times per size on the same connections and server, each
round with its own units (``w{i}.{r}``) and dependency (``dep.{r}``), parked once the driver has
measured the round before (a line on the workers' stdin; until 2026-12-06 a worker parked its
next round as soon as its own waiters were woken, and those calls reached the server during
the rest of the fan-out, in its CPU and latency figures); the figures pool all rounds (a p99
of one waiter needs many rounds). The pollers take part in round 0 only.

Figures (ms): ``p50_ms``, ``p99_ms``, ``max_ms`` of the waiters (nearest rank), ``us_per_waiter``
= max / N (the fan-out cost), ``poll_p50_ms``, ``poll_p99_ms``; extras: ``min_ms``,
``negative``, ``from_call_p50_ms`` / ``from_call_p99_ms`` / ``from_call_max_ms`` (the same
wake-ups timed from just before the complete was *sent*: an upper bound that no race with the
complete's reply can make negative), ``complete_ms`` (median round trip of the complete),
``from_call_us_per_waiter``, ``clients`` (P), ``pollers`` (M), ``rounds``, ``missing`` (waiters
never woken), ``errors``, ``park_s`` (spawning the workers until all of round 0 is parked),
``journal`` (true: ``--state``), ``waiter_client``, ``server_cpu_us_per_waiter`` and ``client_cpu_us_per_waiter``
(the CPU the server process, and the waiters' worker processes, spent from the complete being
sent to the last waiter's report, over the waiters: the median round; every thread's
``schedstat``, in ns), ``server_trio_cpu_us_per_waiter`` (its main thread's share: Trio's; the
rest is the KJ thread's, and the journal's). Exit status 1 if any waiter
was not woken or a worker reported an error.

Output: one size → the last line is one JSON object with the keys above. Several sizes
(``--sizes 1,100,1000,5000`` or ``--waiters`` repeated), each on its own fresh server → the
last line is one JSON object ``{"runs": [<one object per size>]}``. ``--raw PATH`` writes
``{"runs": [{"waiters", "clients", "pollers", "rounds", "complete_ms": [per round],
"latency_ms": [...], "from_call_ms": [...], "poll_latency_ms": [...]}]}`` for plots
(histogram / CDF): per-waiter lists are round-major (round 0's waiters by index, then round
1's ...), ``null`` where a waiter was not woken.

Goals (ARCHITECTURE §8): one waiter p99 <= 2 ms; 1,000 waiters all woken within 50 ms
(p99 <= 50 ms, <= 50 µs per waiter); judged on the ``from_call_*`` figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._stats import percentile
from ._wakeup_client import ensure_fd_limit
from .rpc import start, stop

#: ARCHITECTURE §8 goals.
ONE_WAITER_P99_GOAL_MS = 2.0
THOUSAND_MAX_GOAL_MS = 50.0
PER_WAITER_GOAL_US = 50.0

#: want() calls in flight at once while declaring units.
DECLARE_BATCH = 200
QUICK_WAITERS = 20
QUICK_POLLERS = 2


@dataclass
class Run:
    """One size's raw results."""

    waiters: int
    clients: int
    pollers: int
    rounds: int
    latency_ms: list[float | None]  # round-major: round 0's waiters by index, then round 1's ...
    poll_latency_ms: list[float | None]
    from_call_ms: list[float | None] = field(default_factory=list)  # from the complete being sent
    errors: list[str] = field(default_factory=list)
    park_s: float = 0.0  # spawning the workers until all of round 0 is parked
    complete_ms: list[float] = field(default_factory=list)  # per round
    journal: bool = True
    #: CPU time (ns) over each round's fan-out — the complete sent to the last report in — of
    #: the server process and of the waiters' worker processes (every thread: schedstat)
    server_cpu_ns: list[int] = field(default_factory=list)
    client_cpu_ns: list[int] = field(default_factory=list)
    #: the same for the server's main thread alone: the Trio thread (the rest is the KJ
    #: thread's, and the journal's fdatasync)
    server_trio_cpu_ns: list[int] = field(default_factory=list)
    waiter_client: str = "python"  #: the waiters' workers: "c++" or "python"


def cpu_ns(pid: int, *, main_thread: bool = False) -> int:
    """CPU time so far of process ``pid``, every thread (or its main thread alone), in ns
    (``/proc/PID/task/*/schedstat``: nanoseconds, where ``/proc/PID/stat``'s ticks are 10 ms);
    threads that ended are not counted (none of ours end during a fan-out)."""
    total = 0
    tasks = [Path(f"/proc/{pid}/task/{pid}")] if main_thread else Path(f"/proc/{pid}/task").iterdir()
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return total


def native_waiters() -> Path | None:
    """The C++ waiters (``stress/wakeup_client.c++``, :func:`stress._cxx.build_cached`), or None
    (why on stderr) without the toolchain."""
    from ._cxx import build_cached, missing_tools

    missing = missing_tools()
    if missing:
        print(f"wakeup: the C++ waiters cannot be built (missing {', '.join(missing)}): the "
              "Python waiters instead", file=sys.stderr)
        return None
    return build_cached(Path(__file__).with_name("wakeup_client.c++"))


def default_clients(waiters: int) -> int:
    return max(1, min(8, math.ceil(waiters / 250)))


def default_pollers(waiters: int) -> int:
    return max(1, min(waiters, 50))


class Lines:
    """Lines from several child streams, read by daemon threads, taken with a timeout."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[int, str | None]] = queue.Queue()

    def follow(self, key: int, stream: IO[str]) -> None:
        def pump() -> None:
            for line in stream:
                self._queue.put((key, line))
            self._queue.put((key, None))  # EOF

        threading.Thread(target=pump, daemon=True).start()

    def get(self, deadline: float) -> tuple[int, str | None]:
        """The next line (``None`` for EOF) and whose; ``TimeoutError`` once ``deadline`` passes."""
        try:
            return self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError from None


def drain(stream: IO[str], tail: deque[str]) -> None:
    """Keep a child's stderr flowing (a full pipe would block it); remember the last lines."""
    threading.Thread(target=lambda: tail.extend(stream), daemon=True).start()


def dependency(round_: int) -> str:
    """``dep`` in round 0, ``dep.{r}`` after (each round has its own units: see the client)."""
    return "dep" if round_ == 0 else f"dep.{round_}"


async def declare(core: Any, waiters: int, pollers: int, rounds: int) -> None:
    """Every round's ``w{i}[.r]`` wants ``dep[.r]``; ``p{i}`` wants ``dep``."""
    from coordinator import Status

    from ._wakeup_client import unit_name

    edges = [(unit_name("w", i, r), dependency(r)) for r in range(rounds) for i in range(waiters)]
    edges += [(unit_name("p", i, 0), dependency(0)) for i in range(pollers)]
    for k in range(0, len(edges), DECLARE_BATCH):
        await asyncio.gather(*(core.want(unit, [dep], Status.COMPLETED)
                               for unit, dep in edges[k:k + DECLARE_BATCH]))


async def drive(
    path: Path, waiters: int, clients: int, pollers: int, rounds: int, interval: float,
    timeout: float, workers: list[subprocess.Popen[str]], server_pid: int,
    native: Path | None = None,
) -> Run:
    """Declare, spawn the client workers (appended to ``workers``: the caller kills them), then
    per round: wait until all are parked, ``start`` + ``complete`` the round's dependency, collect
    the stamps. Every wait is bounded by ``timeout`` (``TimeoutError``). ``native``: the C++
    waiters' program (:func:`native_waiters`), else the Python ones."""
    from coordinator.rpc._client import AsyncioClient
    from coordinator.rpc._convert import REVISION

    core = await AsyncioClient.connect(path)
    try:
        await declare(core, waiters, pollers, rounds)
        await core.ping()

        lines = Lines()
        worker = [sys.executable, "-m", "stress._wakeup_client"]
        common = ["--socket", str(path), "--timeout", str(timeout * 2)]
        share, extra = divmod(waiters, clients)
        first = 0
        t_spawn = time.monotonic()
        for k in range(clients):
            count = share + (k < extra)
            if native is not None:
                argv = [str(native), str(path), str(first), str(count), str(rounds),
                        str(timeout * 2), str(REVISION)]
            else:
                argv = [*worker, "waiters", *common, "--first", str(first), "--count", str(count),
                        "--rounds", str(rounds)]
            workers.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            text=True))
            first += count
        workers.append(subprocess.Popen(  # the pollers' worker: round 0 only
            [*worker, "pollers", *common, "--count", str(pollers), "--interval", str(interval)],
            stdout=subprocess.PIPE, text=True))
        for k, process in enumerate(workers):
            assert process.stdout is not None
            lines.follow(k, process.stdout)

        expected = [rounds] * clients + [1]  # rounds each worker takes part in
        parked = [0] * len(workers)  # "parked" lines seen, per worker
        reports: list[list[dict[str, Any]]] = [[] for _ in workers]  # per worker, per round

        async def pump_until(done: Callable[[], bool], deadline: float) -> None:
            """Read worker lines into ``parked`` / ``reports`` until ``done()``."""
            while not done():
                k, line = await asyncio.to_thread(lines.get, deadline)
                if line is None:
                    if len(reports[k]) < expected[k]:
                        raise RuntimeError(f"client worker {k} exited (rc {workers[k].wait()}) "
                                           f"after {len(reports[k])} of {expected[k]} rounds")
                elif line.strip() == "parked":
                    parked[k] += 1
                elif line.startswith("{"):
                    reports[k].append(json.loads(line))

        run = Run(waiters=waiters, clients=clients, pollers=pollers, rounds=rounds,
                  latency_ms=[], poll_latency_ms=[],
                  waiter_client="python" if native is None else "c++")
        for round_ in range(rounds):
            active = [k for k in range(len(workers)) if round_ < expected[k]]
            await pump_until(lambda: all(parked[k] > round_ for k in active),
                             time.monotonic() + timeout)
            if round_ == 0:
                run.park_s = time.monotonic() - t_spawn

            await core.start(dependency(round_))
            waiting_workers = [workers[k].pid for k in active[:clients]]
            cpu0 = (cpu_ns(server_pid), sum(map(cpu_ns, waiting_workers)),
                    cpu_ns(server_pid, main_thread=True))
            t0 = time.monotonic()
            await core.complete(dependency(round_))
            t_returned = time.monotonic()
            run.complete_ms.append((t_returned - t0) * 1e3)

            await pump_until(lambda: all(len(reports[k]) > round_ for k in active[:clients]),
                             time.monotonic() + timeout + interval)
            run.server_cpu_ns.append(cpu_ns(server_pid) - cpu0[0])
            run.server_trio_cpu_ns.append(cpu_ns(server_pid, main_thread=True) - cpu0[2])
            run.client_cpu_ns.append(sum(map(cpu_ns, waiting_workers)) - cpu0[1])
            await pump_until(lambda: all(len(reports[k]) > round_ for k in active),
                             time.monotonic() + timeout + interval)
            for k in active:  # waiter workers by index, i.e. by first unit; the pollers last
                report = reports[k][round_]
                stamps = [None if s is None else (s - t_returned) * 1e3 for s in report["stamps"]]
                if report["role"] == "waiters":
                    run.latency_ms.extend(stamps)
                    run.from_call_ms.extend(None if s is None else (s - t0) * 1e3
                                            for s in report["stamps"])
                else:
                    run.poll_latency_ms.extend(stamps)
                run.errors.extend(report["errors"])
            if round_ + 1 < rounds:  # measured: the waiters may park the next round
                for process in workers[:clients]:
                    assert process.stdin is not None
                    process.stdin.write("next\n")
                    process.stdin.flush()
        return run
    finally:
        core.close()


def run_size(
    waiters: int, clients: int, pollers: int, rounds: int, interval: float, timeout: float,
    journal: bool = True, history: int | None = None, native: Path | None = None,
) -> Run:
    """One size on a fresh ``unitsync serve`` (its journal in the run's temp dir, or none);
    workers and server are stopped whatever happens."""
    import capnp

    ensure_fd_limit(waiters + pollers + 256, "wakeup")
    workdir = tempfile.mkdtemp(prefix="us-", dir="/tmp")  # short: a socket path is <= 107 bytes
    path = Path(workdir) / "unitsync.sock"
    env = {**os.environ, "UNITSYNC_SOCKET": str(path)}
    state = ["--state", str(Path(workdir) / "unitsync.state")] if journal else ["--no-state"]
    # one connection per waiter and poller, the driver's, and room: past serve's default limit
    # (1,024) at 1,000 waiters
    limit = ["--max-connections", str(max(1024, waiters + pollers + 64))]
    if history is not None:
        limit += ["--history", str(history)]
    server = start([sys.executable, "-m", "cli", "serve", "--socket", str(path), *state, *limit],
                   env, "serving on")
    server_tail: deque[str] = deque(maxlen=20)
    assert server.stderr is not None
    drain(server.stderr, server_tail)
    workers: list[subprocess.Popen[str]] = []
    try:
        run = asyncio.run(capnp.run(
            drive(path, waiters, clients, pollers, rounds, interval, timeout, workers,
                  server.pid, native)))
        run.journal = journal
        return run
    except TimeoutError:
        raise RuntimeError(f"wakeup: a client worker did not answer within {timeout} s; "
                           f"server stderr: {''.join(server_tail)!r}") from None
    finally:
        for process in workers:
            process.kill()
            process.wait(timeout=10)
        stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


def _per_waiter(cpu: list[int], waiters: int) -> float:
    """The median round's CPU (ns) in µs per waiter; NaN without rounds."""
    if not cpu:
        return float("nan")
    return round(sorted(cpu)[len(cpu) // 2] / 1e3 / waiters, 2)


def figures(run: Run) -> dict[str, Any]:
    woken = sorted(x for x in run.latency_ms if x is not None)
    polled = sorted(x for x in run.poll_latency_ms if x is not None)
    called = sorted(x for x in run.from_call_ms if x is not None)
    nan = float("nan")
    max_ms = woken[-1] if woken else nan
    # us_per_waiter: the worst round's last wake-up over that round's waiters
    return {
        "waiters": run.waiters,
        "p50_ms": round(percentile(woken, 0.50), 3) if woken else nan,
        "p99_ms": round(percentile(woken, 0.99), 3) if woken else nan,
        "max_ms": round(max_ms, 3),
        "us_per_waiter": round(max_ms * 1e3 / run.waiters, 2),
        "poll_p50_ms": round(percentile(polled, 0.50), 1) if polled else nan,
        "poll_p99_ms": round(percentile(polled, 0.99), 1) if polled else nan,
        "min_ms": round(woken[0], 3) if woken else nan,
        "from_call_p50_ms": round(percentile(called, 0.50), 3) if called else nan,
        "from_call_p99_ms": round(percentile(called, 0.99), 3) if called else nan,
        "from_call_max_ms": round(called[-1], 3) if called else nan,
        "from_call_us_per_waiter": round((called[-1] if called else nan) * 1e3 / run.waiters, 2),
        "negative": sum(x < 0 for x in woken),
        "missing": len(run.latency_ms) - len(woken),
        "rounds": run.rounds,
        "errors": len(run.errors),
        "clients": run.clients,
        "pollers": run.pollers,
        "park_s": round(run.park_s, 2),
        "complete_ms": round(sorted(run.complete_ms)[len(run.complete_ms) // 2], 3),
        # medians over rounds of the CPU each side spent on the fan-out, per woken waiter
        "server_cpu_us_per_waiter": _per_waiter(run.server_cpu_ns, run.waiters),
        "server_trio_cpu_us_per_waiter": _per_waiter(run.server_trio_cpu_ns, run.waiters),
        "client_cpu_us_per_waiter": _per_waiter(run.client_cpu_ns, run.waiters),
        "journal": run.journal,
        "waiter_client": run.waiter_client,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    journal = {r["journal"] for r in results}
    print("wake-up latency from `complete dep` being sent to each parked ready() resolving, ms"
          " (ret p99: from its reply; journal "
          + "/".join("on" if j else "off" for j in sorted(journal, reverse=True)) + ")")
    header = (f"{'waiters':>8} {'clients':>7} {'p50':>8} {'p99':>8} {'max':>8} {'µs/waiter':>9}"
              f" {'missing':>7} {'ret p50':>8} {'ret p99':>8} {'neg':>5} {'complete':>8}"
              f" {'poll p50':>9} {'poll p99':>9} {'park s':>7}")
    print(header)
    for r in results:
        print(f"{r['waiters']:8} {r['clients']:7} {r['from_call_p50_ms']:8.3f}"
              f" {r['from_call_p99_ms']:8.3f} {r['from_call_max_ms']:8.3f}"
              f" {r['from_call_us_per_waiter']:9.2f} {r['missing']:7} {r['p50_ms']:8.3f}"
              f" {r['p99_ms']:8.3f} {r['negative']:5} {r['complete_ms']:8.3f}"
              f" {r['poll_p50_ms']:9.1f} {r['poll_p99_ms']:9.1f} {r['park_s']:7.2f}")
    for r in results:
        if r["waiters"] == 1:
            ok = r["from_call_p99_ms"] <= ONE_WAITER_P99_GOAL_MS
            print(f"goal (ARCHITECTURE §8) one waiter p99 <= {ONE_WAITER_P99_GOAL_MS:g} ms: "
                  f"{'met' if ok else 'NOT met'} ({r['from_call_p99_ms']:.3f} ms from the complete "
                  f"sent; {r['p99_ms']:.3f} from its reply)")
        if r["waiters"] == 1000:
            ok = (r["from_call_max_ms"] <= THOUSAND_MAX_GOAL_MS
                  and r["from_call_us_per_waiter"] <= PER_WAITER_GOAL_US and r["missing"] == 0)
            print(f"goal (ARCHITECTURE §8) 1,000 waiters all woken within {THOUSAND_MAX_GOAL_MS:g} ms "
                  f"(<= {PER_WAITER_GOAL_US:g} µs/waiter): {'met' if ok else 'NOT met'} "
                  f"(from the complete sent: p99 {r['from_call_p99_ms']:.1f} ms, max "
                  f"{r['from_call_max_ms']:.1f} ms, {r['from_call_us_per_waiter']:.1f} µs/waiter; "
                  f"from its reply: p99 {r['p99_ms']:.1f}, max {r['max_ms']:.1f})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress wakeup")
    parser.add_argument("--waiters", type=int, action="append",
                        help="parked clients (repeat for several sizes)")
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 1,100,1000,5000")
    parser.add_argument("--clients", type=int,
                        help="client worker processes sharing the waiters "
                             "(default min(8, ceil(N/250)), at least 1)")
    parser.add_argument("--pollers", type=int,
                        help="polling clients, the baseline (default min(N, 50), at least 1)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the wake-up R times per size on the same connections "
                             "(fresh units and dependency each round; figures pooled); "
                             "pollers run in round 0 only")
    parser.add_argument("--interval", type=float, default=1.0, help="pollers: seconds between polls")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="bound on parking, and on waking after the complete, in seconds")
    parser.add_argument("--state", action=argparse.BooleanOptionalAction, default=True,
                        help="the server keeps its journal (in the run's temp dir, as `unitsync "
                             "serve` does by default) or, --no-state, memory only")
    parser.add_argument("--history", type=int,
                        help="serve --history N: events the coordinator keeps (default: serve's)")
    parser.add_argument("--raw", type=Path, help="write per-waiter latencies (JSON) here")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_WAITERS} waiters, {QUICK_POLLERS} pollers (smoke test)")
    parser.add_argument("--waiter-client", choices=["c++", "python"], default="c++",
                        help="the waiters' worker processes: C++ (stress/wakeup_client.c++, "
                             "built once and cached; Python if the toolchain is missing) or "
                             "Python (stress/_wakeup_client.py, the only ones until 2026-12-06)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)

    sizes = list(args.waiters or [])
    if args.sizes:
        try:
            sizes += [int(s) for s in args.sizes.split(",") if s.strip()]
        except ValueError:
            parser.error(f"--sizes: not a comma-separated list of integers: {args.sizes!r}")
    if args.quick and not sizes:
        sizes = [QUICK_WAITERS]
    if not sizes:
        parser.error("give --waiters N, --sizes N,N,... or --quick")
    if any(n < 1 for n in sizes):
        parser.error("waiters must be at least 1")
    if args.clients is not None and args.clients < 1:
        parser.error("--clients must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.pollers is not None and args.pollers < 1:
        parser.error("--pollers must be at least 1")

    native = native_waiters() if args.waiter_client == "c++" else None
    runs: list[Run] = []
    for n in sizes:
        clients = min(n, args.clients or default_clients(n))
        pollers = args.pollers or (QUICK_POLLERS if args.quick else default_pollers(n))
        run = run_size(n, clients, pollers, args.rounds, args.interval, args.timeout, args.state,
                       args.history, native)
        for error in run.errors[:10]:
            print(f"wakeup: {n} waiters: {error}", file=sys.stderr)
        runs.append(run)
    results = [figures(run) for run in runs]

    if args.raw is not None:
        raw = {"runs": [{"waiters": r.waiters, "clients": r.clients, "pollers": r.pollers,
                         "rounds": r.rounds, "journal": r.journal, "complete_ms": r.complete_ms,
                         "from_call_ms": r.from_call_ms,
                         "latency_ms": r.latency_ms, "poll_latency_ms": r.poll_latency_ms}
                        for r in runs]}
        args.raw.write_text(json.dumps(raw))
    if not args.json:
        print_table(results)
    print(json.dumps(results[0] if len(results) == 1 else {"runs": results}))
    return 0 if all(r["missing"] == 0 and r["errors"] == 0 for r in results) else 1

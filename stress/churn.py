"""Churn: clients connect, mutate, wait, hold leases, disconnect and get killed; afterwards the
server is back to its baseline and its state is exactly what the clients were told.

The server runs in this process (``open_coordinator()`` + ``serve()``, socket in a short /tmp
dir) so that it can be inspected; with its journal in that dir (``--state``, the default: each
mutation is acknowledged after its ``fdatasync``, as ``unitsync serve`` does) or in memory only
(``--no-state``). Once it is up and idle we take the baseline: Trio tasks (the
whole tree from the root task), waiters (ready + reached), RSS (VmRSS) and threads. Then
``--clients`` slots each run worker processes (``stress._churn_client``: asyncio + AsyncioClient),
one after another, for ``--seconds``; a worker connects a few times, makes random calls on its
own units (want / start / complete / fail / hold and the lease's complete / fail / drop, ready
with a short timeout, info, a ready left parked at disconnect, a call given up before its answer
by cancelling it or by closing the connection) and leaves — or the harness SIGKILLs it at a
random moment (mid-call, parked, holding a lease) and starts a replacement.

Every worker logs each call (``begin``, then ``ack`` / ``refused`` / ``done``) to its own JSONL
file, flushed per line. Only a worker mutates its units, so its log gives each unit's expected
final state (:func:`stress._churn_client.replay`); a call it died in may or may not have taken
effect (so may a call it gave up on), and both outcomes are accepted. After the churn we wait
(bounded) until the server is quiet and its state matches, then the checker compares every unit
(status, reason, edges) with the logs and checks the invariants: each dependency's ``current``/``satisfied`` agrees with the
dependency itself, ``ready`` iff every requirement is met, ``blocked_by`` is a failed unit on an
unmet path (and set whenever there is one), no cycle, no waiter, no queued request, no watcher,
``statistics().edges`` agrees, and the tasks are the baseline plus at most one per unit actor.

Figures: ``seconds, journal, clients, connections, calls, acknowledged, killed, cycles_refused,
mismatches, tasks_baseline, tasks_after, unit_actors, waiters_after, rss_baseline_kb,
rss_after_kb, threads_baseline, threads_after`` and extras (``workers``, ``refused``,
``abandoned``, ``killed_mid_call``, ``killed_in_ready``, ``killed_holding_lease``, ``killed_parked``,
``unit_tasks``, ``tasks_per_unit_actor``, ``rss_per_unit_actor_kb``, ``invariant_failures``,
``anomalies``, ``worker_errors``, ``hung``, ``quiesce_s``, ``ok``). Exit 1 unless everything
holds (details on stderr; the logs are kept and their directory printed).

The workers, the log reader and the checker are shared with ``stress/crash.py``, which runs the
same churn against a real ``unitsync serve`` and SIGKILLs *it* (``check_state`` reads only
``list()``/``info()``, so it works over RPC; ``read_logs`` takes that scenario's hooks).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio
import trio.testing

from coordinator import Coordinator, LocalCoordinator, Status, UnitInfo, open_coordinator, serve

from ._churn_client import MUTATIONS, SHARED, SHARED_GHOST, UnitState, replay

ROOT: Final = Path(__file__).resolve().parent.parent
#: Chance that a worker is killed (slot 0's first worker always is), and when: seconds after
#: it has started (printed ``hello``).
KILL_CHANCE: Final = 0.35
KILL_AFTER: Final = (0.05, 1.5)
#: Bounds: a worker past the churn by this much is hung; the server quiet within this.
WORKER_GRACE: Final = 60.0
QUIESCE_LIMIT: Final = 15.0
#: Any one request to the in-process coordinator (set-up, a check) longer than this is a hang.
SERVER_LIMIT: Final = 60.0
NOT_REGISTERED: Final = ("", "", frozenset())

Key = tuple[str, str, frozenset[tuple[str, str]]]


@dataclass
class Churn:
    path: Path
    workdir: Path
    seed: int
    clients: int
    abandon: int
    stop_at: float = 0.0  # time.monotonic()
    #: Extra options for every worker (the crash scenario: ``--server-may-die``).
    worker_args: list[str] = field(default_factory=list)
    #: The crash scenario's server generation: each worker is tagged with the one it ran against.
    round: int = 0
    round_of: dict[str, int] = field(default_factory=dict)
    next_gen: Counter[int] = field(default_factory=Counter)  # per slot: worker ids never repeat
    workers: int = 0
    killed: set[str] = field(default_factory=set)
    killed_at: dict[str, float] = field(default_factory=dict)  # time.monotonic() of the SIGKILL
    hung: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    live: set[trio.Process] = field(default_factory=set)
    peak_waiters: int = 0


# --- measuring the server ---------------------------------------------------------------------


def census() -> tuple[int, int, Counter[str]]:
    """(all Trio tasks, unit actor tasks, the names of the others)."""
    stack, total, units, others = [trio.lowlevel.current_root_task()], 0, 0, Counter[str]()
    while stack:
        task = stack.pop()
        total += 1
        if task.name.startswith("unit:"):
            units += 1
        else:
            others[task.name] += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return total, units, others


def threads() -> tuple[int, int]:
    """(threads, of which idle in Trio's thread cache: they linger 10 s after their last job,
    e.g. the ``waitid`` threads that waited for worker processes)."""
    names = [thread.name for thread in threading.enumerate()]
    return len(names), sum(name.startswith("Trio thread ") for name in names)


def rss_kb() -> int:
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def waiters(coord: LocalCoordinator) -> int:
    stats = await coord.statistics()
    return stats.ready_waiters + stats.reached_waiters


# --- the churn --------------------------------------------------------------------------------


async def first_line(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data


async def run_worker(churn: Churn, slot: int, gen: int) -> None:
    wid = f"w{slot}.{gen}"
    rng = random.Random(f"{churn.seed}/{wid}")
    doomed = (slot == 0 and gen == 0) or rng.random() < KILL_CHANCE
    command = [
        sys.executable, "-m", "stress._churn_client", str(churn.path), "--worker", wid,
        "--log", str(churn.workdir / f"{wid}.jsonl"), "--seed", str(rng.randrange(2**32)),
        "--connections", str(10**6 if doomed else rng.randint(1, 4)),
        "--deadline", repr(churn.stop_at), "--slots", str(churn.clients),
        "--abandon", str(churn.abandon), *churn.worker_args,
    ]
    churn.round_of[wid] = churn.round
    with open(churn.workdir / f"{wid}.err", "wb") as errors:
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=errors, cwd=ROOT
        )
    churn.live.add(process)
    churn.workers += 1
    assert process.stdout is not None
    try:
        with trio.fail_after(max(churn.stop_at - time.monotonic(), 0) + WORKER_GRACE):
            hello = await first_line(process.stdout)
            if doomed and hello:
                with trio.move_on_after(rng.uniform(*KILL_AFTER)):
                    await process.wait()
                if process.returncode is None:
                    churn.killed_at[wid] = time.monotonic()
                    process.kill()
                    if await process.wait() == -signal.SIGKILL:
                        churn.killed.add(wid)
            await process.wait()
    except trio.TooSlowError:
        churn.hung.append(wid)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(10):
                await process.wait()
            await process.stdout.aclose()
        churn.live.discard(process)
    if wid not in churn.killed and wid not in churn.hung and process.returncode != 0:
        tail = (churn.workdir / f"{wid}.err").read_text(errors="replace")[-600:]
        churn.errors.append(f"{wid} exited {process.returncode}: {tail.strip()}")


async def run_slot(churn: Churn, slot: int) -> None:
    """Workers one after another until ``churn.stop_at`` (read before each one starts)."""
    while time.monotonic() < churn.stop_at:
        gen = churn.next_gen[slot]
        churn.next_gen[slot] += 1
        await run_worker(churn, slot, gen)


async def sample(coord: LocalCoordinator, churn: Churn) -> None:
    while True:
        churn.peak_waiters = max(churn.peak_waiters, await waiters(coord))
        await trio.sleep(0.25)


async def set_up_shared(coord: LocalCoordinator) -> None:
    for name, (status, reason) in SHARED.items():
        unit = coord.unit(name)
        if status == "pending":
            await unit.register()
        else:
            await unit.start()
        if status == "completed":
            await unit.complete()
        elif status == "failed":
            await unit.fail(reason)


# --- what the logs say ------------------------------------------------------------------------


@dataclass
class Expected:
    states: dict[str, set[Key]] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)
    mentioned: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)


#: ``prepare(wid, records, expected) -> records``: a scenario's look at one worker's log before it
#: is replayed (the crash scenario checks and trims the calls the server's death cut short).
Prepare = Callable[[str, list[dict[str, Any]], Expected], list[dict[str, Any]]]
#: ``widen(key) -> keys``: every state the server may rightly show for a unit the log leaves in
#: state ``key`` (the crash scenario: its held-unit rule).
Widen = Callable[[Key], set[Key]]


def read_logs(churn: Churn, *, prepare: Prepare | None = None, widen: Widen | None = None) -> Expected:
    """What the workers' logs allow for each unit (see the module docstring)."""
    expected = Expected()
    for name, (status, reason) in SHARED.items():
        expected.states[name] = {(status, reason, frozenset())}
    expected.mentioned.add(SHARED_GHOST)
    for log in sorted(churn.workdir.glob("*.jsonl")):
        wid = log.stem
        records = []
        for line in log.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass  # cannot happen with one write per line; tolerated all the same
        if prepare is not None:
            records = prepare(wid, records, expected)
        count = expected.counts
        parked = 0
        for record in records:
            op = record["op"]
            count[op] += 1
            if op == "refused":
                count["refused:" + record["error"]] += 1
            elif op == "anomaly":
                expected.anomalies.append(f"{wid}: {record['detail']}")
            elif op == "park":
                parked += 1
            elif op == "disconnect":
                parked = 0
            if op in ("begin", "park"):
                expected.mentioned.add(record["unit"])
                expected.mentioned.update(record.get("deps", ()))
            if op == "begin" and record["call"] in MUTATIONS:
                owner = expected.owner.setdefault(record["unit"], wid)
                assert owner == wid, f"{record['unit']} mutated by {owner} and {wid}"
        model, in_flight, held = replay(records, in_flight_applied=False)
        outcomes = [model]
        if count_abandoned(records) or (in_flight is not None and in_flight["call"] in MUTATIONS):
            outcomes.append(replay(records, in_flight_applied=True)[0])
        for name in set().union(*(outcome.units for outcome in outcomes)):
            keys = {o.units.get(name, UnitState()).key() for o in outcomes}
            expected.states[name] = set().union(*map(widen, keys)) if widen else keys
        if wid in churn.killed:
            count["killed_mid_call"] += in_flight is not None and in_flight["call"] != "ready"
            count["killed_in_ready"] += in_flight is not None and in_flight["call"] == "ready"
            count["killed_holding_lease"] += bool(held)
            count["killed_parked"] += parked > 0
    return expected


def count_abandoned(records: list[dict[str, Any]]) -> int:
    return sum(record["op"] == "abandoned" for record in records)


# --- the checker ------------------------------------------------------------------------------


def show(key: Key) -> str:
    status, reason, edges = key
    text = status or "not registered"
    if reason:
        text += f" ({reason!r})"
    if edges:
        text += " wants " + ", ".join(f"{d}:{r}" for d, r in sorted(edges))
    return text


async def check(coord: LocalCoordinator, expected: Expected) -> tuple[list[str], list[str]]:
    """(mismatches with the logs, invariant failures), the server's statistics included."""
    mismatches, failures, infos = await check_state(coord, expected)
    return mismatches, failures + await check_statistics(coord, infos)


async def check_state(
    coord: Coordinator, expected: Expected
) -> tuple[list[str], list[str], dict[str, UnitInfo]]:
    """(mismatches with the logs, invariant failures, ``list()`` by name), read through the
    public API only (``list()``, ``info()``): works in-process and over RPC alike."""
    mismatches: list[str] = []
    failures: list[str] = []
    infos = {info.name: info for info in await coord.list()}
    status = {name: info.status for name, info in infos.items()}

    for name in sorted(expected.mentioned | set(expected.states) | set(infos)):
        info = infos.get(name) or await coord.unit(name).info()
        actual: Key = (
            info.status.value,
            info.reason,
            frozenset((d.depends_on, d.required.value) for d in info.dependencies),
        )
        allowed = expected.states.get(name, {NOT_REGISTERED})
        if name not in infos and info.status is not Status.NOT_REGISTERED:
            mismatches.append(f"{name}: {show(actual)}, but missing from list()")
        if name not in expected.mentioned and name not in expected.states:
            mismatches.append(f"{name}: registered ({show(actual)}) but no client named it")
        elif actual not in allowed:
            owner = expected.owner.get(name, "nobody")
            mismatches.append(
                f"{name} (owner {owner}): server has {show(actual)}; the log allows "
                + (" | ".join(sorted(show(k) for k in allowed)) or "nothing")
            )

    # invariants of the state itself
    for info in infos.values():
        for dep in info.dependencies:
            real = status.get(dep.depends_on, Status.NOT_REGISTERED)
            if dep.current is not real:
                failures.append(f"{info.name} sees {dep.depends_on} as {dep.current.label}; it is {real.label}")
            if dep.satisfied != real.reaches(dep.required):
                failures.append(f"{info.name}: {dep.depends_on} ({real.label}, needs "
                                f"{dep.required.label}) shown satisfied={dep.satisfied}")
        met = all(status.get(d.depends_on, Status.NOT_REGISTERED).reaches(d.required)
                  for d in info.dependencies)
        if info.ready != met:
            failures.append(f"{info.name}: ready={info.ready} but requirements met={met}")

    order, cycle = topological(infos)
    if cycle:
        failures.append("cycle in the graph: " + " -> ".join(cycle))
    else:
        blockers: dict[str, set[str]] = {}
        for name in order:  # dependencies first
            info = infos.get(name)
            found: set[str] = set()
            if info is not None and info.status not in (Status.STARTED, Status.COMPLETED):
                for dep in info.dependencies:
                    real = status.get(dep.depends_on, Status.NOT_REGISTERED)
                    if not real.reaches(dep.required):
                        found |= {dep.depends_on} if real is Status.FAILED else blockers.get(dep.depends_on, set())
            blockers[name] = found
            if info is not None and (info.blocked_by or None) not in (found or {None}):
                failures.append(f"{info.name}: blocked_by={info.blocked_by!r}, failed units on its "
                                f"unmet paths: {sorted(found) or 'none'}")
    return mismatches, failures, infos


async def check_statistics(coord: LocalCoordinator, infos: dict[str, UnitInfo]) -> list[str]:
    """Invariant failures in the in-process server's own counters, after the churn."""
    failures: list[str] = []
    stats = await coord.statistics()
    if stats.ready_waiters or stats.reached_waiters:
        failures.append(f"waiters left: ready {stats.ready_waiters}, reached {stats.reached_waiters}")
    if stats.overflow or stats.watchers:
        failures.append(f"overflow {stats.overflow}, watchers {stats.watchers} after the churn")
    edges = sum(len(info.dependencies) for info in infos.values())
    if stats.edges != edges:
        failures.append(f"statistics().edges = {stats.edges}, the units list {edges}")
    return failures


def topological(infos: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Names in dependency-first order, or a cycle (iterative DFS)."""
    deps = {name: [d.depends_on for d in info.dependencies] for name, info in infos.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in sorted(deps):
        if root in state:
            continue
        stack = [(root, iter(deps[root]))]
        state[root] = 1
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                state[name] = 2
                order.append(name)
            elif state.get(child) == 1:
                path = [n for n, _ in stack]
                return order, path[path.index(child):] + [child]
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(deps.get(child, ()))))
    return order, []


async def check_until_quiet(
    check_once: Callable[[], Awaitable[tuple[list[str], list[str]]]], limit: float = QUIESCE_LIMIT
) -> tuple[list[str], list[str], float]:
    """Check until it passes or ``limit`` seconds have passed (a dead client's waiters and leases
    go when the server notices; 0: check once): (mismatches, invariant failures, seconds it
    took). Each check is bounded by ``SERVER_LIMIT``."""
    t1 = time.monotonic()
    while True:
        with trio.move_on_after(SERVER_LIMIT) as bound:
            mismatches, failures = await check_once()
        if bound.cancelled_caught:
            mismatches, failures = [], [f"the coordinator did not answer within {SERVER_LIMIT} s"]
            break
        if not (mismatches or failures) or time.monotonic() - t1 >= limit:
            break
        await trio.sleep(0.2)
    return mismatches, failures, time.monotonic() - t1


# --- the run ----------------------------------------------------------------------------------


async def run(
    seconds: float, clients: int, seed: int, abandon: int, journal: bool
) -> tuple[dict[str, Any], list[str], Path]:
    workdir = Path(tempfile.mkdtemp(prefix="us-churn-", dir="/tmp"))
    churn = Churn(workdir / "s.sock", workdir, seed, clients, abandon)
    state = workdir / "unitsync.state" if journal else None
    try:
        async with open_coordinator(state=state) as coord, trio.open_nursery() as server:
            with trio.fail_after(SERVER_LIMIT):
                churn.path = await server.start(serve, coord, churn.path)
                await trio.testing.wait_all_tasks_blocked(0.05)
                tasks_baseline, _, others_baseline = census()
                waiters_baseline = await waiters(coord)
                rss_baseline, (threads_baseline, idle_baseline) = rss_kb(), threads()
                await set_up_shared(coord)
            churn.stop_at = time.monotonic() + seconds
            t0 = time.monotonic()
            async with trio.open_nursery() as sampling:
                sampling.start_soon(sample, coord, churn)
                async with trio.open_nursery() as nursery:
                    for slot in range(clients):
                        nursery.start_soon(run_slot, churn, slot)
                sampling.cancel_scope.cancel()
            elapsed = time.monotonic() - t0

            expected = read_logs(churn)
            mismatches, failures, quiesce = await check_until_quiet(lambda: check(coord, expected))

            with trio.fail_after(SERVER_LIMIT):
                stats = await coord.statistics()
                await trio.testing.wait_all_tasks_blocked(0.05)
            tasks_after, unit_tasks, others_after = census()
            rss_after, (threads_after, idle_after) = rss_kb(), threads()
            if threads_after - idle_after != threads_baseline - idle_baseline:
                failures.append(f"threads (not counting idle ones in Trio's cache): "
                                f"{threads_baseline - idle_baseline} at baseline, {threads_after - idle_after} after")
            if others_after != others_baseline:
                failures.append(f"tasks other than unit actors: {dict(others_after - others_baseline)} "
                                f"more, {dict(others_baseline - others_after)} fewer than at baseline")
            if unit_tasks > stats.actors:
                failures.append(f"{unit_tasks} unit tasks for {stats.actors} unit actors")
            server.cancel_scope.cancel()
    finally:
        for process in list(churn.live):
            process.kill()

    counts = expected.counts
    problems = ([f"mismatch: {m}" for m in mismatches] + [f"invariant: {f}" for f in failures]
                + [f"anomaly: {a}" for a in expected.anomalies]
                + [f"worker error: {e}" for e in churn.errors] + [f"hung: {h}" for h in churn.hung])
    result = {
        "seconds": round(elapsed, 2),
        "journal": journal,
        "clients": clients,
        "connections": counts["connect"],
        "calls": counts["begin"],
        "acknowledged": counts["ack"],
        "killed": len(churn.killed),
        "cycles_refused": counts["refused:CycleError"],
        "mismatches": len(mismatches),
        "tasks_baseline": tasks_baseline,
        "tasks_after": tasks_after,
        "unit_actors": stats.actors,
        "waiters_after": stats.ready_waiters + stats.reached_waiters,
        "rss_baseline_kb": rss_baseline,
        "rss_after_kb": rss_after,
        "threads_baseline": threads_baseline,
        "threads_after": threads_after,
        "idle_trio_threads_after": idle_after,
        "workers": churn.workers,
        "units": stats.units,
        "edges": stats.edges,
        "refused": counts["refused"],
        "abandoned": counts["abandoned"],
        "killed_mid_call": counts["killed_mid_call"],
        "killed_in_ready": counts["killed_in_ready"],
        "killed_holding_lease": counts["killed_holding_lease"],
        "killed_parked": counts["killed_parked"],
        "peak_waiters": churn.peak_waiters,
        "waiters_baseline": waiters_baseline,
        "unit_tasks": unit_tasks,
        "tasks_per_unit_actor": round((tasks_after - tasks_baseline) / max(stats.actors, 1), 3),
        "rss_per_unit_actor_kb": round((rss_after - rss_baseline) / max(stats.actors, 1), 2),
        "invariant_failures": len(failures),
        "anomalies": len(expected.anomalies),
        "worker_errors": len(churn.errors),
        "hung": len(churn.hung),
        "quiesce_s": round(quiesce, 2),
        "ok": not problems,
    }
    return result, problems, workdir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress churn")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long workers are started")
    parser.add_argument("--clients", type=int, default=8, help="worker processes at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--abandon", type=int, default=20,
                        help="weight (of ~100) of calls a worker gives up before the answer")
    parser.add_argument("--state", action=argparse.BooleanOptionalAction, default=True,
                        help="the coordinator keeps a journal (in the run's temp dir; every "
                             "mutation waits for its fdatasync) or, --no-state, memory only")
    parser.add_argument("--quick", action="store_true", help="3 s, 4 clients (smoke test)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    seconds, clients = (3.0, 4) if args.quick else (args.seconds, args.clients)
    result, problems, workdir = trio.run(run, seconds, clients, args.seed, args.abandon, args.state)
    return report(result, problems, workdir, json_only=args.json, width=24)


def report(
    result: dict[str, Any], problems: list[str], workdir: Path, *, json_only: bool, width: int
) -> int:
    """Print a run's problems (stderr; the logs kept if any), its figures and the JSON line;
    the exit code."""
    for problem in problems[:40]:
        print(problem, file=sys.stderr)
    if len(problems) > 40:
        print(f"... and {len(problems) - 40} more", file=sys.stderr)
    if problems:
        print(f"logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if not json_only:
        for key, value in result.items():
            print(f"{key:{width}} {value}")
    print(json.dumps(result))
    return 0 if result["ok"] else 1

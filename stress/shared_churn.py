"""``python -m stress shared --churn``: churn's workers across two ``unitsync serve --store``
coordinators on a 3-member etcd cluster while etcd members are killed and restarted; afterwards
every unit, on **both** coordinators, is what the workers were told: nothing acknowledged lost.

One run, in a short /tmp dir (etcd data dirs, two sockets, the workers' logs):

1. Three etcd members on free loopback ports (``stress/_etcd.py``); two ``unitsync serve
   --store etcd://m0,m1,m2/churn`` (A and B, each its own socket: two "machines"). The harness
   sets up churn's shared units through A.
2. ``--clients`` slots run churn's workers (``stress._churn_client``, the same random
   want/start/complete/fail/hold/ready/abandon calls, some workers SIGKILLed as in churn) for
   ``--seconds``, with ``--also B --store-may-fail``: each connection goes to A or B at random
   (a unit's calls cross coordinators), and a mutation answered ``unitsync.unavailable`` is
   logged with its ``applied``: ``"no"`` is held to (the check requires it not to have
   happened), ``"unknown"`` accepted either way, as a call a worker died in.
3. Meanwhile, for each of ``--kills`` (``leader``, ``follower``; default both, in that order) at
   evenly spaced moments of the churn: the member in that role now (``EtcdCluster.leader()``)
   gets SIGKILL, stays down ``--down`` seconds, is started again on its data directory, and the
   harness waits until the three agree on a leader.
4. After the churn: churn's :func:`read_logs` and :func:`check_state` against A and against B
   (``list()``/``info()`` over RPC; the invariants included), until both pass or
   ``QUIESCE_LIMIT`` (a dead worker's holds are failed when its coordinator notices).

Figures: ``seconds, clients, kills, workers, connections, calls, acknowledged, unavailable
(answers; of which unavailable_unknown: applied "unknown"), mismatches (A and B together),
mismatches_a, mismatches_b, mismatches_held_not_released (a unit still started after its
holder had gone: the release did not take effect), mismatches_other (the rest: an acknowledged
call lost would be one), invariant_failures, anomalies, killed (workers), cycles_refused,
ack_gap_max_s`` (the longest time without any acknowledged mutation, from the first kill to the
end: the writes' pause across a failover), per kill ``kill_log`` (role, member, seconds into the
churn, the new leader once back), ``quiesce_s``, ``loadavg``, ``ok``. Exit 1 unless everything
holds (details on stderr; the logs kept).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import trio

from coordinator import Coordinator, connect
from coordinator._lease import HOLDER_GONE

from ._etcd import ETCD, NO_ETCD, EtcdCluster, open_cluster, store_url
from .churn import (
    QUIESCE_LIMIT,
    SERVER_LIMIT,
    Churn,
    Expected,
    check_state,
    check_until_quiet,
    read_logs,
    report,
    run_slot,
    set_up_shared,
)
from .crash import key_of
from .shared import serving

ROLES: Final = ("leader", "follower")


async def kill_and_restart(cluster: EtcdCluster, role: str, down: float,
                           log: list[dict[str, Any]], t0: float) -> None:
    """SIGKILL the member in ``role`` now, ``down`` s later start it again, until healthy."""
    leader = await cluster.leader()
    victim = leader if role == "leader" else next(
        m for m in cluster.members if m is not leader and m.running)
    t_kill = time.monotonic()
    victim.kill()
    await trio.sleep(down)
    victim.start()
    await cluster.healthy()
    log.append({"role": role, "member": victim.name, "killed_at_s": round(t_kill - t0, 2),
                "back_after_s": round(time.monotonic() - t_kill, 2),
                "leader_after": (await cluster.leader()).name})


def ack_gap(workdir: Path, since: float) -> float:
    """The longest stretch with no acknowledged mutation, from ``since`` to the last ack."""
    stamps = sorted(
        record["t"] for log in workdir.glob("*.jsonl") for line in log.read_text().splitlines()
        if line.strip() and (record := json.loads(line))["op"] == "ack" and record["t"] >= since
    )
    stamps = [since, *stamps]
    return max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)


async def classify(coord: Coordinator, found: list[str], expected: Expected) -> Counter[str]:
    """The mismatches on one coordinator by kind: ``held_not_released``, a unit still
    ``started`` where the log says its hold ended (its holder gone: the release never took
    effect), and ``other`` (an acknowledged call lost, or something the log cannot explain)."""
    kinds: Counter[str] = Counter()
    for line in found:
        name = line.split(" (owner", 1)[0].split(":", 1)[0]
        key = key_of(await coord.unit(name).info())
        allowed = expected.states.get(name, set())
        released = key[0] == "started" and ("failed", HOLDER_GONE, key[2]) in allowed
        kinds["held_not_released" if released else "other"] += 1
    return kinds


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[str], Path]:
    workdir = Path(tempfile.mkdtemp(prefix="us-schurn-", dir="/tmp"))
    sock_a, sock_b = workdir / "a" / "s.sock", workdir / "b" / "s.sock"
    logs = workdir / "logs"
    logs.mkdir()
    churn = Churn(sock_a, logs, args.seed, args.clients, args.abandon,
                  worker_args=["--also", str(sock_b), "--store-may-fail"])
    kill_log: list[dict[str, Any]] = []
    mismatches: dict[str, list[str]] = {"A": [], "B": []}
    exited: dict[str, int] = {}  # a serve that stopped during the churn: its exit status
    kinds: Counter[str] = Counter()  # the mismatches by kind (classify)
    failures: list[str] = []
    load = os.getloadavg()[0]
    (workdir / "etcd").mkdir()
    try:
        async with open_cluster(workdir / "etcd", 3) as cluster:
            url = store_url(cluster, "churn")
            async with serving(sock_a, "--store", url) as a, serving(sock_b, "--store", url) as b:
                with trio.fail_after(SERVER_LIMIT):
                    async with connect(sock_a) as coord:
                        await set_up_shared(coord)  # type: ignore[arg-type]  # same unit API
                t0 = time.monotonic()
                churn.stop_at = t0 + args.seconds
                async with trio.open_nursery() as nursery:
                    for slot in range(args.clients):
                        nursery.start_soon(run_slot, churn, slot)
                    for k, role in enumerate(args.kills):
                        await trio.sleep(t0 + args.seconds * (k + 0.3) / len(args.kills)
                                         - time.monotonic())
                        with trio.fail_after(args.down + 60):
                            await kill_and_restart(cluster, role, args.down, kill_log, t0)
                elapsed = time.monotonic() - t0

                expected = read_logs(churn)
                serves = {"A": (a, sock_a), "B": (b, sock_b)}
                for name, (serve, _) in serves.items():
                    if serve.process.returncode is not None:
                        exited[name] = serve.process.returncode
                live = [(name, sock) for name, (serve, sock) in serves.items()
                        if name not in exited]
                found, quiesce = [], 0.0
                if live:
                    with trio.fail_after(SERVER_LIMIT * 2 + QUIESCE_LIMIT):
                        async with contextlib.AsyncExitStack() as stack:
                            coords = [(name, await stack.enter_async_context(connect(sock)))
                                      for name, sock in live]

                            async def check_all() -> tuple[list[str], list[str]]:
                                found, broken = [], []
                                for name, coord in coords:
                                    found_here, broken_here, _ = await check_state(coord, expected)
                                    mismatches[name] = found_here
                                    found += [f"{name}: {m}" for m in found_here]
                                    broken += [f"{name}: {f}" for f in broken_here]
                                return found, broken

                            found, failures, quiesce = await check_until_quiet(check_all)
                            for name, coord in coords:
                                kinds += await classify(coord, mismatches[name], expected)
                tails = {"A": list(a.tail), "B": list(b.tail)}
                for name, tail in tails.items():
                    (workdir / f"serve-{name}.err").write_text("\n".join(tail) + "\n")
    finally:
        for process in list(churn.live):
            process.kill()

    counts = expected.counts
    problems = ([f"mismatch: {m}" for m in found] + [f"invariant: {f}" for f in failures]
                + [f"anomaly: {a}" for a in expected.anomalies]
                + [f"worker error: {e}" for e in churn.errors] + [f"hung: {h}" for h in churn.hung])
    problems += [f"serve {name} exited {code} during the churn (not checked)"
                 for name, code in exited.items()]
    if counts["ack"] == 0:
        problems.append("no mutation was acknowledged: nothing was tested")
    if len(kill_log) != len(args.kills):
        problems.append(f"{len(kill_log)} of {len(args.kills)} kills done")
    if problems:
        problems += [f"serve {name} stderr: {line}" for name, tail in tails.items() for line in tail]
    first_kill = t0 + min((k["killed_at_s"] for k in kill_log), default=0.0)
    unknown = sum(
        1 for log in logs.glob("*.jsonl") for line in log.read_text().splitlines()
        if '"op": "unavailable"' in line and json.loads(line).get("applied") != "no"
    )
    result = {
        "seconds": round(elapsed, 2),
        "clients": args.clients,
        "kills": list(args.kills),
        "down_s": args.down,
        "workers": churn.workers,
        "connections": counts["connect"],
        "calls": counts["begin"],
        "acknowledged": counts["ack"],
        "unavailable": counts["unavailable"],
        "unavailable_unknown": unknown,
        "mismatches": len(found),
        "mismatches_a": len(mismatches["A"]),
        "mismatches_b": len(mismatches["B"]),
        "mismatches_held_not_released": kinds["held_not_released"],
        "mismatches_other": kinds["other"],
        "serves_exited": exited,
        "invariant_failures": len(failures),
        "anomalies": len(expected.anomalies),
        "worker_errors": len(churn.errors),
        "hung": len(churn.hung),
        "killed": len(churn.killed),
        "refused": counts["refused"],
        "abandoned": counts["abandoned"],
        "cycles_refused": counts["refused:CycleError"],
        "ack_gap_max_s": round(ack_gap(logs, first_kill), 3),
        "kill_log": kill_log,
        "quiesce_s": round(quiesce, 2),
        "loadavg": round(load, 2),
        "ok": not problems,
    }
    return result, problems, workdir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress shared --churn")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long workers are started")
    parser.add_argument("--clients", type=int, default=8, help="worker processes at a time")
    parser.add_argument("--kills", default=",".join(ROLES),
                        help="etcd members killed in turn, by role: leader, follower")
    parser.add_argument("--down", type=float, default=3.0, help="seconds each stays down")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--abandon", type=int, default=20,
                        help="weight (of ~100) of calls a worker gives up before the answer")
    parser.add_argument("--quick", action="store_true", help="12 s, 4 clients, down 2 s")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.clients, args.down = 12.0, 4, 2.0
    args.kills = [k for k in args.kills.split(",") if k]
    if not args.kills or set(args.kills) - set(ROLES):
        parser.error(f"--kills: a list of {', '.join(ROLES)}")
    if ETCD is None:
        print(f"python -m stress shared --churn: {NO_ETCD}", file=sys.stderr)
        return 2
    result, problems, workdir = trio.run(run, args)
    return report(result, problems, workdir, json_only=args.json, width=24)

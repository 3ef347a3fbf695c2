"""Crash recovery: the churn against a real ``unitsync serve --state J``, SIGKILLed mid-churn and
restarted on the same journal, ``--kills`` times; after each restart the restored state must be
exactly what the workers were told.

One run, in a short /tmp dir (socket ``s.sock``, journal ``unitsync.state`` on the same disk):

1. ``unitsync serve --socket S --state J`` starts (timed from spawn to its socket answering
   ``ping``: the empty-journal start is the baseline of the restart times). Over RPC the harness
   sets up churn's shared units and a probe (``probe.r0.a`` wants ``probe.r0.b``, which has
   completed; ``a`` started).
2. A round: ``--clients`` slots run churn's workers (``stress._churn_client --server-may-die``:
   the same random want/start/complete/fail/hold/ready/abandon calls, each logged begin → ack /
   refused / done; some workers SIGKILLed by the harness as in churn) for up to ``--seconds``.
   At a random moment in ``KILL_WINDOW`` of it the server gets SIGKILL. Each worker sees its
   connection drop, logs the call it was in as ``lost`` (its ``begin`` stays without an end)
   and exits; no new worker starts.
3. ``unitsync serve`` restarts on the same journal (timed the same way), and the harness reads
   the restored state over RPC (``list()``, ``info()`` of every unit any worker named) and
   compares it with the replay of every worker's log so far (churn's :func:`read_logs` and
   :func:`check_state`, invariants included): each acknowledged mutation must be there; a call
   in flight at the kill may or may not have taken effect (both accepted, as churn does for a
   call a worker died in); a call *begun* after the server was already dead (reaped) cannot have
   reached it and must not have. A unit restored by an earlier round must be unchanged (except
   as :func:`held_successors` allows). Then the restored server must still refuse cycles (along
   a random path of restored edges, and the last probe's edge) and accept new mutations (the
   round's probe).
4. Repeat from 2; after the last check the server is stopped with SIGTERM and must exit 0.

Held units (a unit started through ``hold()``): :func:`held_outcomes` is the one place that says
what a unit whose lease was never completed or failed may look like after a restart.

Figures: ``rounds, clients, workers, connections, calls, acknowledged, in_flight_at_kill,
in_flight_mutations_at_kill, begun_after_kill, mismatches, restored_units, restored_edges,
cycles_refused_after_restart, first_start_ms, restart_ms_median, restart_ms_max,
journal_bytes`` and extras (``killed`` workers, ``unreachable``, ``restart_ms`` and
``journal_bytes_per_round`` per round; ``held_restored_started_at_kill``,
``held_restored_started_released_before``, ``held_released_ages_s``, ``holder_gone_failed``:
what the held-unit rule let through, and why;
``invariant_failures``, ``anomalies``, ``worker_errors``, ``hung``, ``probe_failures``,
``check_s``, ``final_exit``, ``sabotaged_records``, ``ok``). Exit 1 unless everything holds (details on stderr; logs kept).
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from coordinator import Coordinator, CycleError, UnitInfo, connect
from coordinator._lease import HOLDER_GONE

from ._churn_client import MUTATIONS
from .churn import (
    NOT_REGISTERED, ROOT, SERVER_LIMIT, Churn, Expected, Key, check_state, check_until_quiet,
    first_line, read_logs, report, run_slot, set_up_shared,
)

_SCRIPT: Final = Path(sys.executable).with_name("unitsync")
#: The real console script next to this interpreter (``pip install -e .``), else the module.
UNITSYNC: Final = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "cli"]
#: When the server is killed, as fractions of ``--seconds`` after the round's workers start
#: (they take ~0.3 s to import and connect).
KILL_WINDOW: Final = (0.4, 0.95)
#: Spawn of ``unitsync serve`` until its socket answers ping, at most.
START_LIMIT: Final = 60.0
#: Lines of each server's stderr kept for the report.
TAIL: Final = 20


# --- the held-unit rule -----------------------------------------------------------------------


def held_outcomes(key: Key) -> set[Key]:
    """THE HELD-UNIT RULE: every state the restored server may show for a unit the workers' log
    leaves in state ``key``.

    A unit started through ``hold()`` whose lease was never completed or failed — held when the
    server died, dropped, or its holder disconnected or was killed — ends, in the log's replay,
    ``failed`` with :data:`HOLDER_GONE`. The journal records that a start was a hold, and a
    restarted server fails every hold nobody takes back within ``--hold-grace``; the harness
    runs ``serve --hold-grace 0`` (its workers never come back), so such a unit is restored
    ``failed`` with :data:`HOLDER_GONE` whether its failure had been journaled before the kill
    or not: exactly what the replay says. (A hold in flight at the kill keeps its previous
    state or fails so: the two replays give both.) The run still reports how often a restored
    unit was ``started`` where the replay says the hold ended: ``held_restored_started_*``,
    which must now be 0.
    """
    return {key}


def held_successors(seen: Key) -> set[Key]:
    """What a unit the previous restart showed as ``seen``, and nobody has mutated since, may
    show after the next one: the same (with ``--hold-grace 0`` a restored hold has already
    failed when it is seen)."""
    return {seen}


# --- the server process -----------------------------------------------------------------------


@dataclass
class Server:
    process: trio.Process
    start_s: float  # spawn until the socket answered ping
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL))


async def keep_reading(stream: trio.abc.ReceiveStream, tail: deque[str]) -> None:
    """A server's stderr, drained (a full pipe would block it); the last lines kept."""
    async with stream:
        buffer = b""
        while chunk := await stream.receive_some():
            *lines, buffer = (buffer + chunk).split(b"\n")
            tail.extend(line.decode(errors="replace") for line in lines)
            buffer = buffer[-4096:]


async def start_server(nursery: trio.Nursery, sock: Path, journal: Path) -> Server:
    """``unitsync serve`` on ``sock`` with ``journal``, returned once its socket answers ping;
    its stderr is drained by a task in ``nursery``. The caller kills and reaps it."""
    t0 = time.monotonic()
    process = await trio.lowlevel.open_process(
        [*UNITSYNC, "serve", "--socket", str(sock), "--state", str(journal), "--hold-grace", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
    )
    assert process.stderr is not None
    try:
        with trio.fail_after(START_LIMIT):
            first = await first_line(process.stderr)
            if b"serving on" not in first:
                raise RuntimeError(f"unitsync serve did not start: {first.decode(errors='replace')!r}")
            async with connect(sock) as coord:
                await coord.ping()
    except BaseException:
        process.kill()
        raise
    server = Server(process, time.monotonic() - t0)
    server.tail.extend(first.decode(errors="replace").splitlines())
    nursery.start_soon(keep_reading, process.stderr, server.tail)
    return server


def sabotage(journal: Path, lines: int) -> int:
    """Self-test of the checker (``--sabotage N``): drop the last ``N`` records of the dead
    server's log, as a journal that lied about durability would. Returns how many went."""
    log = journal.with_name(journal.name + ".log")
    kept = log.read_bytes().splitlines(keepends=True)
    header, records = kept[:1], kept[1:]
    cut = min(lines, len(records))
    log.write_bytes(b"".join(header + records[:len(records) - cut]))
    return cut


def journal_bytes(journal: Path) -> int:
    return sum(f.stat().st_size for f in journal.parent.glob(journal.name + "*") if f.is_file())


# --- one round's checks -----------------------------------------------------------------------


@dataclass
class Crash:
    """What the rounds found, kept across them."""

    kills: dict[int, tuple[float, float]] = field(default_factory=dict)  # round -> (kill, reaped)
    seen: dict[str, Key] = field(default_factory=dict)  # the previous restart's states
    probes: dict[str, Key] = field(default_factory=dict)  # the harness's own units
    probe_failures: list[str] = field(default_factory=list)
    cycles_refused: int = 0
    held_at_kill: set[str] = field(default_factory=set)  # units whose lease was live at the kill
    released: dict[str, tuple[float, str]] = field(default_factory=dict)  # other held units: (t, how)


def prepare(crash: Crash, churn: Churn, wid: str, records: list[dict[str, Any]],
            expected: Expected, *, tally: bool = True) -> list[dict[str, Any]]:
    """One worker's log before replay: a connection lost (or nobody to connect to) before the
    kill is an anomaly; a call begun after the server was reaped never reached it (dropped from
    the replay, so it must not have taken effect); a call lost earlier stays open (either way).
    ``tally``: count and note (the first reading of the logs after a restart)."""
    t_kill, t_dead = crash.kills[churn.round_of[wid]]
    begins = {r["seq"]: r for r in records if r["op"] == "begin"}
    late = {r["seq"] for r in records if r["op"] == "lost" and begins[r["seq"]]["t"] > t_dead}
    if not tally:
        return [r for r in records if not (r["op"] == "begin" and r["seq"] in late)]
    note_leases(crash, records, churn.killed_at.get(wid) if wid in churn.killed else None)
    for record in records:
        if record["op"] in ("lost", "unreachable") and record["t"] < t_kill:
            expected.anomalies.append(f"{wid}: {record['op']} {record['t'] - t_kill:+.4f} s before "
                                      f"the server was killed: {record.get('detail')}")
        if record["op"] == "lost":
            call = begins[record["seq"]]
            if record["seq"] in late:
                expected.counts["begun_after_kill"] += 1
            else:
                expected.counts["in_flight_at_kill"] += 1
                expected.counts["in_flight_mutations_at_kill"] += call["call"] in MUTATIONS
    return [r for r in records if not (r["op"] == "begin" and r["seq"] in late)]


def note_leases(crash: Crash, records: list[dict[str, Any]], killed_at: float | None) -> None:
    """Which units a worker held when the server died (leases live at its ``lost``/``unreachable``
    record), and when each other unit's lease went without complete/fail (``drop``,
    ``disconnect``, a hold given up; for a worker the harness killed, the SIGKILL) — for the
    figures that say why the held-unit rule was needed."""
    stop = next((i for i, r in enumerate(records) if r["op"] in ("lost", "unreachable")), None)
    begins: dict[int, dict[str, Any]] = {}
    unit_of: dict[str, str] = {}  # live lease key -> unit
    #: holds given up on this connection: the worker keeps the cancelled call (and so, it turns
    #: out, whatever lease it returns) until it disconnects
    given_up: list[str] = []
    for record in records[:stop]:
        op = record["op"]
        if op == "begin":
            begins[record["seq"]] = record
        elif op == "ack" and record.get("lease"):
            unit_of[record["lease"]] = begins[record["seq"]]["unit"]
        elif op == "ack" and "lease" in begins[record["seq"]]:  # lease_complete / lease_fail
            unit_of.pop(begins[record["seq"]]["lease"], None)
        elif op == "abandoned" and begins[record["seq"]]["call"] == "hold":
            given_up.append(begins[record["seq"]]["unit"])
        elif op in ("drop", "disconnect"):
            for key in record.get("leases", ()):
                if key in unit_of:
                    crash.released[unit_of.pop(key)] = (record["t"], op)
            if op == "disconnect":
                crash.released.update(dict.fromkeys(given_up, (record["t"], "hold given up, disconnect")))
                given_up.clear()
    ended = {r["seq"] for r in records if r["op"] in ("ack", "refused", "done", "abandoned")}
    open_holds = [r["unit"] for r in begins.values() if r["call"] == "hold" and r["seq"] not in ended]
    if stop is not None:  # in flight at the kill, or held then
        crash.held_at_kill.update(unit_of.values(), open_holds, given_up)
    elif killed_at is not None:  # the harness killed the worker: its leases went with it
        crash.released.update(dict.fromkeys([*unit_of.values(), *open_holds, *given_up],
                                            (killed_at, "killed")))


def pin(crash: Crash, churn: Churn, expected: Expected) -> None:
    """Narrow what the logs allow by what the previous restart showed, for every unit no worker
    of this round owns (earlier rounds', shared, probes, names nobody registered), and add the
    probes."""
    for name, key in crash.probes.items():
        expected.states[name] = {key}
    for name, seen in crash.seen.items():
        owner = expected.owner.get(name)
        if owner is None or churn.round_of[owner] < churn.round:
            allowed = expected.states.get(name, {NOT_REGISTERED})
            expected.states[name] = allowed & held_successors(seen)


async def refuse_cycles(
    crash: Crash, coord: Coordinator, infos: dict[str, UnitInfo], rng: random.Random
) -> None:
    """Close a cycle along a random path of restored edges, and along the last probe's edge:
    each must be refused with the whole cycle, and change nothing."""
    deps = {name: [d.depends_on for d in info.dependencies] for name, info in infos.items()}
    paths = []
    starts = sorted(n for n, d in deps.items() if d and not n.startswith("probe."))
    if starts:
        path = [rng.choice(starts)]
        while len(path) < 6 and deps.get(path[-1]):
            path.append(rng.choice(deps[path[-1]]))
        paths.append(path)
    probe_edges = sorted(n for n in deps if n.startswith("probe.") and deps[n])
    if probe_edges:
        last = max(probe_edges, key=lambda n: int(n.split(".")[1][1:]))
        paths.append([last, deps[last][0]])
    if not paths:
        crash.probe_failures.append("no restored edge to close a cycle with")
    for path in paths:
        try:
            await coord.unit(path[-1]).want(path[0])
        except CycleError as exc:
            cycle = list(exc.path)
            closes = cycle[0] == cycle[-1] == path[-1] and cycle[1:2] == path[:1]
            if not closes or any(b not in deps.get(a, ()) for a, b in zip(cycle[1:], cycle[2:])):
                crash.probe_failures.append(f"{path[-1]} -> {path[0]} refused with {cycle}: not "
                                            "that edge closing a cycle of restored edges")
            crash.cycles_refused += 1
        else:
            crash.probe_failures.append(f"{path[-1]} -> {path[0]} accepted: it closes "
                                        + " -> ".join(path + [path[0]]))


async def probe(crash: Crash, coord: Coordinator, round_: int) -> None:
    """New mutations on the (restarted) server: ``a`` wants ``b``; ``b`` runs; ``a`` starts."""
    a, b = f"probe.r{round_}.a", f"probe.r{round_}.b"
    try:
        await coord.unit(a).want(b)
        await coord.unit(b).start()
        await coord.unit(b).complete()
        if not (await coord.unit(a).info()).ready:
            crash.probe_failures.append(f"{a}: not ready after {b} completed")
        await coord.unit(a).start()
    except Exception as exc:  # noqa: BLE001 - reported, and the check after will show the state
        crash.probe_failures.append(f"round {round_} probe: {type(exc).__name__}: {exc}")
    crash.probes[a] = ("started", "", frozenset({(b, "completed")}))
    crash.probes[b] = ("completed", "", frozenset())


def key_of(info: UnitInfo) -> Key:
    return (info.status.value, info.reason,
            frozenset((d.depends_on, d.required.value) for d in info.dependencies))


# --- the run ----------------------------------------------------------------------------------


async def run(
    seconds: float, clients: int, kills: int, seed: int, abandon: int, cut: int = 0
) -> tuple[dict[str, Any], list[str], Path]:
    workdir = Path(tempfile.mkdtemp(prefix="us-crash-", dir="/tmp"))
    sock, journal = workdir / "s.sock", workdir / "unitsync.state"
    churn = Churn(sock, workdir, seed, clients, abandon, worker_args=["--server-may-die"])
    crash = Crash()
    rng = random.Random(f"{seed}/crash")
    mismatches: list[str] = []
    failures: list[str] = []
    restart_s: list[float] = []
    sizes: list[int] = []
    quiesce: list[float] = []
    infos: dict[str, UnitInfo] = {}
    servers: list[Server] = []
    final_exit: int | None = None
    held: Counter[str] = Counter()
    sabotaged = 0
    ages: list[tuple[float, str]] = []  # held units restored started: (s from lease's end to the kill, how)
    try:
        async with trio.open_nursery() as readers:
            servers.append(await start_server(readers, sock, journal))
            with trio.fail_after(SERVER_LIMIT):
                async with connect(sock) as coord:
                    await set_up_shared(coord)  # type: ignore[arg-type]  # the same unit API
                    await probe(crash, coord, 0)
            for round_ in range(1, kills + 1):
                churn.round = round_
                t0 = time.monotonic()
                churn.stop_at = t0 + seconds
                async with trio.open_nursery() as slots:
                    for slot in range(clients):
                        slots.start_soon(run_slot, churn, slot)
                    await trio.sleep(t0 + rng.uniform(*KILL_WINDOW) * seconds - time.monotonic())
                    t_kill = time.monotonic()
                    servers[-1].process.kill()  # SIGKILL
                    with trio.fail_after(SERVER_LIMIT):
                        await servers[-1].process.wait()
                    crash.kills[round_] = (t_kill, time.monotonic())
                    churn.stop_at = time.monotonic()  # no new worker; the others see the drop
                sizes.append(journal_bytes(journal))
                if cut:
                    sabotaged += sabotage(journal, cut)
                servers.append(await start_server(readers, sock, journal))
                restart_s.append(servers[-1].start_s)

                expected = read_logs(churn, widen=held_outcomes,
                                     prepare=lambda *a: prepare(crash, churn, *a))
                pin(crash, churn, expected)
                with trio.fail_after(SERVER_LIMIT * 2):
                    async with connect(sock) as coord:
                        async def check_once() -> tuple[list[str], list[str]]:
                            nonlocal infos
                            found, broken, infos = await check_state(coord, expected)
                            return found, broken

                        # once: a restored state has nothing to settle (no client is left)
                        found, broken, took = await check_until_quiet(check_once, limit=0)
                        quiesce.append(took)
                        mismatches += [f"round {round_}: {m}" for m in found]
                        failures += [f"round {round_}: {f}" for f in broken]
                        for name in expected.mentioned | set(expected.states) | set(infos):
                            info = infos.get(name) or await coord.unit(name).info()
                            crash.seen[name] = key_of(info)
                        await refuse_cycles(crash, coord, infos, rng)
                        await probe(crash, coord, round_)
            # the last restart: what the held-unit rule let through, then a clean stop
            strict = read_logs(churn, prepare=lambda *a: prepare(crash, churn, *a, tally=False))
            for name, key in crash.seen.items():
                allowed = strict.states.get(name, ())
                if key[0] != "started" or key in allowed or ("failed", HOLDER_GONE, key[2]) not in allowed:
                    continue  # not started, or started as the log says without the rule
                t, how = crash.released.get(name, (float("nan"), "unknown"))
                age = crash.kills[churn.round_of[expected.owner[name]]][0] - t
                if name in crash.held_at_kill or age <= 0:  # released as the server died
                    held["at_kill"] += 1
                else:
                    held["released"] += 1
                    ages.append((round(age, 3), how))
            held["failed"] = sum(key[:2] == ("failed", HOLDER_GONE) for key in crash.seen.values())
            servers[-1].process.send_signal(signal.SIGTERM)
            with trio.move_on_after(SERVER_LIMIT):
                final_exit = await servers[-1].process.wait()
            readers.cancel_scope.cancel()
    finally:
        for server in servers:
            if server.process.returncode is None:
                server.process.kill()
        for process in list(churn.live):
            process.kill()

    counts = expected.counts
    tail = list(servers[-1].tail) if servers else []
    problems = ([f"mismatch: {m}" for m in mismatches] + [f"invariant: {f}" for f in failures]
                + [f"anomaly: {a}" for a in expected.anomalies]
                + [f"worker error: {e}" for e in churn.errors] + [f"hung: {h}" for h in churn.hung]
                + [f"probe: {p}" for p in crash.probe_failures])
    if final_exit != 0:
        problems.append(f"the last server exited {final_exit} on SIGTERM; its stderr: {tail}")
    if counts["ack"] == 0:
        problems.append("no mutation was acknowledged: nothing was tested")
    registered = [info for info in infos.values() if info.status.value]
    result = {
        "rounds": kills,
        "clients": clients,
        "workers": churn.workers,
        "connections": counts["connect"],
        "calls": counts["begin"],
        "acknowledged": counts["ack"],
        "in_flight_at_kill": counts["in_flight_at_kill"],
        "in_flight_mutations_at_kill": counts["in_flight_mutations_at_kill"],
        "begun_after_kill": counts["begun_after_kill"],
        "mismatches": len(mismatches),
        "restored_units": len(registered),
        "restored_edges": sum(len(info.dependencies) for info in registered),
        "cycles_refused_after_restart": crash.cycles_refused,
        "first_start_ms": round(servers[0].start_s * 1e3, 1) if servers else None,
        "restart_ms_median": round(statistics.median(restart_s) * 1e3, 1) if restart_s else None,
        "restart_ms_max": round(max(restart_s) * 1e3, 1) if restart_s else None,
        "journal_bytes": sizes[-1] if sizes else 0,
        "restart_ms": [round(s * 1e3, 1) for s in restart_s],
        "journal_bytes_per_round": sizes,
        "killed": len(churn.killed),
        "unreachable": counts["unreachable"],
        "refused": counts["refused"],
        "abandoned": counts["abandoned"],
        "cycles_refused": counts["refused:CycleError"],
        "held_restored_started_at_kill": held["at_kill"],
        "held_restored_started_released_before": held["released"],
        "held_released_ages_s": sorted(ages, reverse=True)[:20],
        "holder_gone_failed": held["failed"],
        "check_s": round(max(quiesce, default=0.0), 2),
        "invariant_failures": len(failures),
        "anomalies": len(expected.anomalies),
        "worker_errors": len(churn.errors),
        "hung": len(churn.hung),
        "probe_failures": len(crash.probe_failures),
        "final_exit": final_exit,
        "sabotaged_records": sabotaged,
        "ok": not problems,
    }
    return result, problems, workdir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress crash")
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="per round: the server is killed at a random moment within it")
    parser.add_argument("--clients", type=int, default=8, help="worker processes at a time")
    parser.add_argument("--kills", type=int, default=3, help="kill/restart rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--abandon", type=int, default=20,
                        help="weight (of ~100) of calls a worker gives up before the answer")
    parser.add_argument("--sabotage", type=int, default=0, metavar="N",
                        help="self-test of the checker: drop the last N records of the journal "
                             "after each kill (acknowledged mutations lost: must be reported)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2.5 s, 4 clients")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.clients, args.kills = 2.5, 4, 2
    if args.kills < 1 or args.clients < 1 or args.seconds <= 0:
        parser.error("--kills and --clients must be at least 1, --seconds positive")
    result, problems, workdir = trio.run(
        run, args.seconds, args.clients, args.kills, args.seed, args.abandon, args.sabotage
    )
    return report(result, problems, workdir, json_only=args.json, width=30)

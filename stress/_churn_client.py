"""One churn worker process (``python -m stress._churn_client SOCKET --worker ID --log PATH ...``).

asyncio + :class:`AsyncioClient`, no Trio. It connects, makes a random run of calls on its own units
(``<worker>.u<k>``), disconnects, and again, ``--connections`` times or until ``--deadline``
(a ``time.monotonic()`` value: CLOCK_MONOTONIC is system-wide). The harness may SIGKILL it at
any moment. It prints ``hello`` once imported, and exits 0 (done), 3 (it saw something wrong:
a hang, an unexpected error) or anything else (a crash).

The log (JSONL, one ``write`` + ``flush`` per line, so SIGKILL loses nothing already written):
``begin`` before every call, then ``ack`` (a mutation acknowledged), ``refused`` (an error
that changes nothing) or ``done`` (a read); so a ``begin`` without an end is the call the process
was in when it died (the server may or may not have applied it). Also ``connect``,
``disconnect``, ``drop`` (leases released without complete/fail), ``abandoned`` (a call given up
before its answer: cancelled, or its connection closed; its unit is retired), and ``anomaly``: a reply
that contradicts what this worker alone has done (read-your-writes over one connection).

``--server-may-die`` (the crash scenario, ``stress/crash.py``, SIGKILLs the server): a call that
fails because the connection dropped is logged ``lost`` (its ``begin`` stays without an end: it
may or may not have taken effect), a connect that finds nobody is logged ``unreachable``, and
the worker stops there and exits 0 — it never reconnects, so its log stays one server's story.
Without the flag both are anomalies.

``--also SOCKET`` (repeatable; ``stress shared --churn``): other coordinators of the same
workspace (``serve --store etcd://...``); each connection goes to one of them or ``SOCKET`` at
random, so a unit's calls cross coordinators. ``--store-may-fail``: a mutation answered
``unitsync.unavailable`` (the shared store did not confirm it) is logged ``unavailable`` with its
``applied``, then ``refused`` when it says "no" (the checker holds the server to that) or
``abandoned`` when "unknown" (either outcome accepted; the unit retired); a read so answered is
``done``. Without the flag each is an anomaly.

Only this worker mutates its own units; shared units (:data:`SHARED`, set up by the harness) and
other workers' units are only named as dependencies or waited on. So one log determines each
unit's final state: :func:`replay` is the model both the worker and the checker use. A lease
dropped (explicitly or by disconnecting) fails its unit *later*, when the server notices; to keep
the model exact the unit is then retired: never mutated again (a fresh name replaces it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from coordinator._lease import HOLDER_GONE

#: Units the harness sets up before the churn, with (status, reason); never mutated by workers.
SHARED: Final = {
    "shared.done": ("completed", ""),
    "shared.started": ("started", ""),
    "shared.pending": ("pending", ""),
    "shared.failed": ("failed", "setup failed"),
}
#: Named as a dependency, never registered by anyone.
SHARED_GHOST: Final = "shared.ghost"
#: Active units per worker.
POOL: Final = 6
#: Any single call other than a bounded ready() longer than this is a hang.
CALL_LIMIT: Final = 20.0

#: Errors that answer a mutation and change nothing.
REFUSALS: Final = {"CycleError", "NotReady", "AlreadyInStatus", "UnitNotFound"}
MUTATIONS: Final = ("want", "start", "complete", "fail", "hold", "lease_complete", "lease_fail")


# --- the model: what a unit's state is after a worker's acknowledged calls --------------------


@dataclass
class UnitState:
    status: str = ""  # a Status value: "" is not registered
    reason: str = ""
    edges: dict[str, str] = field(default_factory=dict)  # dependency -> required status value

    def key(self) -> tuple[str, str, frozenset[tuple[str, str]]]:
        return (self.status, self.reason, frozenset(self.edges.items()))


@dataclass
class Model:
    units: dict[str, UnitState] = field(default_factory=dict)
    leases: dict[str, str] = field(default_factory=dict)  # unreleased lease key -> unit
    #: unit -> the lease whose hold is its current status (any status change ends a hold)
    holders: dict[str, str] = field(default_factory=dict)

    def unit(self, name: str) -> UnitState:
        return self.units.setdefault(name, UnitState())

    def apply(self, call: dict[str, Any], lease: str | None) -> None:
        """An acknowledged mutation (``lease``: the key of a lease that ``hold`` returned)."""
        kind = call["call"]
        unit = self.unit(call["unit"])
        if kind == "want":
            if unit.status == "":
                unit.status = "pending"
            for dependency in call["deps"]:
                unit.edges[dependency] = call["requires"]
            return
        if kind in ("lease_complete", "lease_fail"):
            self.leases.pop(call["lease"], None)
        self.holders.pop(call["unit"], None)
        if kind == "hold":
            assert lease is not None
            self.leases[lease] = call["unit"]
            self.holders[call["unit"]] = lease
        status = {"start": "started", "hold": "started", "complete": "completed",
                  "lease_complete": "completed", "fail": "failed", "lease_fail": "failed"}[kind]
        unit.status, unit.reason = status, call.get("reason", "") if status == "failed" else ""

    def drop(self, keys: list[str]) -> None:
        """Leases released without complete/fail: the server fails a unit that its lease
        still holds (not one re-run or otherwise changed since)."""
        for key in keys:
            name = self.leases.pop(key, None)
            if name is not None and self.holders.get(name) == key:
                del self.holders[name]
                self.units[name].status, self.units[name].reason = "failed", HOLDER_GONE


def replay(
    records: list[dict[str, Any]], in_flight_applied: bool
) -> tuple[Model, dict[str, Any] | None, list[str]]:
    """The model after a worker's log, the call it died in (``begin`` without an end) if any,
    and the leases it held at the end. ``in_flight_applied`` decides whether that call, and every
    call given up on (``abandoned``), took effect: each is the last call on its unit, so the two
    replays give every unit's two possible outcomes. At the end every lease still held is
    dropped: the process has gone."""
    model = Model()
    pending: dict[int, dict[str, Any]] = {}
    for record in records:
        op = record["op"]
        if op == "begin":
            pending[record["seq"]] = record
        elif op in ("ack", "refused", "done"):
            call = pending.pop(record["seq"])
            if op == "ack":
                model.apply(call, record.get("lease"))
        elif op == "abandoned":  # the unit is retired: no later call depends on the outcome
            call = pending.pop(record["seq"])
            if in_flight_applied:
                model.apply(call, f"abandoned:{record['seq']}")
        elif op == "drop":
            model.drop(record["leases"])
        elif op == "disconnect":
            model.drop(list(model.leases))
    in_flight = next(iter(pending.values()), None)
    if in_flight is not None and in_flight_applied and in_flight["call"] in MUTATIONS:
        model.apply(in_flight, "in-flight")
    held = list(model.leases)
    model.drop(held)
    return model, in_flight, held


# --- the worker -------------------------------------------------------------------------------


class Stop(Exception):
    """Something this worker cannot go on from (logged as an anomaly first)."""


class Hangup(Exception):
    """Close this connection now, with a call still in flight."""


class ServerGone(Exception):
    """The connection dropped under a call (``--server-may-die``): logged, stop here."""


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.wid: str = args.worker
        self.rng = random.Random(args.seed)
        self.log_file = open(args.log, "a", encoding="utf-8")
        self.model = Model()
        self.active = [f"{self.wid}.u{k}" for k in range(POOL)]
        self.own = list(self.active)  # every own name, retired ones too
        self.next_k = POOL
        self.seq = 0
        self.conn = 0
        self.held: dict[str, int] = {}  # lease key -> the AsyncioClient's lease id
        self.parked: list[asyncio.Task[Any]] = []

    def log(self, **record: Any) -> None:
        record["t"] = time.monotonic()
        self.log_file.write(json.dumps(record) + "\n")
        self.log_file.flush()

    def anomaly(self, detail: str) -> None:
        self.log(op="anomaly", detail=detail)

    def lost(self, seq: int, exc: Exception) -> None:
        """Call ``seq`` failed with ``exc``: with ``--server-may-die`` a dropped connection is
        logged ``lost`` (the call's ``begin`` stays open) and ends the worker (ServerGone)."""
        from coordinator import CoordinatorClosed

        if self.args.server_may_die and isinstance(exc, CoordinatorClosed):
            self.log(op="lost", seq=seq, detail=str(exc)[:200])
            raise ServerGone from None

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> int:
        from coordinator.rpc._client import AsyncioClient

        from coordinator import CoordinatorUnreachable

        for self.conn in range(self.args.connections):
            if time.monotonic() >= self.args.deadline:
                break
            socket = self.rng.choice([self.args.socket, *self.args.also])
            try:
                core = await asyncio.wait_for(
                    AsyncioClient.connect(Path(socket), timeout=10), CALL_LIMIT
                )
            except CoordinatorUnreachable as exc:
                if not self.args.server_may_die:
                    raise
                self.log(op="unreachable", detail=str(exc)[:200])
                return 0
            self.log(op="connect", conn=self.conn, socket=socket)
            try:
                for _ in range(self.rng.randint(5, 40)):
                    if time.monotonic() >= self.args.deadline:
                        break
                    await self.step(core)
            except Hangup:
                pass
            except ServerGone:
                return 0
            except Stop:
                return 3
            finally:
                await self.disconnect(core)
        self.log(op="bye")
        return 0

    async def disconnect(self, core: Any) -> None:
        """Close the connection as is: parked ready() calls and held leases included."""
        core.close()
        for task in self.parked:
            task.cancel()
        await asyncio.gather(*self.parked, return_exceptions=True)
        self.parked.clear()
        keys = list(self.held)
        self.held.clear()
        self.log(op="disconnect", conn=self.conn, leases=keys)
        self.retire({self.model.leases[k] for k in keys})
        self.model.drop(keys)

    def retire(self, names: set[str]) -> None:
        """Never mutate these units again: a dropped lease fails its unit when the server gets to
        it, and a call given up on may land at any time; a fresh name takes each one's place."""
        for name in names:
            if name in self.active:
                self.active[self.active.index(name)] = f"{self.wid}.u{self.next_k}"
                self.own.append(f"{self.wid}.u{self.next_k}")
                self.next_k += 1

    # --- one step -----------------------------------------------------------------------------

    def pick_name(self) -> str:
        """Any name this worker knows: its own (retired too), shared, or another worker's (which
        may or may not exist yet)."""
        roll = self.rng.random()
        if roll < 0.6:
            return self.rng.choice(self.own)
        if roll < 0.8:
            return self.rng.choice([*SHARED, SHARED_GHOST])
        slot, gen, k = (self.rng.randrange(self.args.slots), self.rng.randrange(self.args.foreign_gens),
                        self.rng.randrange(POOL))
        return f"w{slot}.{gen}.u{k}"

    async def step(self, core: Any) -> None:
        rng = self.rng
        choices = ["want", "start", "complete", "fail", "hold", "ready", "info", "park", "pause",
                   "abandon"]
        weights = [25, 14, 14, 7, 8, 12, 10, 3, 4, self.args.abandon]
        # leases on a retired unit stay untouched until the disconnect drops them
        usable = [key for key in self.held if self.model.leases[key] in self.active]
        if usable:
            choices += ["lease_complete", "lease_fail", "drop"]
            weights += [8, 3, 3]
        kind = rng.choices(choices, weights)[0]
        unit = rng.choice(self.active)
        if kind == "want":
            deps = sorted({self.pick_name() for _ in range(rng.randint(1, 3))})
            requires = "started" if rng.random() < 0.3 else "completed"
            await self.mutate(core, dict(call="want", unit=unit, deps=deps, requires=requires))
        elif kind in ("start", "complete", "hold"):
            await self.mutate(core, dict(call=kind, unit=unit))
        elif kind == "fail":
            await self.mutate(core, dict(call="fail", unit=unit, reason=f"{self.wid} fail {self.seq}"))
        elif kind in ("lease_complete", "lease_fail"):
            key = rng.choice(usable)
            call = dict(call=kind, unit=self.model.leases[key], lease=key)
            if kind == "lease_fail":
                call["reason"] = f"{self.wid} lease fail {self.seq}"
            await self.mutate(core, call)
        elif kind == "drop":
            name = self.model.leases[rng.choice(usable)]
            keys = [k for k in self.held if self.model.leases[k] == name]
            for key in keys:
                core.lease_drop(self.held.pop(key))
            self.log(op="drop", unit=name, leases=keys)
            self.retire({name})
            self.model.drop(keys)
        elif kind == "ready":
            target = unit if rng.random() < 0.7 else self.pick_name()
            await self.wait_ready(core, target, rng.uniform(0.01, 0.25))
        elif kind == "info":
            await self.read_info(core, unit if rng.random() < 0.7 else self.pick_name())
        elif kind == "abandon":  # a call given up: cancelled, or its connection closed
            what = rng.choice(["hold", "hold", "hold", "start", "complete", "fail", "want"])
            call: dict[str, Any] = dict(call=what, unit=unit)
            if what == "fail":
                call["reason"] = f"{self.wid} fail {self.seq}"
            elif what == "want":
                call.update(deps=[self.pick_name()], requires="completed")
            await self.mutate(core, call, abandon=rng.choice(["cancel", "hangup"]))
        elif kind == "park":  # left parked: the disconnect (or a SIGKILL) must clean it up
            name = self.pick_name()
            self.log(op="park", unit=name)
            self.parked.append(asyncio.ensure_future(core.ready(name)))
        else:
            await asyncio.sleep(rng.uniform(0, 0.02))

    async def bounded(self, seq: int, awaitable: Any, limit: float = CALL_LIMIT) -> Any:
        try:
            return await asyncio.wait_for(awaitable, limit)
        except asyncio.TimeoutError:
            if limit < CALL_LIMIT:
                raise
            self.anomaly(f"call {seq} not answered within {CALL_LIMIT} s")
            raise Stop from None

    async def mutate(self, core: Any, call: dict[str, Any], abandon: str | None = None) -> None:
        """Make the call and log it. ``abandon`` (``cancel``/``hangup``): give it up within 3 ms
        unless answered by then — the server may or may not apply it, so the unit is retired."""
        from coordinator._errors import StoreUnavailable, UnitsyncError

        seq, self.seq = self.seq, self.seq + 1
        self.log(op="begin", seq=seq, **call)
        kind, name = call["call"], call["unit"]
        before = self.model.unit(name).status
        pending = asyncio.ensure_future(self.invoke(core, call))
        if abandon:
            await asyncio.wait({pending}, timeout=self.rng.uniform(0, 0.003))
            if not pending.done():
                self.log(op="abandoned", seq=seq, how=abandon)
                self.retire({name})
                self.parked.append(pending)  # cancelled after the disconnect
                if abandon == "hangup":
                    raise Hangup
                pending.cancel()
                return
        try:
            result = await self.bounded(seq, pending)
        except StoreUnavailable as exc:
            if not self.args.store_may_fail:
                self.anomaly(f"{kind} {name}: {type(exc).__name__}: {exc}")
                raise Stop from None
            self.unavailable(seq, name, exc)
            return
        except UnitsyncError as exc:
            self.lost(seq, exc)
            error = type(exc).__name__
            if error not in REFUSALS:  # CoordinatorClosed, ...: nobody knows if it took effect
                self.anomaly(f"{kind} {name}: {error}: {exc}")
                raise Stop from None
            self.log(op="refused", seq=seq, error=error, detail=str(exc)[:300])
            self.check_refusal(call, before, exc)
            return
        lease = None
        if kind == "hold":
            lease = f"{self.conn}:{result}"
            self.held[lease] = result
        if kind in ("lease_complete", "lease_fail"):
            self.held.pop(call["lease"], None)
        self.log(op="ack", seq=seq, **({"lease": lease} if lease else {}))
        expected_refusal = {
            "start": "AlreadyInStatus" if before == "started" else None,
            "hold": "AlreadyInStatus" if before == "started" else None,
            "complete": {"": "UnitNotFound", "completed": "AlreadyInStatus"}.get(before),
            "lease_complete": "AlreadyInStatus" if before == "completed" else None,
            "fail": {"": "UnitNotFound", "failed": "AlreadyInStatus"}.get(before),
            "lease_fail": "AlreadyInStatus" if before == "failed" else None,
        }.get(kind)
        if expected_refusal:
            self.anomaly(f"{kind} {name} from {before or 'not registered'} acknowledged; expected {expected_refusal}")
        self.model.apply(call, lease)

    def unavailable(self, seq: int, name: str, exc: Any) -> None:
        """``--store-may-fail``: the shared store did not confirm mutation ``seq``
        (``unitsync.unavailable``). ``applied == "no"``: it was not applied (logged ``refused``:
        the check holds the server to it); ``"unknown"``: it may or may not have been (logged
        ``abandoned``: both outcomes accepted, the unit retired)."""
        applied = getattr(exc, "applied", "unknown")
        self.log(op="unavailable", seq=seq, applied=applied, detail=str(exc)[:300])
        if applied == "no":
            self.log(op="refused", seq=seq, error="StoreUnavailable", detail=str(exc)[:300])
        else:
            self.log(op="abandoned", seq=seq, how="unavailable")
            self.retire({name})

    async def invoke(self, core: Any, call: dict[str, Any]) -> Any:
        from coordinator import Status

        kind, name = call["call"], call["unit"]
        if kind == "want":
            return await core.want(name, call["deps"], Status(call["requires"]))
        if kind == "fail":
            return await core.fail(name, call["reason"])
        if kind == "lease_complete":
            return await core.lease_complete(self.held[call["lease"]])
        if kind == "lease_fail":
            return await core.lease_fail(self.held[call["lease"]], call["reason"])
        return await getattr(core, kind)(name)

    def check_refusal(self, call: dict[str, Any], before: str, exc: Exception) -> None:
        from coordinator import CycleError, NotReady

        kind, name, error = call["call"], call["unit"], type(exc).__name__
        if kind == "want":
            if not isinstance(exc, CycleError):
                self.anomaly(f"want {name} {call['deps']} refused with {error}: {exc}")
            elif exc.path[0] != exc.path[-1] or name not in exc.path:
                self.anomaly(f"want {name} {call['deps']}: malformed cycle {exc.path}")
            return
        allowed = {
            "start": {"started": "AlreadyInStatus"}.get(before, "NotReady"),
            "hold": {"started": "AlreadyInStatus"}.get(before, "NotReady"),
            "complete": {"": "UnitNotFound", "completed": "AlreadyInStatus"}.get(before),
            "lease_complete": "AlreadyInStatus" if before == "completed" else None,
            "fail": {"": "UnitNotFound", "failed": "AlreadyInStatus"}.get(before),
            "lease_fail": "AlreadyInStatus" if before == "failed" else None,
        }[kind]
        if error != allowed:
            self.anomaly(f"{kind} {name} from {before or 'not registered'} refused with {error} "
                         f"(expected {allowed or 'success'}): {exc}")
        if isinstance(exc, NotReady) and not set(exc.unmet) <= set(self.model.unit(name).edges):
            self.anomaly(f"{kind} {name}: NotReady names {exc.unmet}, not among its dependencies")
        if isinstance(exc, NotReady) and not exc.unmet:
            self.anomaly(f"{kind} {name}: NotReady without unmet dependencies")

    async def wait_ready(self, core: Any, name: str, timeout: float) -> None:
        from coordinator import DependencyFailed, UnitsyncError

        seq, self.seq = self.seq, self.seq + 1
        self.log(op="begin", seq=seq, call="ready", unit=name)
        try:
            info = await self.bounded(seq, core.ready(name), timeout)
        except asyncio.TimeoutError:  # cancelled: the server must drop the waiter
            self.log(op="done", seq=seq, outcome="timeout")
            return
        except DependencyFailed as exc:
            self.log(op="done", seq=seq, outcome="failed")
            if exc.path[:1] != (name,):
                self.anomaly(f"ready {name}: DependencyFailed path {exc.path}")
            if name in self.active and self.model.unit(name).status in ("started", "completed"):
                self.anomaly(f"ready {name} ({self.model.unit(name).status}): blocked by {exc.unit}")
            return
        except UnitsyncError as exc:
            self.lost(seq, exc)
            if self.args.store_may_fail and exc.code == "unitsync.unavailable":
                self.log(op="done", seq=seq, outcome="unavailable")
                return
            self.anomaly(f"ready {name}: {type(exc).__name__}: {exc}")
            raise Stop from None
        self.log(op="done", seq=seq, outcome="ready")
        if not info.ready:
            self.anomaly(f"ready {name} returned info with ready=False")
        self.compare(name, info)

    async def read_info(self, core: Any, name: str) -> None:
        from coordinator import UnitsyncError

        seq, self.seq = self.seq, self.seq + 1
        self.log(op="begin", seq=seq, call="info", unit=name)
        try:
            info = await self.bounded(seq, core.info(name))
        except UnitsyncError as exc:
            self.lost(seq, exc)
            if self.args.store_may_fail and exc.code == "unitsync.unavailable":
                self.log(op="done", seq=seq, outcome="unavailable")
                return
            self.anomaly(f"info {name}: {type(exc).__name__}: {exc}")
            raise Stop from None
        self.log(op="done", seq=seq, outcome=info.status.value)
        self.compare(name, info)

    def compare(self, name: str, info: Any) -> None:
        """Read-your-writes: an active own unit is as this worker left it; a shared one as set up."""
        if name in self.active:
            mine = self.model.unit(name)
            seen = UnitState(info.status.value, info.reason,
                             {d.depends_on: d.required.value for d in info.dependencies})
            if seen.key() != mine.key():
                self.anomaly(f"{name}: server has {seen}, this worker's calls give {mine}")
        elif name in SHARED and (info.status.value, info.reason) != SHARED[name]:
            self.anomaly(f"{name}: server has {info.status.value} {info.reason!r}, set up as {SHARED[name]}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress._churn_client")
    parser.add_argument("socket")
    parser.add_argument("--worker", required=True, help="id; its units are <id>.u<k>")
    parser.add_argument("--log", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--deadline", type=float, required=True, help="time.monotonic() to stop at")
    parser.add_argument("--slots", type=int, default=1, help="workers w0.. w<slots-1> (foreign names)")
    parser.add_argument("--foreign-gens", type=int, default=4)
    parser.add_argument("--abandon", type=int, default=20, help="weight of calls given up mid-call")
    parser.add_argument("--server-may-die", action="store_true",
                        help="a dropped connection ends the worker (logged lost), not an anomaly")
    parser.add_argument("--also", action="append", default=[], metavar="SOCKET",
                        help="another coordinator of the same workspace (serve --store): each "
                             "connection goes to one of them at random")
    parser.add_argument("--store-may-fail", action="store_true",
                        help="a mutation answered unitsync.unavailable is logged (refused if "
                             "it was not applied, abandoned if unknown), not an anomaly")
    args = parser.parse_args(argv)

    import capnp

    worker = Worker(args)
    worker.log(op="hello", worker=worker.wid)
    print("hello", flush=True)
    return int(asyncio.run(capnp.run(worker.run())))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A client worker process for ``stress wakeup``: many connections, one asyncio + KJ loop, no Trio.

``python -m stress._wakeup_client waiters --socket PATH --first A --count N [--rounds R]``
    opens N connections and parks ``ready(w{A+i})`` on each; then, for rounds 1..R-1,
    ``ready(w{A+i}.{r})`` on the same connections, each round once a line comes on stdin (the
    driver's go, sent once the round before is measured: the next round's calls must not land
    in this round's fan-out). The waiters are lean — these processes share
    the machine with the server they measure: plain pycapnp calls on the server's own lean
    stream (``LeanStream``: reads paused lazily, each message sent at once), nothing of the
    answer read but its ``ready``, the garbage collector's generations frozen once parked.
``python -m stress._wakeup_client pollers --socket PATH --first A --count M [--interval 1.0]``
    opens M connections (one :class:`AsyncioClient` each, as the CLI); each polls
    ``info(p{A+i})`` every ``--interval`` seconds, from a random phase in ``[0, interval)``,
    until it answers ``ready``, as coder's CLI does. One round.

Protocol on stdout, per round (the driver reads it; anything else goes to stderr):

1. ``parked`` — once every connection is open and, for waiters, every ``ready`` is known to be
   parked server-side: after sending ``ready`` we send ``info`` on the same unit from the same
   connection and await it; Cap'n Proto E-order delivers ``ready`` first. A ``ready`` that
   resolved before then is reported as an error (the dependency was not complete yet).
2. one JSON object: ``{"role", "round", "first", "count", "stamps", "errors"}`` —
   ``stamps[i]``
   is the ``time.monotonic()`` at which unit ``first + i``'s ``ready()`` resolved (waiters) or
   its poll saw ``ready == True`` (pollers), ``null`` if it did not within ``--timeout`` seconds
   of ``parked`` or failed; ``errors`` lists ``"unit: error"`` strings. CLOCK_MONOTONIC is
   system-wide on Linux, so the driver compares these stamps with its own.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import resource
import sys
import time
from pathlib import Path

import capnp

from coordinator.rpc._client import AsyncioClient
from coordinator.rpc._convert import REVISION
from coordinator.rpc._frame_deadline import open_stream
from coordinator.rpc._schema import schema
from coordinator.rpc._socket import connect_socket

S = schema()

#: Connections opened concurrently while parking (the connect itself is a short blocking call).
CONNECT_CONCURRENCY = 32


def ensure_fd_limit(needed: int, who: str) -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit if ``needed`` fds would not fit (the
    driver's server child inherits it); say so on stderr, and warn if even that is too few."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(f"{who}: raised the fd soft limit from {soft} to {hard} (need {needed})",
              file=sys.stderr, flush=True)
        if hard != resource.RLIM_INFINITY and hard < needed:
            print(f"{who}: hard fd limit {hard} < {needed}: connections will fail",
                  file=sys.stderr, flush=True)


async def connect_all(path: Path, count: int) -> list[AsyncioClient]:
    """``count`` connections, ``CONNECT_CONCURRENCY`` at a time. (A full listen backlog is
    retried by ``connect_socket`` itself, up to the connect timeout.)"""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> AsyncioClient:
        async with gate:
            return await AsyncioClient.connect(path, timeout=30.0)

    return list(await asyncio.gather(*(one() for _ in range(count))))


class Lean:
    """One waiter's connection: the bootstrap ``Coordinator`` capability, raw pycapnp."""

    __slots__ = ("stream", "client", "coord")

    def __init__(self, stream: object, client: object, coord: object) -> None:
        self.stream, self.client, self.coord = stream, client, coord

    @classmethod
    async def connect(cls, path: Path) -> Lean:
        stream = await open_stream(connect_socket(path, timeout=30.0), frame_timeout=0)
        client = capnp.TwoPartyClient(stream)
        coord = client.bootstrap().cast_as(S.Coordinator)
        await coord.hello(REVISION)  # as AsyncioClient does: the connection speaks our revision
        return cls(stream, client, coord)

    def close(self) -> None:
        self.client.close()  # type: ignore[attr-defined]
        self.stream.close()  # type: ignore[attr-defined]


async def connect_lean(path: Path, count: int) -> list[Lean]:
    """``count`` lean connections, ``CONNECT_CONCURRENCY`` at a time."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> Lean:
        async with gate:
            return await Lean.connect(path)

    return list(await asyncio.gather(*(one() for _ in range(count))))


def unit_name(prefix: str, index: int, round_: int) -> str:
    """``w3`` in round 0, ``w3.2`` in round 2 (each round has its own units and dependency)."""
    return f"{prefix}{index}" if round_ == 0 else f"{prefix}{index}.{round_}"


def report(role: str, round_: int, first: int, stamps: list[float | None], errors: list[str]) -> None:
    print(json.dumps({"role": role, "round": round_, "first": first, "count": len(stamps),
                      "stamps": stamps, "errors": errors}),
          flush=True)


async def wake_once(
    connections: list[Lean], names: list[str], timeout: float
) -> tuple[list[float | None], list[str]]:
    """Park ``ready(names[i])`` on ``connections[i]``, print ``parked``, wait for every wake-up."""
    stamps: list[float | None] = [None] * len(names)
    errors: list[str] = []

    async def wait(i: int, ready: object) -> None:
        try:
            result = await ready  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - reported, not raised: one waiter, one line
            errors.append(f"{names[i]}: {type(exc).__name__}: {exc}")
            return
        stamp = time.monotonic()
        if result.info.ready:
            stamps[i] = stamp
        else:
            errors.append(f"{names[i]}: ready() answered ready=False")

    gate = asyncio.Semaphore(CONNECT_CONCURRENCY * 4)

    async def park(i: int) -> asyncio.Task[None]:
        async with gate:
            unit = connections[i].coord.unit(names[i]).unit  # pipelined
            task = asyncio.create_task(wait(i, unit.ready()))  # the call is sent here
            await unit.info()  # same capability, same connection, sent after: E-order
            if task.done():
                errors.append(f"{names[i]}: ready() resolved before the dependency completed")
            return task

    tasks = await asyncio.gather(*(park(i) for i in range(len(names))))
    gc.freeze()  # what parking made stays: the wake-up's collections need not look at it
    print("parked", flush=True)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    except TimeoutError:
        errors.append(f"timed out after {timeout} s with "
                      f"{sum(s is None for s in stamps)} waiters not woken")
    gc.unfreeze()
    return stamps, errors


async def waiters(path: Path, first: int, count: int, rounds: int, timeout: float) -> None:
    indices = range(first, first + count)
    connections = await connect_lean(path, count)
    try:
        for round_ in range(rounds):
            if round_ and not sys.stdin.readline():
                raise SystemExit(f"wakeup client: stdin ended before round {round_}")
            names = [unit_name("w", i, round_) for i in indices]
            stamps, errors = await wake_once(connections, names, timeout)
            report("waiters", round_, first, stamps, errors)
    finally:
        for connection in connections:
            connection.close()


async def pollers(path: Path, first: int, count: int, timeout: float, interval: float) -> None:
    names = [unit_name("p", i, 0) for i in range(first, first + count)]
    stamps: list[float | None] = [None] * len(names)
    errors: list[str] = []
    cores = await connect_all(path, count)
    for core, name in zip(cores, names):
        await core.info(name)  # warm: the connection and the pipelined Unit capability
    print("parked", flush=True)

    async def poll(i: int) -> None:
        tick = time.monotonic() + random.random() * interval
        while True:
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            try:
                info = await cores[i].info(names[i])
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                errors.append(f"{names[i]}: {type(exc).__name__}: {exc}")
                return
            if info.ready:
                stamps[i] = time.monotonic()
                return
            tick += interval
            while tick < time.monotonic():  # a late poll does not bunch up the next ones
                tick += interval

    try:
        await asyncio.wait_for(asyncio.gather(*(poll(i) for i in range(len(names)))), timeout)
    except TimeoutError:
        errors.append(f"timed out after {timeout} s with "
                      f"{sum(s is None for s in stamps)} pollers not done")
    for core in cores:
        core.close()
    report("pollers", 0, first, stamps, errors)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress._wakeup_client")
    parser.add_argument("role", choices=["waiters", "pollers"])
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--first", type=int, default=0, help="index of the first unit")
    parser.add_argument("--count", type=int, required=True, help="connections (= units)")
    parser.add_argument("--interval", type=float, default=1.0, help="pollers: seconds between polls")
    parser.add_argument("--rounds", type=int, default=1, help="waiters: rounds on the same connections")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds after 'parked' to wait for every wake-up")
    args = parser.parse_args(argv)
    ensure_fd_limit(args.count + 64, "wakeup client")
    if args.role == "waiters":
        body = waiters(args.socket, args.first, args.count, args.rounds, args.timeout)
    else:
        body = pollers(args.socket, args.first, args.count, args.timeout, args.interval)
    asyncio.run(capnp.run(body))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

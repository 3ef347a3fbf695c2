"""Calls per second over RPC: our server against a plain pycapnp asyncio server, same run.

Both servers run as separate processes; one client process (this one, raw pycapnp) makes
sequential calls, then 16 concurrent ones, for ``--seconds`` each, on a registered unit.

``ping`` is answered on the KJ thread without entering Trio. ``info`` is answered on the KJ
thread too when the unit's actor has published its current info (nothing changed since the last
read — the case a polling client hits), else through the bridge and the actor. ``ready()`` of a
ready unit always crosses the bridge into the unit actor and back: ``bridge_*`` is that cost,
compared with the baseline's ``info`` (a dict lookup). ``register`` raises on the baseline (it
implements only ping and info), so only our server gets one.

Mutations, ours only, against the same baseline (the server runs ``--no-state``, so they measure
the coordinator, not the disk; reads never touch the journal): ``want_*`` — one new edge per
call (``want`` of a unit on a dependency not named before), ``complete_*`` — ``start`` and
``complete`` of one unit alternating (a re-run each time), each call counted.

Our server runs as ``serve`` does by default, its threads kept on one CPU (``--cpu auto``, see
``cli/_affinity.py``); ``--serve-cpu all`` measures it left to the scheduler. The baseline, one
thread, is left to the scheduler either way (kept to one CPU it measured the same).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import capnp

from coordinator.rpc._schema import schema

S = schema()

#: Distinguishes the units one server sees across the alternating runs.
_RUNS = itertools.count()


def start(argv: list[str], env: dict[str, str], ready: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stream = process.stdout if ready == "ready" else process.stderr
    assert stream is not None
    line = stream.readline()
    if ready not in line:
        process.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return process


def stop(process: subprocess.Popen[Any], grace: float = 20.0) -> None:
    """SIGTERM ``process`` and wait ``grace`` seconds for it, then SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


async def rate(call: Any, seconds: float, concurrency: int) -> float:
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - t0)


async def measure(path: str, seconds: float, *, register: bool) -> dict[str, float]:
    stream = await capnp.AsyncIoStream.create_unix_connection(path)
    client = capnp.TwoPartyClient(stream)
    coord = client.bootstrap().cast_as(S.Coordinator)
    unit = coord.unit("bench").unit
    if register:  # a registered, pending unit, as the baseline's dict answers
        try:
            await unit.register()
        except capnp.KjException:
            pass  # registered by an earlier run
    await unit.info()  # warm up
    result = {
        "ping": await rate(lambda: coord.ping(), seconds, 1),
        "info": await rate(lambda: unit.info(), seconds, 1),
        "ping_16": await rate(lambda: coord.ping(), seconds, 16),
        "info_16": await rate(lambda: unit.info(), seconds, 16),
    }
    if register:  # ours only: ready() of a ready unit always goes through the bridge and actor
        result["ready"] = await rate(lambda: unit.ready(), seconds, 1)
        run = next(_RUNS)
        wanting = coord.unit(f"want{run}").unit
        dependencies = (f"dep{run}.{i}" for i in itertools.count())
        result["want"] = await rate(
            lambda: wanting.want([next(dependencies)], "completed"), seconds, 1
        )
        rerun = coord.unit(f"rerun{run}").unit
        calls = itertools.cycle([rerun.start, rerun.complete])
        result["complete"] = await rate(lambda: next(calls)(), seconds, 1)
    client.close()
    stream.close()
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress rpc")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--quick", action="store_true", help="0.2 s per measurement (smoke test)")
    parser.add_argument("--serve-cpu", default="auto", metavar="CPU",
                        help="our server's `serve --cpu` (auto, all or a number; default auto, "
                             "serve's own): `all` measures it left to the scheduler")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    seconds = 0.2 if args.quick else args.seconds
    workdir = tempfile.mkdtemp(prefix="us-bench-", dir="/tmp")
    ours_path, base_path = os.path.join(workdir, "ours.sock"), os.path.join(workdir, "base.sock")
    env = {**os.environ, "UNITSYNC_SOCKET": ours_path}
    ours = start([sys.executable, "-m", "cli", "serve", "--no-state", "--cpu", args.serve_cpu],
                 env, "serving on")
    base = start([sys.executable, "-m", "stress.baseline_server", base_path], env, "ready")
    try:
        # alternate, so that drift in machine load hits both alike
        runs = {"ours": [], "base": []}  # type: dict[str, list[dict[str, float]]]
        for _ in range(1 if args.quick else 3):
            runs["ours"].append(asyncio.run(capnp.run(measure(ours_path, seconds, register=True))))
            runs["base"].append(asyncio.run(capnp.run(measure(base_path, seconds, register=False))))
    finally:
        for process in (ours, base):
            process.terminate()
            process.wait(timeout=10)

    def median(side: str, key: str) -> float:
        values = sorted(run[key] for run in runs[side])
        return values[len(values) // 2]

    result = {
        "ours_calls_per_s": round(median("ours", "info")),
        "baseline_calls_per_s": round(median("base", "info")),
        "ping_ours_calls_per_s": round(median("ours", "ping")),
        "ping_baseline_calls_per_s": round(median("base", "ping")),
        "concurrent16_ours_calls_per_s": round(median("ours", "info_16")),
        "concurrent16_baseline_calls_per_s": round(median("base", "info_16")),
        "ping16_ours_calls_per_s": round(median("ours", "ping_16")),
        "ping16_baseline_calls_per_s": round(median("base", "ping_16")),
    }
    result["bridge_ours_calls_per_s"] = round(median("ours", "ready"))
    result["want_ours_calls_per_s"] = round(median("ours", "want"))
    result["complete_ours_calls_per_s"] = round(median("ours", "complete"))
    result["info_ratio"] = round(result["ours_calls_per_s"] / result["baseline_calls_per_s"], 3)
    for key in ("bridge", "want", "complete"):
        result[f"{key}_ratio"] = round(
            result[f"{key}_ours_calls_per_s"] / result["baseline_calls_per_s"], 3
        )
    result["serve_cpu"] = args.serve_cpu
    result["ping_ratio"] = round(result["ping_ours_calls_per_s"] / result["ping_baseline_calls_per_s"], 3)
    if not args.json:
        for key, value in result.items():
            print(f"{key:40} {value}")
    print(json.dumps(result))
    return 0

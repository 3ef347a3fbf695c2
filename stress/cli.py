"""Whole-process wall time of short ``unitsync`` invocations, against baselines in the same run.

Five commands, each a fresh process of this interpreter: ``python -c pass`` (interpreter start,
the floor), ``python -c "import capnp"`` (the floor for any pycapnp client), ``unitsync --help``
(must not import capnp), ``unitsync ping`` and ``unitsync complete xK`` (a distinct unit each
round, registered beforehand, so every call succeeds). They run round-robin, N rounds, each round
starting one command later, so drift in machine load hits all alike. One untimed warm-up round
first. The coordinator is a ``unitsync serve`` process on a fresh socket, stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._stats import percentile
from .rpc import start

#: ARCHITECTURE §8: ``unitsync complete x``, whole process, median.
COMPLETE_GOAL_MS = 150.0


def unitsync_argv() -> list[str]:
    """The console script next to this interpreter, else ``python -m cli``."""
    script = Path(sys.executable).with_name("unitsync")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def commands(unitsync: list[str]) -> dict[str, list[str]]:
    """Label -> argv; ``complete`` gets its unit name appended per call."""
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import capnp"': [sys.executable, "-c", "import capnp"],
        "unitsync --help": [*unitsync, "--help"],
        "unitsync ping": [*unitsync, "ping"],
        "unitsync complete xK": [*unitsync, "complete"],
    }


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Run ``argv`` to completion; its wall time in ms. Raises if it does not exit 0."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')!r}"
        )
    return elapsed * 1e3


def imports_capnp(argv: list[str], env: dict[str, str]) -> bool:
    """Whether running ``argv`` imports capnp (read from ``PYTHONPROFILEIMPORTTIME``'s report)."""
    done = subprocess.run(
        argv, env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True,
    )
    # lines look like "import time:   1234 |   5678 |   capnp.lib.capnp"
    modules = (line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines())
    return any(name == "capnp" or name.startswith("capnp.") for name in modules)


def register(path: str, names: list[str]) -> None:
    """Register ``names`` with the coordinator at ``path`` through the library."""
    import trio

    from coordinator import connect

    async def main() -> None:
        async with connect(path) as coord:
            for name in names:
                await coord.unit(name).register()

    trio.run(main)


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    return percentile(sorted(values), 0.9)


def run(rounds: int) -> tuple[dict[str, list[float]], bool]:
    """Per-command wall times (ms) over ``rounds`` rounds, and whether ``--help`` imports capnp."""
    workdir = tempfile.mkdtemp(prefix="us-cli-", dir="/tmp")  # short: a socket path is ≤ 107 bytes
    path = os.path.join(workdir, "unitsync.sock")
    env = {**os.environ, "UNITSYNC_SOCKET": path}
    unitsync = unitsync_argv()
    argvs = commands(unitsync)
    labels = list(argvs)
    times: dict[str, list[float]] = {label: [] for label in labels}
    server = start([*unitsync, "serve", "--socket", path], env, f" serving on {path} (state: ")
    try:
        register(path, ["warmup"] + [f"x{k}" for k in range(rounds)])
        for label in labels:  # warm-up: page cache, .pyc files; fails early if a command does
            timed(argvs[label] + (["warmup"] if label.startswith("unitsync complete") else []), env)
        for k in range(rounds):
            for i in range(len(labels)):
                label = labels[(k + i) % len(labels)]
                extra = [f"x{k}"] if label.startswith("unitsync complete") else []
                times[label].append(timed(argvs[label] + extra, env))
        help_imports_capnp = imports_capnp(argvs["unitsync --help"], env)
    finally:
        server.terminate()  # SIGTERM
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    return times, help_imports_capnp


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress cli")
    parser.add_argument("--runs", type=int, default=30, help="rounds over all commands")
    parser.add_argument("--quick", action="store_true", help="3 rounds (smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.runs
    if rounds < 1:
        parser.error("--runs must be at least 1")
    times, help_imports_capnp = run(rounds)

    medians = {label: statistics.median(values) for label, values in times.items()}
    floor = medians["python -c pass"]
    complete = medians["unitsync complete xK"]
    capnp_floor = medians['python -c "import capnp"']
    result = {
        "runs": rounds,
        "python_pass_ms": round(floor, 1),
        "import_capnp_ms": round(capnp_floor, 1),
        "help_ms": round(medians["unitsync --help"], 1),
        "ping_ms": round(medians["unitsync ping"], 1),
        "complete_ms": round(complete, 1),
        "complete_p90_ms": round(p90(times["unitsync complete xK"]), 1),
        "complete_over_capnp_ms": round(complete - capnp_floor, 1),
    }
    if not args.json:
        print(f"{rounds} rounds, round-robin; wall time per process, ms")
        print(f"{'command':28} {'median':>8} {'p90':>8} {'min':>8} {'x pass':>7}")
        for label, values in times.items():
            print(
                f"{label:28} {medians[label]:8.1f} {p90(values):8.1f} {min(values):8.1f}"
                f" {medians[label] / floor:7.2f}"
            )
        print(f"{'complete - import capnp':28} {complete - capnp_floor:8.1f}")
        print(f"unitsync --help imports capnp: {'yes' if help_imports_capnp else 'no'}")
        verdict = "met" if complete <= COMPLETE_GOAL_MS else "NOT met"
        print(
            f"goal (ARCHITECTURE §8) complete median <= {COMPLETE_GOAL_MS:.0f} ms: {verdict}"
            f" ({complete:.1f} ms)"
        )
    print(json.dumps(result))
    return 0

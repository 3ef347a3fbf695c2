"""History: what keeping the coordinator's events costs, in memory, on the hot path and to read.

``python -m stress history [--quick] [--json] [--parts memory,server,want]``

The coordinator keeps its newest ``history`` events (every status change and edge added, see
``coordinator/_history.py``) in memory and in the journal. Three parts, each against a baseline
measured in the same run:

* **memory** — three fresh interpreters (as ``scale``'s memory pass: memory freed earlier would
  be reused unseen) do the same work, ``--memory-units`` units each wanting the previous one,
  then each started and completed ``--memory-runs`` times, with ``history=`` the default (all
  kept), 0, and a tenth of the events (full: the oldest are being dropped). Traced bytes
  (``tracemalloc``) grown over the work, after the actors are put to sleep and memory has held
  still: the difference from the 0 run divided by the events kept is the **bytes per kept
  event** (the event, its timestamp, its two index entries: all events, and its unit's), with
  room and full.
* **server** — a real ``unitsync serve`` (socket and journal in a short /tmp dir, the journal on
  as by default), filled through the library (``coordinator.connect``): one unit with
  ``--unit-events`` events (start/complete cycles) and one with 2, then ``want``\\ s (2 events
  each) up to ``--events`` events in all. Timed, as whole CLI processes (medians of 5 and 3;
  quick: 2 and 1), round-robin: ``unitsync status busy`` against ``status other`` (the ratio is
  what the busy unit's History costs), then ``timeline -o json``, ``timeline``, ``blame`` and
  ``critical-chain`` (stdout to /dev/null). Also: reading every page of the history through the
  library (at most 10,000 events per call: the slowest page bounds the time one call holds the
  server) while another process pings the server every 2 ms on its own connection
  (``ping_reading_ms`` against ``ping_idle_ms``, the second before: how long other clients wait
  behind a page), and the server's RSS before and after filling.
* **want** — in-process ``open_coordinator(history=...)``: ``--rounds`` rounds per
  configuration of ``--wants`` wants building a random DAG (the same edges each round, timed as
  ``scale``'s builds are), the configurations alternating round by round: ``on`` (the default
  history), ``off`` (0), ``full`` (a history smaller than a round's events, so nearly every
  event also drops the oldest). Medians and ranges of µs per want; ``want_ratio`` = on / off.

JSON keys (µs, ms, bytes as named): ``bytes_per_event``, ``bytes_per_kept_event_full``,
``memory_units``, ``memory_runs``, ``memory_events``, ``memory_events_kept``,
``memory_on_bytes``, ``memory_off_bytes``, ``memory_full_history``, ``memory_full_kept``,
``memory_full_bytes``; ``busy_events``, ``other_events``,
``status_busy_ms``, ``status_other_ms`` (+ ``_min``/``_max``), ``status_ratio``,
``status_busy_rows``, ``events``, ``timeline_json_ms``, ``timeline_text_ms``, ``blame_ms``,
``critical_chain_ms`` (+ ``_min``/``_max``), ``read_all_ms``, ``pages``, ``page_ms_max``,
``page_events``, ``read_events``,
``unit_page_ms``, ``ping_idle_ms``, ``ping_reading_ms`` (+ ``_max``, ``_count``),
``rss_start_kb``, ``rss_busy_kb``, ``rss_full_kb``, ``rss_after_reads_kb``, ``busy_calls_per_s``,
``fill_wants_per_s``; ``want_on_us``, ``want_off_us``, ``want_full_us`` (+ ``_min``/``_max``),
``want_{on,off,full}_gc_ms`` (in the garbage collector per round) and ``_max_ms`` (the
slowest single want; medians of the rounds), ``want_ratio``, ``want_full_ratio``, ``wants``,
``want_rounds``, ``want_full_history``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import trio
import trio.testing

from coordinator import LocalCoordinator, open_coordinator
from coordinator._history import DEFAULT_HISTORY, MAX_HISTORY_PAGE

from . import scale
from .cli import unitsync_argv
from .rpc import start, stop
from .wakeup import drain

PARTS: Final = ("memory", "server", "want")
#: want() calls in flight at once while filling the server (its journal commits them in groups).
FILL_BATCH: Final = 200
#: units made before the memory baseline (first-use allocations, small dicts).
MEMORY_WARMUP: Final = 200
SERVER_TIMEOUT: Final = 600.0  #: seconds for one CLI command; a hang is a bug to report
PING_INTERVAL: Final = 0.002  #: seconds between the pinger's pings (light: ~1 % of a core)
IDLE_PINGS_SECONDS: Final = 1.0  #: the pinger's baseline, before the pages are read


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The sizes of one run (``--quick``: seconds; the defaults: ~2-4 minutes here)."""

    parts: tuple[str, ...]
    memory_units: int  #: units in each memory interpreter
    memory_runs: int  #: times each of them is started and completed
    unit_events: int  #: events of the busy unit (``status BUSY``)
    events: int  #: events in the server in all (``timeline``, ``blame``, ...)
    status_runs: int  #: ``status`` processes timed per unit
    read_runs: int  #: ``timeline``/``blame``/``critical-chain`` processes timed per command
    wants: int  #: wants per round of the want part
    rounds: int  #: rounds per configuration of the want part
    settle: float  #: seconds memory must hold still before it is read
    history: int = DEFAULT_HISTORY  #: the "on" configuration


def progress(text: str) -> None:
    print(f"history: {text}", file=sys.stderr, flush=True)


def spread(values: Sequence[float], key: str, digits: int = 1) -> dict[str, float]:
    """``key`` (the median), ``key_min`` and ``key_max`` of ``values``."""
    return {key: round(statistics.median(values), digits),
            f"{key}_min": round(min(values), digits), f"{key}_max": round(max(values), digits)}


# --- memory per kept event ----------------------------------------------------------------------


async def chain_work(coord: LocalCoordinator, prefix: str, units: int, runs: int) -> None:
    """``{prefix}{i}`` wants ``{prefix}{i-1}``; then ``runs`` times each, in order, is started
    and completed (a re-run after the first): 2 + 2 * ``runs`` events per unit (1 less for the
    first, which has no edge)."""
    names = [f"{prefix}{i}" for i in range(units)]
    await coord.unit(names[0]).register()
    for dependent, dependency in zip(names[1:], names):
        await coord.unit(dependent).want(dependency)
    for _ in range(runs):
        for name in names:
            await coord.unit(name).start()
            await coord.unit(name).complete()


async def kept_after(coord: LocalCoordinator, seq: int) -> int:
    """How many kept events have a seq above ``seq`` (every page of them)."""
    count = 0
    while True:
        page = await coord.history(after=seq)
        count += len(page.events)
        if not page.more or not page.events:
            return count
        seq = page.events[-1].seq


def event_memory(units: int, runs: int, history: int, settle: float) -> dict[str, Any]:
    """Traced bytes grown while a coordinator keeping ``history`` events does
    :func:`chain_work` on ``units`` units, read once its actors sleep and memory holds still.
    Only meaningful in a fresh interpreter: see :func:`event_memory_in_subprocess`."""
    return trio.run(_event_memory, units, runs, history, settle)


async def _event_memory(units: int, runs: int, history: int, settle: float) -> dict[str, Any]:
    async with open_coordinator(history=history) as coord:
        await chain_work(coord, "warm", MEMORY_WARMUP, 1)
        await coord.sleep_idle()
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        tracemalloc.start()
        before = scale.traced_bytes()
        seq0 = (await coord.history(limit=1, newest=True)).last
        await chain_work(coord, "u", units, runs)
        await coord.sleep_idle()
        await trio.testing.wait_all_tasks_blocked()
        await scale.settled(scale.traced_bytes, settle, units)
        after = scale.traced_bytes()
        tracemalloc.stop()
        last = (await coord.history(limit=1, newest=True)).last
        kept = await kept_after(coord, seq0)
    return {"history": history, "units": units, "bytes": after - before,
            "events": last - seq0, "kept": kept}


def event_memory_in_subprocess(units: int, runs: int, history: int, settle: float
                               ) -> dict[str, Any]:
    """:func:`event_memory` in a fresh interpreter (same Python, this repository)."""
    code = ("import json, sys; from stress.history import event_memory; "
            "print(json.dumps(event_memory(**json.loads(sys.argv[1]))))")
    path = os.pathsep.join(filter(None, [str(scale.ROOT), os.environ.get("PYTHONPATH")]))
    options = {"units": units, "runs": runs, "history": history, "settle": settle}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(options)], cwd=scale.ROOT,
                         env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True,
                         check=True, timeout=scale.PHASE_TIMEOUT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_memory(config: Config) -> dict[str, Any]:
    """Bytes per kept event: history on minus history off, over the events kept; and the same
    with a history too small for the work (full: the oldest events are being dropped)."""
    units, runs = config.memory_units, config.memory_runs
    events = 2 * units - 1 + 2 * units * runs
    full_limit = max(1, events // 10)
    progress(f"memory: {units:,} units, {runs} runs each ({events:,} events), "
             f"history={config.history:,}, 0 and {full_limit:,}")
    on = event_memory_in_subprocess(units, runs, config.history, config.settle)
    off = event_memory_in_subprocess(units, runs, 0, config.settle)
    full = event_memory_in_subprocess(units, runs, full_limit, config.settle)
    if not on["events"] == off["events"] == full["events"] or off["kept"] or not on["kept"]:
        raise RuntimeError(f"memory: the interpreters did not do the same work: {on} {off} {full}")
    return {"memory_units": units, "memory_runs": runs, "memory_events": on["events"],
            "memory_events_kept": on["kept"], "memory_on_bytes": on["bytes"],
            "memory_off_bytes": off["bytes"],
            "bytes_per_event": round((on["bytes"] - off["bytes"]) / on["kept"], 1),
            "memory_full_history": full_limit, "memory_full_kept": full["kept"],
            "memory_full_bytes": full["bytes"],
            "bytes_per_kept_event_full": round((full["bytes"] - off["bytes"]) / full["kept"], 1)}


# --- a real server: status of a busy unit, timeline & co. of the whole history ------------------


def rss_kb(pid: int) -> int:
    """Resident set size of process ``pid``, kB (``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def timed(argv: list[str], env: dict[str, str], *, capture: bool = False) -> tuple[float, str]:
    """Run ``argv`` to completion: its wall time in ms, and its stdout if ``capture`` (else it
    goes to /dev/null). Raises if it does not exit 0."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=SERVER_TIMEOUT, check=False)
    elapsed = (time.perf_counter() - t0) * 1e3
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[-2000:]!r}")
    return elapsed, (done.stdout or b"").decode()


async def unit_events(coord: Any, unit: str) -> int:
    """Kept events of ``unit``, counted through every page of ``history(unit=...)``."""
    count, after = 0, 0
    while True:
        page = await coord.history(after=after, unit=unit)
        count += len(page.events)
        if not page.more or not page.events:
            return count
        after = page.events[-1].seq


async def fill_busy(path: Path, config: Config, server_pid: int) -> dict[str, Any]:
    """``other``: registered and started (2 events); ``busy``: registered, then started and
    completed in turn until it has ``unit_events`` events (one call at a time, each waiting
    for its fdatasync)."""
    from coordinator import connect

    async with connect(path) as coord:
        other, busy = coord.unit("other"), coord.unit("busy")
        await other.register()
        await other.start()
        t0 = time.perf_counter()
        await busy.register()
        for n in range(1, config.unit_events):
            await (busy.start() if n % 2 else busy.complete())
        seconds = time.perf_counter() - t0
        return {"busy_events": await unit_events(coord, "busy"),
                "other_events": await unit_events(coord, "other"),
                "busy_calls_per_s": round(config.unit_events / seconds),
                "rss_busy_kb": rss_kb(server_pid)}


async def fill_rest(path: Path, config: Config) -> dict[str, Any]:
    """``want f{i} hub`` (2 events each: registered, edge added), ``FILL_BATCH`` at a time,
    until the server has published ``events`` events; then every page of the history read
    through the library, timed."""
    from coordinator import connect

    async with connect(path) as coord:
        last = (await coord.history(limit=1, newest=True)).last
        made, seconds = 0, 0.0
        while last < config.events:
            remaining = config.events - last
            if remaining == 1:
                await coord.unit(f"f{made}").register()
                made += 1
            else:
                names = [f"f{made + k}" for k in range(min(FILL_BATCH, remaining // 2))]
                made += len(names)
                t0 = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for name in names:
                        nursery.start_soon(coord.unit(name).want, "hub")
                seconds += time.perf_counter() - t0
            last = (await coord.history(limit=1, newest=True)).last
        return {"events": last, "fill_wants_per_s": round(made / seconds) if seconds else 0}


async def read_pages(path: Path) -> dict[str, Any]:
    """Every page of the history, then the busy unit's, through the library, timed per call."""
    from coordinator import connect

    async with connect(path) as coord:
        pages: list[float] = []
        count, after, more = 0, 0, True
        t_all = time.perf_counter()
        while more:
            t0 = time.perf_counter()
            page = await coord.history(after=after)
            pages.append((time.perf_counter() - t0) * 1e3)
            count += len(page.events)
            more = page.more and bool(page.events)
            after = page.events[-1].seq if page.events else after
        result: dict[str, Any] = {
            "read_all_ms": round((time.perf_counter() - t_all) * 1e3, 1), "pages": len(pages),
            "page_ms_max": round(max(pages), 1), "page_events": MAX_HISTORY_PAGE,
            "read_events": count}
        t0 = time.perf_counter()
        await coord.history(unit="busy")
        result["unit_page_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        return result


def pinger(path: str, interval: float) -> None:
    """Ping the coordinator at ``path`` every ``interval`` s until stdin closes; print
    ``[[time.monotonic() when sent, ms], ...]`` as one JSON line (run by :class:`Pinger`)."""
    import asyncio
    import threading

    from coordinator.rpc import run_client

    async def body(core: Any) -> list[list[float]]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)),
                         daemon=True).start()
        await core.ping()
        print("ready", flush=True)
        found: list[list[float]] = []
        while not stop.is_set():
            t0 = time.monotonic()
            await core.ping()
            found.append([t0, (time.monotonic() - t0) * 1e3])
            await asyncio.sleep(interval)
        return found

    print(json.dumps(run_client(Path(path), body)))


class Pinger:
    """A separate process pinging the server on its own connection (see :func:`pinger`): how
    long other clients wait while a history page is built and sent. CLOCK_MONOTONIC is
    system-wide, so its stamps split into the windows the driver noted."""

    def __init__(self, path: Path, env: dict[str, str], interval: float = PING_INTERVAL) -> None:
        code = "import sys; from stress.history import pinger; pinger(sys.argv[1], float(sys.argv[2]))"
        self.process = subprocess.Popen([sys.executable, "-c", code, str(path), str(interval)],
                                        cwd=scale.ROOT, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise RuntimeError("the pinger did not start")

    def stop(self) -> list[list[float]]:
        """End it; its ``[sent, ms]`` pairs."""
        out, _ = self.process.communicate(input="", timeout=60)
        return json.loads(out.strip().splitlines()[-1])


def ping_figures(pings: list[list[float]], windows: dict[str, tuple[float, float]]
                 ) -> dict[str, Any]:
    """``ping_{window}_ms`` (median) and ``_max`` of the pings sent in each window."""
    result: dict[str, Any] = {}
    for name, (begin, end) in windows.items():
        inside = sorted(ms for sent, ms in pings if begin <= sent < end)
        if inside:
            result |= {f"ping_{name}_ms": round(statistics.median(inside), 2),
                       f"ping_{name}_ms_max": round(inside[-1], 2),
                       f"ping_{name}_count": len(inside)}
    return result


def time_commands(commands: dict[str, list[str]], env: dict[str, str], runs: int,
                  capture: Callable[[str], bool] = lambda _: False
                  ) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Each command ``runs`` times, round-robin: the wall times (ms) per label, and the last
    stdout of those ``capture`` picks."""
    times: dict[str, list[float]] = {label: [] for label in commands}
    outputs: dict[str, str] = {}
    for _ in range(runs):
        for label, argv in commands.items():
            ms, out = timed(argv, env, capture=capture(label))
            times[label].append(ms)
            if capture(label):
                outputs[label] = out
    return times, outputs


def measure_server(config: Config) -> dict[str, Any]:
    """Fill a real ``unitsync serve`` and time the commands that read its history."""
    workdir = tempfile.mkdtemp(prefix="us-", dir="/tmp")  # short: a socket path is <= 107 bytes
    path = Path(workdir) / "unitsync.sock"
    env = {**os.environ, "UNITSYNC_SOCKET": str(path)}
    server = start([sys.executable, "-m", "cli", "serve", "--socket", str(path),
                    "--history", str(config.history)], env, "serving on")
    tail: deque[str] = deque(maxlen=20)
    assert server.stderr is not None
    drain(server.stderr, tail)
    unitsync = unitsync_argv()
    try:
        result: dict[str, Any] = {"rss_start_kb": rss_kb(server.pid)}
        progress(f"server: one unit with {config.unit_events:,} events")
        result |= trio.run(fill_busy, path, config, server.pid)

        progress(f"server: unitsync status, {config.status_runs} runs per unit")
        times, out = time_commands(
            {"busy": [*unitsync, "status", "busy"], "other": [*unitsync, "status", "other"]},
            env, config.status_runs, capture=lambda _: True)
        result |= spread(times["busy"], "status_busy_ms") | spread(times["other"], "status_other_ms")
        result["status_ratio"] = round(statistics.median(times["busy"])
                                       / statistics.median(times["other"]), 2)
        # rows of the History section: its lines after "History:" and the header
        result["status_busy_rows"] = len(out["busy"].split("History:\n", 1)[-1].splitlines()) - 1

        progress(f"server: filling to {config.events:,} events")
        result |= trio.run(fill_rest, path, config)
        result["rss_full_kb"] = rss_kb(server.pid)

        progress("server: every page through the library, pinged from another process")
        ping = Pinger(path, env)
        try:
            t0 = time.monotonic()
            time.sleep(IDLE_PINGS_SECONDS)
            t1 = time.monotonic()
            result |= trio.run(read_pages, path)
            t2 = time.monotonic()
        finally:
            pings = ping.stop()
        result |= ping_figures(pings, {"idle": (t0, t1), "reading": (t1, t2)})

        progress(f"server: timeline, blame, critical-chain, {config.read_runs} runs each")
        reads = {"timeline_json": [*unitsync, "timeline", "-o", "json"],
                 "timeline_text": [*unitsync, "timeline"],
                 "blame": [*unitsync, "blame"],
                 "critical_chain": [*unitsync, "critical-chain"]}
        times, _ = time_commands(reads, env, config.read_runs)
        for label, values in times.items():
            result |= spread(values, f"{label}_ms")
        result["rss_after_reads_kb"] = rss_kb(server.pid)
        return result
    finally:
        stop(server, grace=30)
        if server.returncode not in (0, -9):
            progress(f"serve exited {server.returncode}: {''.join(tail)!r}")
        shutil.rmtree(workdir, ignore_errors=True)


# --- want with and without history, in-process --------------------------------------------------


async def want_round(history: int, register: Sequence[str], pairs: Sequence[scale.Edge],
                     batch: int) -> tuple[float, float, float]:
    """Building ``pairs`` in a fresh coordinator keeping ``history`` events: µs per want, ms of
    it in the garbage collector, and the slowest single want in ms."""
    gc.collect()
    async with open_coordinator(history=history) as coord:
        for name in register:
            await coord.unit(name).register()
        curve = await scale.timed_wants(coord, pairs, batch)
    return (curve.seconds / len(pairs) * 1e6, curve.gc_seconds * 1e3, max(curve.wants) * 1e3)


def measure_want(config: Config) -> dict[str, Any]:
    """Rounds of the same DAG build, alternating on / off / full (order rotated each round)."""
    units = max(8, config.wants // 2)
    register, pairs = scale.workload("dag", units, config.wants, random.Random(1))
    events = len(register) + len(pairs)
    histories = {"on": config.history, "off": 0, "full": max(1, events // 10)}
    labels = list(histories)
    progress(f"want: {config.rounds} rounds x {len(labels)} configurations of "
             f"{config.wants:,} wants ({events:,} events a round; full keeps {histories['full']:,})")
    trio.run(want_round, 0, register, pairs, config.wants)  # warm-up, not counted
    found: dict[str, list[tuple[float, float, float]]] = {label: [] for label in labels}
    for r in range(config.rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            found[label].append(trio.run(want_round, histories[label], register, pairs,
                                         config.wants))
    result: dict[str, Any] = {"wants": len(pairs), "want_rounds": config.rounds,
                              "want_full_history": histories["full"]}
    for label, rounds in found.items():
        us, gc_ms, max_ms = zip(*rounds)
        result |= spread(us, f"want_{label}_us", 2)
        result |= {f"want_{label}_gc_ms": round(statistics.median(gc_ms), 1),
                   f"want_{label}_max_ms": round(statistics.median(max_ms), 1)}
    off = result["want_off_us"]
    result["want_ratio"] = round(result["want_on_us"] / off, 3)
    result["want_full_ratio"] = round(result["want_full_us"] / off, 3)
    return result


# --- command line -------------------------------------------------------------------------------


def report(result: dict[str, Any], config: Config) -> None:
    """The readable summary (stdout)."""
    def ranged(key: str, unit: str) -> str:
        return f"{result[key]:,} {unit} ({result[f'{key}_min']:,}-{result[f'{key}_max']:,})"

    if "bytes_per_event" in result:
        r = result
        print(f"memory: {r['bytes_per_event']:,} B per kept event (tracemalloc: "
              f"{r['memory_on_bytes']:,} B with history={config.history:,}, "
              f"{r['memory_off_bytes']:,} B with 0; {r['memory_events_kept']:,} events kept of "
              f"{r['memory_events']:,}, {r['memory_units']:,} units run {r['memory_runs']} times)")
        print(f"  history full (={r['memory_full_history']:,}, the oldest dropped): "
              f"{r['bytes_per_kept_event_full']:,} B per kept event ({r['memory_full_bytes']:,} B, "
              f"{r['memory_full_kept']:,} events kept)")
    if "status_busy_ms" in result:
        r = result
        print(f"\nserve (journal on): busy unit {r['busy_events']:,} events "
              f"({r['busy_calls_per_s']:,} start/complete calls/s), other {r['other_events']}")
        print(f"  unitsync status busy   {ranged('status_busy_ms', 'ms')}, "
              f"{r['status_busy_rows']:,} History rows")
        print(f"  unitsync status other  {ranged('status_other_ms', 'ms')}")
        print(f"  ratio busy/other       {r['status_ratio']}")
        print(f"  filled to {r['events']:,} events ({r['fill_wants_per_s']:,} wants/s, "
              f"{FILL_BATCH} in flight)")
        print(f"  every page through the library: {r['pages']} pages, {r['read_events']:,} "
              f"events, {r['read_all_ms']:,} ms, slowest page {r['page_ms_max']} ms; "
              f"busy's page {r['unit_page_ms']} ms")
        print(f"  ping from another process meanwhile: median {r['ping_reading_ms']} ms, max "
              f"{r['ping_reading_ms_max']} ms ({r['ping_reading_count']} pings); the second "
              f"before: {r['ping_idle_ms']} ms, max {r['ping_idle_ms_max']} ms")
        for label, command in (("timeline_json", "timeline -o json"),
                               ("timeline_text", "timeline"), ("blame", "blame"),
                               ("critical_chain", "critical-chain")):
            print(f"  unitsync {command:18} {ranged(f'{label}_ms', 'ms')}")
        print(f"  server RSS: start {r['rss_start_kb']:,} kB, busy unit filled "
              f"{r['rss_busy_kb']:,} kB, {r['events']:,} events {r['rss_full_kb']:,} kB, "
              f"after the reads {r['rss_after_reads_kb']:,} kB")
    if "want_ratio" in result:
        r = result
        print(f"\nwant, in-process, {r['want_rounds']} rounds x {r['wants']:,} wants (µs per want, "
              f"median (range)):")
        for label, name in (("on", f"history={config.history:,}"), ("off", "history=0"),
                            ("full", f"history={r['want_full_history']:,} (full)")):
            print(f"  {name:22} {ranged(f'want_{label}_us', 'µs')}; in the GC "
                  f"{r[f'want_{label}_gc_ms']} ms a round, slowest want {r[f'want_{label}_max_ms']}"
                  f" ms (medians)")
        print(f"  on/off {r['want_ratio']}, full/off {r['want_full_ratio']}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress history",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=scale.comma_list(PARTS), default=PARTS,
                        help="memory,server,want")
    parser.add_argument("--memory-units", type=int, help="units per memory interpreter (2,000)")
    parser.add_argument("--memory-runs", type=int,
                        help="times each memory unit is started and completed (10)")
    parser.add_argument("--unit-events", type=int, help="events of the busy unit (10,000)")
    parser.add_argument("--events", type=int, help="events in the server in all (100,000)")
    parser.add_argument("--wants", type=int, help="wants per round (5,000)")
    parser.add_argument("--rounds", type=int, help="rounds per configuration (5)")
    parser.add_argument("--history", type=int, default=DEFAULT_HISTORY,
                        help="the 'on' configuration's kept events")
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds (smoke test)")
    parser.add_argument("--json", action="store_true", help="print only one JSON object")
    args = parser.parse_args(argv)
    quick = args.quick
    config = Config(
        parts=args.parts,
        memory_units=args.memory_units or (200 if quick else 2_000),
        memory_runs=args.memory_runs or (3 if quick else 10),
        unit_events=args.unit_events or (1_000 if quick else 10_000),
        events=args.events or (5_000 if quick else 100_000),
        status_runs=2 if quick else 5, read_runs=1 if quick else 3,
        wants=args.wants or (500 if quick else 5_000),
        rounds=args.rounds or (2 if quick else 5),
        settle=0.0 if quick else 1.0, history=args.history,
    )
    if config.history < 1:
        parser.error("--history: the 'on' configuration keeps at least one event")
    if config.events < config.unit_events + 2 or config.events > config.history:
        parser.error("--events: at least the busy unit's and other's, at most --history")
    progress(f"config {json.dumps(asdict(config))}")
    result: dict[str, Any] = {}
    if "memory" in config.parts:
        result |= measure_memory(config)
    if "want" in config.parts:
        result |= measure_want(config)
    if "server" in config.parts:
        result |= measure_server(config)
    if not args.json:
        report(result, config)
    print(json.dumps(result))
    return 0 if all(not isinstance(v, float) or math.isfinite(v) for v in result.values()) else 1

"""Scale: per-edge cost of ``want`` as the graph grows, completion down a chain, memory per unit.

``python -m stress scale [--units N] [--edges E] [--shapes chain,fanout,fanin,dag] [--quick]
[--json] [--raw PATH]``

* **Build.** Each shape is built in its own in-process coordinator through the public API, one
  edge per ``await coord.unit(a).want(b)``, so a batch's time divided by its size is the cost of
  one edge: ``chain`` (u0 wants u1 wants ... u{N-1}), ``fanout`` (u0 wants each of the N-1
  others), ``fanin`` (each of N-1 units wants u0), ``dag`` (E distinct edges ``a -> b`` with ``a``
  before ``b`` in a hidden, seeded random order; all N units registered first in another random
  order, edges inserted in a third, so the Pearce-Kelly check really reorders). Every batch of
  ``--batch`` wants is timed: the *curve* of µs per edge against edges so far, whose last/first
  ratio shows whether the cycle check keeps the cost flat. The same edges are replayed into a bare
  ``DependencyGraph`` to separate the cycle check (``graph``) from the actor round trip.
* **Cycle probes.** On the finished DAG, ``--probes`` back edges ``b -> a`` where ``a`` reaches
  ``b``: each must raise ``CycleError`` and change nothing (the edge count is checked after).
* **Propagation.** :func:`stress.chain.run`: an N-unit chain whose units each wait for
  ``ready()``, start and complete; completion travels from the leaf to the root.
* **Memory per idle unit.** :func:`idle_unit_memory`, each pass in a fresh interpreter: the growth
  of RSS (no tracing) and, in a separate pass, of traced memory (``tracemalloc``) when
  ``--idle-units`` units are registered (``idle``) or linked as a chain (``linked``: one
  dependency edge each), divided by their number, read after ``gc.collect()`` once memory has
  held still for ``--settle`` seconds (idle actors are put to sleep on a timer). The units are
  made all at once, or in ``--memory-waves`` waves ``--settle`` apart (units arriving over
  time: memory freed by sleeping units is reused, which RSS otherwise does not show).

The JSON line: ``units``, ``edges``; per shape ``{shape}_build_s``, ``_us_per_edge_first``,
``_last``, ``_median`` (per batch), ``_last_over_first``, ``_want_us_p99``, ``_want_us_max``
(single wants), ``_gc_s`` (in the garbage collector during the build), ``_graph_us_per_edge_first``
/ ``_last`` and ``_graph_reordered_per_edge`` (bare graph); ``cycle_probe_us`` (median) and
``_max``, also ``cycle_probe_graph_us``; ``chain_propagate_s``, ``chain_propagate_us_per_unit``;
``bytes_per_{idle,linked}_unit_{tracemalloc,rss}``, ``..._peak_tracemalloc``; the goals as
``per_edge_goal_met`` (``dag_us_per_edge_last`` < 1 ms), ``memory_goal_met`` (traced) and
``memory_goal_met_rss``.

``--raw PATH`` writes the curves, the probe times and the allocation breakdown as JSON::

    {"config": {...}, "result": {...the JSON line...},
     "curves": {shape: {"edges": [...], "api_us_per_edge": [...], "api_gc_us_per_edge": [...],
                        "graph_us_per_edge": [...], "graph_gc_us_per_edge": [...],
                        "graph_reordered_per_edge": [...]}},   # lists: one entry per batch
     "cycle_probes": {"api_us": [...], "api_gc_us": [...], "graph_us": [...]},
     "memory": {"idle": {"rss": {...}, "tracemalloc": {..., "breakdown": [...]}}, "linked": {...}},
     "source": {"commit": ..., "coordinator_diff_sha1": ...}}

``*_gc_us_per_edge`` is the part of the batch spent in the cyclic garbage collector.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import linecache
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import trio
import trio.testing

from coordinator import CycleError, LocalCoordinator, Status, open_coordinator
from coordinator._history import DEFAULT_HISTORY
from coordinator._graph import DependencyGraph  # the bare cycle check, for comparison
from stress import chain

SHAPES: Final = ("chain", "fanout", "fanin", "dag")
PARTS: Final = ("build", "propagate", "memory")
GOAL_US_PER_EDGE: Final = 1000.0  #: ARCHITECTURE §8: sub-millisecond per edge at 50,000 edges
GOAL_BYTES_PER_IDLE_UNIT: Final = 4096  #: ARCHITECTURE §8: ≤ 4 KiB per idle unit
MEMORY_WARMUP: Final = 1000  #: units made before the baseline (first-use allocations, small dicts)
SETTLE_SECONDS: Final = 3.0  #: memory must hold still this long (idle actors sleep after 1-2 s)
TRACE_FRAMES: Final = 12  #: enough to find the coordinator line behind a Trio allocation
PHASE_TIMEOUT: Final = 1800.0  #: seconds; a hang is a bug to report, not a wait to sit out
ROOT: Final = Path(__file__).resolve().parent.parent

Edge = tuple[str, str]  # (dependent, dependency)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    units: int
    edges: int  #: of the DAG
    shapes: tuple[str, ...]
    parts: tuple[str, ...]
    batch: int  #: wants per timed batch
    probes: int
    idle_units: int
    settle: float  #: seconds memory must hold still before it is read (see idle_unit_memory)
    waves: int  #: the idle units are made in this many waves, ``settle`` apart
    seed: int
    history: int = DEFAULT_HISTORY  #: events the coordinators keep (0: none)


# --- workloads ------------------------------------------------------------------------------


def workload(
    shape: str, units: int, edges: int, rng: random.Random
) -> tuple[list[str], list[Edge]]:
    """The units to register first and the edges to add, in order, for ``shape``."""
    names = [f"u{i}" for i in range(units)]
    match shape:
        case "chain":
            return [], list(zip(names, names[1:]))
        case "fanout":
            return [], [(names[0], name) for name in names[1:]]
        case "fanin":
            return [], [(name, names[0]) for name in names[1:]]
        case "dag":
            if not 0 < edges <= units * (units - 1) // 4:
                raise ValueError(f"{edges} edges over {units} units: too dense for random sampling")
            hidden = rng.sample(names, units)  # the topological order every edge respects
            seen: set[tuple[int, int]] = set()
            pairs: list[Edge] = []
            while len(pairs) < edges:
                a, b = sorted(rng.sample(range(units), 2))
                if (a, b) not in seen:
                    seen.add((a, b))
                    pairs.append((hidden[a], hidden[b]))
            rng.shuffle(pairs)
            return rng.sample(names, units), pairs
    raise ValueError(f"unknown shape {shape!r}")


def batches(count: int, size: int) -> list[range]:
    """``range(count)`` cut into about ``count / size`` nearly equal consecutive batches."""
    n = max(1, round(count / size))
    bounds = [round(k * count / n) for k in range(n + 1)]
    return [range(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def back_edges(pairs: Sequence[Edge], count: int, rng: random.Random) -> list[Edge]:
    """``count`` edges ``b -> a`` that each close a cycle: ``b`` is reachable from ``a``."""
    out: dict[str, list[str]] = {}
    for unit, dep in pairs:
        out.setdefault(unit, []).append(dep)
    sources = sorted(out)
    probes: list[Edge] = []
    while len(probes) < count:
        a = rng.choice(sources)
        seen = {a}
        queue = deque([a])
        while queue:
            for nxt in out.get(queue.popleft(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        seen.discard(a)
        probes.append((rng.choice(sorted(seen)), a))
    return probes


# --- build, probes, propagation (in one trio.run) -----------------------------------------------


class GcClock:
    """Time spent in the cyclic garbage collector while in the ``with`` block (``gc.callbacks``)."""

    __slots__ = ("seconds", "full", "_t0")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0  #: generation-2 collections
        self._t0 = 0.0

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.full += info["generation"] == 2


@dataclass(slots=True)
class Curve:
    """Per batch: edges so far, µs per edge, and of that the µs per edge spent in the GC."""

    edges: list[int]
    us_per_edge: list[float]
    gc_us_per_edge: list[float]
    seconds: float = 0.0  #: all batches
    gc_seconds: float = 0.0
    full_collections: int = 0
    wants: list[float] = field(default_factory=list)  #: seconds of each want (API curves only)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the single wants, in µs."""
        ordered = sorted(self.wants)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1e6


async def timed_wants(coord: LocalCoordinator, pairs: Sequence[Edge], batch: int) -> Curve:
    """Add ``pairs``, one ``want`` each, timing every batch and every single ``want``."""
    curve = Curve([], [], [])
    clock = time.perf_counter
    with GcClock() as gc_clock:
        for part in batches(len(pairs), batch):
            gc0, spent = gc_clock.seconds, 0.0
            for i in part:
                unit, dep = pairs[i]
                t0 = clock()
                await coord.unit(unit).want(dep)
                took = clock() - t0
                spent += took
                curve.wants.append(took)
            curve.seconds += spent
            curve.edges.append(part.stop)
            curve.us_per_edge.append(spent / len(part) * 1e6)
            curve.gc_us_per_edge.append((gc_clock.seconds - gc0) / len(part) * 1e6)
    curve.gc_seconds, curve.full_collections = gc_clock.seconds, gc_clock.full
    return curve


def graph_replay(register: Sequence[str], pairs: Sequence[Edge], batch: int,
                 probes: Sequence[Edge]) -> tuple[Curve, list[float], list[float]]:
    """The same edges into a bare :class:`DependencyGraph` (the cycle check without the actors):
    the curve; the nodes reordered per edge per batch (the Pearce-Kelly affected region, counted
    in a second, untimed replay); the µs of each back edge in ``probes`` (each must be refused)."""
    parts = batches(len(pairs), batch)
    curve = Curve([], [], [])
    reordered: list[float] = []
    probe_us: list[float] = []
    graph = DependencyGraph()
    for name in register:
        graph.add_node(name)
    with GcClock() as clock:
        for part in parts:
            gc0, t0 = clock.seconds, time.perf_counter()
            for i in part:
                unit, dep = pairs[i]
                graph.add(unit, {dep: Status.COMPLETED})
            spent = time.perf_counter() - t0
            curve.edges.append(part.stop)
            curve.us_per_edge.append(spent / len(part) * 1e6)
            curve.gc_us_per_edge.append((clock.seconds - gc0) / len(part) * 1e6)
        for unit, dep in probes:
            t0 = time.perf_counter()
            try:
                graph.add(unit, {dep: Status.COMPLETED})
            except CycleError:
                probe_us.append((time.perf_counter() - t0) * 1e6)
            else:
                raise RuntimeError(f"back edge {unit} -> {dep} was accepted by the bare graph")
    graph = DependencyGraph()
    for name in register:
        graph.add_node(name)
    for part in parts:
        moved = 0
        for i in part:
            unit, dep = pairs[i]
            graph.add(unit, {dep: Status.COMPLETED})
            moved += graph.statistics().last_affected
        reordered.append(moved / len(part))
    return curve, reordered, probe_us


async def build_shape(
    shape: str, config: Config, rng: random.Random, raw: dict[str, Any]
) -> dict[str, Any]:
    """Build ``shape`` in a fresh coordinator (and replay it into a bare graph); its figures."""
    register, pairs = workload(shape, config.units, config.edges, rng)
    probes = back_edges(pairs, config.probes, rng) if shape == "dag" and config.probes else []
    result: dict[str, Any] = {}
    async with open_coordinator(history=config.history) as coord:
        t0 = time.perf_counter()
        for name in register:
            await coord.unit(name).register()
        if register:
            result[f"{shape}_register_s"] = round(time.perf_counter() - t0, 4)
        curve = await timed_wants(coord, pairs, config.batch)
        edges = (await coord.statistics()).edges
        if edges != len(pairs):
            raise RuntimeError(f"{shape}: {edges} edges in the coordinator, {len(pairs)} added")
        probe_us, probe_gc_us = [], []
        with GcClock() as gc_clock:
            for unit, dep in probes:
                gc0, t0 = gc_clock.seconds, time.perf_counter()
                try:
                    await coord.unit(unit).want(dep)
                except CycleError:
                    probe_us.append((time.perf_counter() - t0) * 1e6)
                    probe_gc_us.append((gc_clock.seconds - gc0) * 1e6)
                else:
                    raise RuntimeError(f"back edge {unit} -> {dep} was accepted")
        if probes and (await coord.statistics()).edges != edges:
            raise RuntimeError("a refused back edge changed the graph")
    gc.collect()
    bare, reordered, bare_probe_us = graph_replay(register, pairs, config.batch, probes)
    first, last = curve.us_per_edge[0], curve.us_per_edge[-1]
    result |= {
        f"{shape}_edges": edges,
        f"{shape}_build_s": round(curve.seconds, 4),
        f"{shape}_us_per_edge_first": round(first, 1),
        f"{shape}_us_per_edge_last": round(last, 1),
        f"{shape}_us_per_edge_median": round(statistics.median(curve.us_per_edge), 1),
        f"{shape}_last_over_first": round(last / first, 3),
        f"{shape}_want_us_p99": round(curve.percentile(99), 1),
        f"{shape}_want_us_max": round(max(curve.wants) * 1e6, 1),
        f"{shape}_gc_s": round(curve.gc_seconds, 4),
        f"{shape}_graph_us_per_edge_first": round(bare.us_per_edge[0], 2),
        f"{shape}_graph_us_per_edge_last": round(bare.us_per_edge[-1], 2),
        f"{shape}_graph_reordered_per_edge": round(sum(reordered) / len(reordered), 2),
    }
    if probe_us:
        result |= {
            "cycle_probes": len(probe_us),
            "cycle_probe_us": round(statistics.median(probe_us), 1),
            "cycle_probe_us_max": round(max(probe_us), 1),
            "cycle_probe_graph_us": round(statistics.median(bare_probe_us), 1),
            "cycle_probe_graph_us_max": round(max(bare_probe_us), 1),
        }
        raw["cycle_probes"] = {"api_us": [round(us, 1) for us in probe_us],
                               "api_gc_us": [round(us, 1) for us in probe_gc_us],
                               "graph_us": [round(us, 1) for us in bare_probe_us]}
    raw["curves"][shape] = {
        "edges": curve.edges,
        "api_us_per_edge": [round(us, 2) for us in curve.us_per_edge],
        "api_gc_us_per_edge": [round(us, 2) for us in curve.gc_us_per_edge],
        "graph_us_per_edge": [round(us, 3) for us in bare.us_per_edge],
        "graph_gc_us_per_edge": [round(us, 3) for us in bare.gc_us_per_edge],
        "graph_reordered_per_edge": [round(n, 3) for n in reordered],
        "api_full_collections": curve.full_collections,
    }
    return result


async def run_in_trio(config: Config, raw: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    rng = random.Random(config.seed)
    if "build" in config.parts:
        for shape in config.shapes:
            progress(f"building {shape}")
            with trio.fail_after(PHASE_TIMEOUT):
                result |= await build_shape(shape, config, rng, raw)
            gc.collect()
    if "propagate" in config.parts:
        progress(f"propagating completion down a {config.units}-unit chain")
        with trio.fail_after(PHASE_TIMEOUT):
            propagated = await chain.run(config.units)
        result["chain_propagate_s"] = propagated["propagate_s"]
        result["chain_propagate_us_per_unit"] = propagated["propagate_us_per_unit"]
    return result


# --- memory per idle unit ---------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def make_units(coord: LocalCoordinator, prefix: str, count: int, *, linked: bool) -> None:
    """``count`` idle units: registered, or (``linked``) each wanting the next (one more is only
    mentioned). Names are made here and kept only by the coordinator, so they count."""
    for i in range(count):
        if linked:
            await coord.unit(f"{prefix}{i}").want(f"{prefix}{i + 1}")
        else:
            await coord.unit(f"{prefix}{i}").register()


def idle_unit_memory(
    count: int,
    *,
    linked: bool = False,
    trace: bool = False,
    settle: float = SETTLE_SECONDS,
    top: int = 15,
    waves: int = 1,
) -> dict[str, Any]:
    """Bytes per idle unit: the memory growth of this process while ``count`` units are made
    and then left idle in a fresh coordinator, divided by ``count``.

    Steps: :data:`MEMORY_WARMUP` units (first-use allocations, small tables), ``settle`` seconds
    idle, baseline; ``count`` units (registered, or ``linked``: each wanting the next); idle until
    the measured figure has held still for ``settle`` seconds (idle actors may be put to sleep on
    a timer: ``settle`` must exceed that delay; 0 measures at once); ``gc.collect()`` before each
    reading. ``waves`` > 1 makes the units in that many waves, ``settle`` seconds apart, so that
    memory freed by idle units of one wave can be reused by the next (units arriving over time,
    not all at once). Without ``trace``: resident set size (RSS). With it: ``tracemalloc``'s traced
    bytes (tracing starts after the warm-up), their peak while the units were made, and the
    ``top`` allocation sites (innermost line and the coordinator line behind it), per unit.

    Runs its own ``trio.run``. Only meaningful in a fresh interpreter (memory freed earlier would
    be reused unseen): use :func:`idle_unit_memory_in_subprocess`.
    """
    return trio.run(_idle_unit_memory, count, linked, trace, settle, top, waves)


async def _idle_unit_memory(count: int, linked: bool, trace: bool, settle: float, top: int,
                            waves: int) -> dict[str, Any]:
    async with open_coordinator() as coord:
        await make_units(coord, "warm", MEMORY_WARMUP, linked=linked)
        await settled(rss_bytes, settle, count)
        if trace:
            tracemalloc.start(TRACE_FRAMES)
            baseline = tracemalloc.take_snapshot()
        read = traced_bytes if trace else rss_bytes
        gc.collect()
        before = read()
        made_s = 0.0
        for wave in batches(count, -(-count // waves)):
            if wave.start:
                await coord.sleep_idle()  # the previous wave goes to sleep
                await trio.sleep(settle)
            t0 = time.perf_counter()
            await make_units(coord, f"u{wave.start}-", len(wave), linked=linked)
            made_s += time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        # idle means asleep: do not wait for the periodic sweep (IDLE_SECONDS, 5-10 s)
        await coord.sleep_idle()
        await trio.testing.wait_all_tasks_blocked()
        waited = await settled(read, settle, count)
        after = read()
        result: dict[str, Any] = {
            "units": count, "linked": linked, "waves": waves,
            "method": "tracemalloc" if trace else "rss",
            "bytes_per_unit": round((after - before) / count, 1),
            "make_s": round(made_s, 3), "settled_s": round(waited, 2),
        }
        if trace:
            result["peak_bytes_per_unit"] = round((peak - before) / count, 1)
            result["breakdown"] = allocation_sites(baseline, count, top)
            tracemalloc.stop()
        stats = await coord.statistics()
        result["actors"] = stats.actors
        result["awake"] = getattr(stats, "awake", stats.actors)  # actors may sleep when idle
    return result


def traced_bytes() -> int:
    return tracemalloc.get_traced_memory()[0]


async def settled(read: Callable[[], int], seconds: float, tolerance: int) -> float:
    """Wait until ``read()`` (after ``gc.collect()``) has stayed within ``tolerance`` bytes
    (at least 16 pages) for ``seconds``, polling 4 times per window; give up after 10 windows.
    Returns the seconds waited (0 if ``seconds`` is 0)."""
    if not seconds:
        return 0.0
    tolerance = max(tolerance, 16 * os.sysconf("SC_PAGE_SIZE"))
    t0 = time.perf_counter()
    window: deque[int] = deque(maxlen=5)
    while time.perf_counter() - t0 < 10 * seconds:
        gc.collect()
        window.append(read())
        if len(window) == window.maxlen and max(window) - min(window) <= tolerance:
            break
        await trio.sleep(seconds / 4)
    gc.collect()
    return time.perf_counter() - t0


def allocation_sites(baseline: tracemalloc.Snapshot, count: int, top: int) -> list[dict[str, Any]]:
    """Growth since ``baseline`` by (innermost line, innermost coordinator line), per unit."""
    own = tracemalloc.Filter(False, tracemalloc.__file__)
    snapshot = tracemalloc.take_snapshot().filter_traces([own])
    sites: dict[tuple[str, str], list[int]] = {}
    for diff in snapshot.compare_to(baseline, "traceback"):
        frames = list(reversed(diff.traceback))  # stored oldest first; innermost first here
        where = short(frames[0])
        via = next((short(f) for f in frames if f"{os.sep}coordinator{os.sep}" in f.filename), "")
        site = sites.setdefault((where, via), [0, 0])
        site[0] += diff.size_diff
        site[1] += diff.count_diff
    ranked = sorted(sites.items(), key=lambda item: -item[1][0])
    return [{"where": where, "via": via, "code": code_at(via or where),
             "bytes_per_unit": round(size / count, 1), "blocks_per_unit": round(blocks / count, 2)}
            for (where, via), (size, blocks) in ranked[:top]]


def short(frame: tracemalloc.Frame) -> str:
    """``dir/file.py:line``; the full path is remembered for :func:`code_at`."""
    name = f"{'/'.join(Path(frame.filename).parts[-2:])}:{frame.lineno}"
    _FILES[name] = (frame.filename, frame.lineno)
    return name


_FILES: dict[str, tuple[str, int]] = {}


def code_at(site: str) -> str:
    """The source line of a site named by :func:`short`, stripped."""
    filename, lineno = _FILES.get(site, ("", 0))
    return linecache.getline(filename, lineno).strip() if filename else ""


def idle_unit_memory_in_subprocess(count: int, **options: Any) -> dict[str, Any]:
    """:func:`idle_unit_memory` in a fresh interpreter (same Python, this repository)."""
    code = ("import json, sys; from stress.scale import idle_unit_memory; "
            "print(json.dumps(idle_unit_memory(**json.loads(sys.argv[1]))))")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    out = subprocess.run([sys.executable, "-c", code, json.dumps({"count": count, **options})],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True,
                         timeout=PHASE_TIMEOUT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_memory(config: Config, raw: dict[str, Any]) -> dict[str, Any]:
    """Four fresh interpreters: idle (registered) and linked units, RSS and tracemalloc."""
    result: dict[str, Any] = {"idle_units": config.idle_units, "memory_waves": config.waves}
    for kind, linked in (("idle", False), ("linked", True)):
        figures = {}
        for method, trace in (("rss", False), ("tracemalloc", True)):
            progress(f"memory: {config.idle_units} {kind} units, {method}")
            figures[method] = idle_unit_memory_in_subprocess(
                config.idle_units, linked=linked, trace=trace, settle=config.settle,
                waves=config.waves)
            result[f"bytes_per_{kind}_unit_{method}"] = figures[method]["bytes_per_unit"]
        traced = figures["tracemalloc"]
        result[f"bytes_per_{kind}_unit_peak_tracemalloc"] = traced["peak_bytes_per_unit"]
        result[f"{kind}_units_awake"] = traced["awake"]
        raw["memory"][kind] = figures
    goal = GOAL_BYTES_PER_IDLE_UNIT
    result["memory_goal_met"] = result["bytes_per_idle_unit_tracemalloc"] <= goal
    result["memory_goal_met_rss"] = result["bytes_per_idle_unit_rss"] <= goal
    return result


# --- command line -------------------------------------------------------------------------------


def source() -> dict[str, str]:
    """Which code was measured: the commit, and a digest of uncommitted changes to coordinator/."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout
        except OSError:
            return ""
    diff = git("diff", "HEAD", "--", "coordinator")
    return {"commit": git("rev-parse", "HEAD").strip(),
            "coordinator_diff_sha1": hashlib.sha1(diff.encode()).hexdigest() if diff else ""}


def progress(text: str) -> None:
    print(f"scale: {text}", file=sys.stderr, flush=True)


def comma_list(allowed: Sequence[str]) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
        return items
    return parse


def shape_table(result: dict[str, Any], shapes: Sequence[str]) -> None:
    print(f"{'':24} {'through want (µs per edge)':^36} {'':6} {'single wants (µs)':^19}"
          f" {'bare graph (µs/edge)':^21}")
    print(f"{'shape':8} {'edges':>7} {'build s':>7} {'first':>7} {'median':>7} {'last':>7}"
          f" {'last/1st':>8} {'GC s':>6} {'p99 1 want':>10} {'max':>8} {'first':>7} {'last':>6}"
          f" {'reordered/edge':>15}")
    for shape in shapes:
        r = {key.removeprefix(f"{shape}_"): value for key, value in result.items()}
        print(f"{shape:8} {r['edges']:>7,} {r['build_s']:>7.2f} {r['us_per_edge_first']:>7.1f}"
              f" {r['us_per_edge_median']:>7.1f} {r['us_per_edge_last']:>7.1f}"
              f" {r['last_over_first']:>8.2f} {r['gc_s']:>6.2f}"
              f" {r['want_us_p99']:>10.1f} {r['want_us_max']:>8.0f}"
              f" {r['graph_us_per_edge_first']:>7.2f} {r['graph_us_per_edge_last']:>6.2f}"
              f" {r['graph_reordered_per_edge']:>15.2f}")


def report(result: dict[str, Any], config: Config, raw: dict[str, Any]) -> None:
    """The readable tables (stdout)."""
    shapes = [shape for shape in config.shapes if f"{shape}_edges" in result]
    if shapes:
        shape_table(result, shapes)
    if "cycle_probe_us" in result:
        r = result
        print(f"\ncycle probes on the DAG: {r['cycle_probes']} back edges, all refused, nothing"
              f" changed; µs per probe: median {r['cycle_probe_us']},"
              f" max {r['cycle_probe_us_max']}"
              f" (bare graph: median {r['cycle_probe_graph_us']},"
              f" max {r['cycle_probe_graph_us_max']})")
    if "chain_propagate_s" in result:
        print(f"completion down a {config.units:,}-unit chain: {result['chain_propagate_s']} s,"
              f" {result['chain_propagate_us_per_unit']} µs per unit")
    if "idle_units" in result:
        print(f"\nmemory per unit ({result['idle_units']:,} units in {config.waves} wave(s),"
              f" goal ≤ {GOAL_BYTES_PER_IDLE_UNIT} B idle):")
        print(f"  {'':7} {'tracemalloc':>12} {'RSS':>8} {'traced peak':>12}"
              f"  (B per unit; settled until"
              f" memory held still {config.settle:g} s)")
        for kind in ("idle", "linked"):
            print(f"  {kind:7} {result[f'bytes_per_{kind}_unit_tracemalloc']:>12.1f}"
                  f" {result[f'bytes_per_{kind}_unit_rss']:>8.1f}"
                  f" {result[f'bytes_per_{kind}_unit_peak_tracemalloc']:>12.1f}"
                  f"  ({result[f'{kind}_units_awake']:,} actors awake after settling)")
        for kind in ("idle", "linked"):
            print(f"\n  where the traced bytes of one {kind} unit are allocated:")
            print(f"  {'B/unit':>8} {'blocks':>6}  {'innermost line':34}"
                  f" {'coordinator line':26} code")
            for site in raw["memory"][kind]["tracemalloc"]["breakdown"]:
                print(f"  {site['bytes_per_unit']:>8.1f} {site['blocks_per_unit']:>6.2f}"
                      f"  {site['where'][-34:]:34} {site['via']:26} {site['code'][:60]}")
    print()
    for key in ("per_edge_goal_met", "memory_goal_met", "memory_goal_met_rss"):
        if key in result:
            print(f"{key:40} {result[key]}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stress scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--units", type=int, help="units per shape and in the chain (10,000)")
    parser.add_argument("--edges", type=int, help="edges of the random DAG (50,000)")
    parser.add_argument("--shapes", type=comma_list(SHAPES), default=SHAPES,
                        help="chain,fanout,fanin,dag")
    parser.add_argument("--parts", type=comma_list(PARTS), default=PARTS,
                        help="build,propagate,memory")
    parser.add_argument("--batch", type=int, help="wants per timed batch (1,000)")
    parser.add_argument("--probes", type=int, help="back edges tried on the finished DAG (100)")
    parser.add_argument("--idle-units", type=int, help="units for the memory measurement (10,000)")
    parser.add_argument("--settle", type=float,
                        help=f"seconds memory must hold still before it is read"
                        f" ({SETTLE_SECONDS:g}; quick: 0)")
    parser.add_argument("--memory-waves", type=int, default=1,
                        help="make the idle units in this many waves, --settle apart (1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--history", type=int, default=DEFAULT_HISTORY,
                        help="events the coordinator building the shapes keeps (0: none)")
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds (smoke test)")
    parser.add_argument("--json", action="store_true", help="print only one JSON object")
    parser.add_argument("--raw", type=Path, help="write the curves and breakdowns here (JSON)")
    args = parser.parse_args(argv)
    size = (500, 2000, 100, 20, 500) if args.quick else (10_000, 50_000, 1000, 100, 10_000)
    config = Config(
        units=args.units or size[0], edges=args.edges or size[1],
        shapes=args.shapes, parts=args.parts,
        batch=args.batch or size[2], probes=size[3] if args.probes is None else args.probes,
        idle_units=args.idle_units or size[4], seed=args.seed,
        settle=(0.0 if args.quick else SETTLE_SECONDS) if args.settle is None else args.settle,
        waves=max(1, args.memory_waves), history=args.history,
    )
    if config.units < 2:
        parser.error("--units must be at least 2")
    raw: dict[str, Any] = {"config": asdict(config), "source": source(), "curves": {}, "memory": {}}
    result: dict[str, Any] = {"units": config.units, "edges": config.edges}
    result |= trio.run(run_in_trio, config, raw)
    if "memory" in config.parts:
        result |= measure_memory(config, raw)
    if "dag_us_per_edge_last" in result:
        result["per_edge_goal_met"] = result["dag_us_per_edge_last"] < GOAL_US_PER_EDGE
    raw["result"] = result
    if args.raw:
        args.raw.write_text(json.dumps(raw, indent=1) + "\n")
    if not args.json:
        report(result, config, raw)
    print(json.dumps(result))
    return 0

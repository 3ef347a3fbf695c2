"""``unitsync up`` on a random DAG of ``sleep`` units: wall time against the critical path,
and the scheduling delay from a dependency's completion to its dependent's process start.

Per round, on a fresh ``unitsync serve --no-state`` (socket in a short /tmp dir, SIGTERM at the
end):

* a random DAG (seeded; ``--seed S`` + the round): ``--units N`` units ``u000..``, ``--edges E``
  edges drawn uniformly among the pairs ``(i, j)``, ``i < j``, unit ``j`` after unit ``i``
  (default ``E = 2.5 N``: about 12 levels at 200 units). Its depth (the units on its longest
  chain) is printed; the theoretical critical path is depth x ``--sleep``;
* a ``unitsync.toml`` whose every unit runs ``stamp starts/NAME ends/NAME 0.1``: ``stress/stamp.c``,
  compiled by the harness (static if it can), writes the wall clock (µs) to its first file as
  soon as it runs, sleeps, writes the clock to its second file. It starts as fast as ``sleep``
  itself, so its "process start" is late only by an exec. Without a C compiler, or with
  ``--bash-stamps`` (the only way until 2026-12-06),
  ``["bash", "-c", "echo $EPOCHREALTIME > starts/NAME; sleep 0.1; echo $EPOCHREALTIME > ends/NAME"]``
  does the same (``$EPOCHREALTIME`` is a bash builtin: no fork for the stamp), but its stamp
  comes after bash has started: the delays are longer by a bash start (stress/README.md),
  spent on the same two cores as up's launches;
* ``unitsync up`` is launched as a real subprocess (the console script next to this Python;
  ``--compare``: ``python -m cli`` from each checkout) against the server, its output to a
  file, and timed from just before the spawn to its exit (seen through a pidfd);
* the coordinator's history (``coordinator.connect``, ``history()`` pages) gives each unit's
  ``started`` (the hold ``up`` takes) and ``completed`` events, wall-clock ``time``.

Figures per round: ``wall_s``; ``critical_s`` = depth x sleep; ``measured_critical_s`` = the
longest chain of the units' measured durations in this run (start stamp to ``completed``
event), so ``wall_over_measured`` is what scheduling (and up's startup) adds to what the
commands themselves took; ``wall_over_critical`` (the goal: <= 1.15). ``delay_*_ms``: for
every unit with dependencies, its start stamp minus the ``completed`` event of its
last-completing dependency (p50, p99, max); split into ``hold_*`` (that completion to the
unit's ``started`` event: the wake-up pushed to up and up's hold round trip) and ``launch_*``
(``started`` event to the start stamp: up's launch, the fork/exec of bash, bash's start). ``lag_*_ms``:
a unit's end stamp to its ``completed`` event (up seeing the exit, its output pumps closing,
the lease's ``complete``). ``startup_ms``: up's spawn to the first start stamp (the ratio
includes it), of which ``apply_ms``: spawn to the coordinator's first event (interpreter,
imports, connect, the apply), and ``first_hold_ms``: the apply to the first ``started``
event; ``sources_spread_ms``: the first to the last start stamp of the units without
dependencies, all ready at once (``per_source_launch_ms`` apart: up's serial cost per launch).
``up_cpu_s`` / ``server_cpu_s``: their own CPU during the run (``/proc``). ``chain_*``: the
wall time along the chain that finished last (:func:`chain_figures`). ``exit_ms``: the last
``completed`` event to up's exit. ``span_over_critical``: the first start stamp to the last
``completed`` event over the critical path (the ratio without up's startup and exit).
The report gives medians over rounds (and ranges), the delays pooled over all rounds, and
those delays fitted against the launches queued ahead of each (:func:`queue_fit`).
``--py-spy FILE`` adds one unmeasured round with up under py-spy and prints where its main
thread spent the run (:func:`profile_main_thread`).

Beside each round, on the same seed (the order alternating), a **plain** round whose every
command is ``["sleep", T]`` itself — the issue's command, run without a shell — gives
``plain_wall_over_critical`` (and ``plain_span_over_critical``: the first ``started`` event to
the last ``completed``). The wall goal is judged on the plain rounds (the issue's command; the
compiled stamper costs about what ``sleep`` does, bash's stamps a bash start per level more);
the delays come from the stamped ones.
``--no-plain`` skips them.

Goals (the issue): wall <= 1.15 x the critical path (of ``sleep`` commands); delay p99 <= 10 ms.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from ._cxx import BuildError, cached
from ._stats import percentile
from .rpc import stop

#: The issue's goals.
RATIO_GOAL = 1.15
DELAY_P99_GOAL_MS = 10.0

QUICK_UNITS = 30
QUICK_ROUNDS = 1

Graph = dict[str, list[str]]  # unit -> the units it runs after


def random_dag(units: int, edges: int, rng: random.Random) -> Graph:
    """``units`` units; ``edges`` distinct pairs ``i < j`` drawn uniformly, ``u{j}`` after
    ``u{i}`` (at most every pair)."""
    names = [f"u{i:03d}" for i in range(units)]
    pairs = units * (units - 1) // 2
    graph: Graph = {name: [] for name in names}
    for k in rng.sample(range(pairs), min(edges, pairs)):
        # k-th pair in the order (0,1), (0,2), (1,2), (0,3), ...: j is the largest with
        # j (j - 1) / 2 <= k
        j = int(((8 * k + 1) ** 0.5 + 1) / 2)
        while j * (j - 1) // 2 > k:
            j -= 1
        while (j + 1) * j // 2 <= k:
            j += 1
        i = k - j * (j - 1) // 2
        graph[names[j]].append(names[i])
    for deps in graph.values():
        deps.sort()
    return graph


def longest_chain(graph: Graph, weight: dict[str, float]) -> float:
    """The largest sum of ``weight`` along a chain of ``graph`` (a DAG)."""
    best: dict[str, float] = {}
    for unit in _topological(graph):
        best[unit] = weight[unit] + max((best[d] for d in graph[unit]), default=0.0)
    return max(best.values(), default=0.0)


def _topological(graph: Graph) -> list[str]:
    """``graph``'s units, each after the units it runs after."""
    order: list[str] = []
    seen: set[str] = set()
    for root in graph:
        stack = [(root, False)]
        while stack:
            unit, expanded = stack.pop()
            if expanded:
                order.append(unit)
            elif unit not in seen:
                seen.add(unit)
                stack.append((unit, True))
                stack.extend((d, False) for d in graph[unit] if d not in seen)
    return order


@functools.cache
def stamper() -> Path | None:
    """``stress/stamp.c`` compiled (static if the toolchain can; kept per content:
    :func:`stress._cxx.cached`), once per process; None without a C compiler (the stamps then
    come from ``bash``)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None

    def compile_c(source: Path, directory: Path) -> Path:
        binary = directory / source.stem
        for static in (["-static"], []):
            done = subprocess.run([cc, "-O2", *static, "-o", str(binary), str(source)],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:
                return binary
        raise BuildError(f"{cc} {source} failed:\n{done.stderr}")

    try:
        return cached(Path(__file__).with_name("stamp.c"), compile_c)
    except BuildError as error:
        print(f"stress up: no stamper ({error}): the stamps come from bash", file=sys.stderr)
        return None


def write_workspace(
    directory: Path, graph: Graph, sleep: float, plain: bool = False, bash: bool = False,
) -> Path:
    """``unitsync.toml`` in ``directory``: each unit stamps its start and end around the sleep
    (see the module docstring), in ``starts/`` and ``ends/`` — with :func:`stamper`, or with
    ``bash`` if asked or if there is no stamper; ``plain``: each unit is ``["sleep", T]``
    itself, the issue's command, and stamps nothing."""
    (directory / "starts").mkdir()
    (directory / "ends").mkdir()
    stamp = None if bash else stamper()
    lines: list[str] = []
    for unit, deps in graph.items():
        script = (f"echo $EPOCHREALTIME > {directory}/starts/{unit}; sleep {sleep:g}; "
                  f"echo $EPOCHREALTIME > {directory}/ends/{unit}")
        command = (["sleep", f"{sleep:g}"] if plain
                   else [str(stamp), f"{directory}/starts/{unit}", f"{directory}/ends/{unit}",
                         f"{sleep:g}"] if stamp is not None
                   else ["bash", "-c", script])
        lines.append(f"[units.{unit}]")
        lines.append(f"run = {json.dumps(command)}")
        if deps:
            lines.append(f"after = {json.dumps(deps)}")
    path = directory / "unitsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def compile_checkout(root: Path) -> None:
    """Byte-compile ``root``'s ``cli``, ``coordinator`` and ``stress`` packages (quietly; what
    is current is left alone), as a wheel install does: with ``PYTHONDONTWRITEBYTECODE`` set
    (as on the machine these figures come from) an editable checkout would otherwise be
    compiled anew by every ``up`` (30-40 ms of its startup)."""
    import compileall

    for package in ("cli", "coordinator", "stress"):
        compileall.compile_dir(root / package, quiet=2)


def unitsync_command() -> list[str]:
    """The console script installed next to this interpreter (what a user runs), else
    ``python -m cli``."""
    script = Path(sys.executable).parent / "unitsync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


@dataclass
class Round:
    """One round's raw measurements (wall-clock seconds since the epoch unless named)."""

    graph: Graph
    depth: int
    sleep: float
    launched: float  # time.time() just before up's spawn
    wall_s: float  # monotonic, spawn to exit
    returncode: int
    plain: bool = False  # the commands were `sleep T` itself: no stamps
    starts: dict[str, float] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # `started` events
    completed: dict[str, float] = field(default_factory=dict)  # `completed` events
    first_event: float = 0.0
    output_tail: str = ""
    up_cpu_s: float = float("nan")  # up's own user + system CPU (not its commands')
    server_cpu_s: float = float("nan")  # the server's, from up's spawn to its exit


def process_cpu(pid: int) -> float:
    """``pid``'s own user + system CPU seconds so far (``/proc``, 10 ms ticks; also readable
    while it is a zombie)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """Reads a process's own CPU time every 10 ms in a thread, keeping the last reading: the
    figure just before it is reaped."""

    def __init__(self, pid: int) -> None:
        self.last = float("nan")
        self._stop = threading.Event()
        self._pid = pid
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = process_cpu(self._pid)
            except (OSError, IndexError, ValueError):
                return
            self._stop.wait(0.01)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.last


async def read_history(path: Path) -> tuple[dict[str, float], dict[str, float], float]:
    """Every kept event, page by page: each unit's ``started`` and ``completed`` times, and the
    first event's."""
    from coordinator import Status, connect

    started: dict[str, float] = {}
    completed: dict[str, float] = {}
    first = 0.0
    async with connect(path) as coord:
        after = 0
        while True:
            page = await coord.history(after=after)
            for event in page.events:
                first = first or event.time
                if event.is_edge:
                    continue
                if event.new is Status.STARTED:
                    started[event.unit] = event.time
                elif event.new is Status.COMPLETED:
                    completed[event.unit] = event.time
            if not page.more or not page.events:
                return started, completed, first
            after = page.events[-1].seq


def exited_within(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until ``process`` has exited (not reaped), at most ``timeout`` s: woken by its
    pidfd the moment it exits. (``Popen.wait(timeout=...)`` polls, sleeping up to 50 ms
    between looks: the exit would be seen up to 50 ms late.)"""
    import select

    pidfd = os.pidfd_open(process.pid)
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


def run_round(
    units: int, edges: int, seed: int, sleep: float, timeout: float, wrap: list[str] | None = None,
    checkout: Path | None = None, plain: bool = False, server_too: bool = False,
    bash: bool = False,
) -> Round:
    """One DAG run by ``unitsync up`` on a fresh server; server and up stopped whatever
    happens. ``wrap``: a command that runs up (py-spy). ``checkout``: up is ``python -m cli``
    with that directory first on ``PYTHONPATH`` (its ``cli`` and ``coordinator``; the server is
    this checkout's, or with ``server_too`` that one's too, run the same way). ``plain``: the
    commands are ``sleep T``; ``bash``: the stamps come from bash (:func:`write_workspace`)."""
    import trio

    from .rpc import start
    from .wakeup import drain

    graph = random_dag(units, edges, random.Random(seed))
    depth = int(longest_chain(graph, dict.fromkeys(graph, 1.0)))
    workdir = Path(tempfile.mkdtemp(prefix="us-", dir="/tmp"))  # a socket path is <= 107 bytes
    path = workdir / "s.sock"
    env = {**os.environ, "UNITSYNC_SOCKET": str(path), "LC_ALL": "C"}
    unitsync = unitsync_command()
    server_command, server_env = unitsync, env
    if checkout is not None and server_too:
        server_command = [sys.executable, "-m", "cli"]
        # (PYTHONSAFEPATH: not the current directory first, which is the running checkout)
        server_env = {**env, "PYTHONPATH": str(checkout), "PYTHONSAFEPATH": "1"}
    server = start([*server_command, "serve", "--socket", str(path), "--no-state"], server_env,
                   "serving on")
    server_tail: deque[str] = deque(maxlen=20)
    assert server.stderr is not None
    drain(server.stderr, server_tail)
    up: subprocess.Popen[bytes] | None = None
    try:
        toml = write_workspace(workdir, graph, sleep, plain, bash)
        with open(workdir / "up.out", "wb") as out:
            server_cpu = process_cpu(server.pid)
            launched = time.time()
            t0 = time.monotonic()
            up_command, up_env = unitsync, env
            if checkout is not None:
                up_command = [sys.executable, "-m", "cli"]
                up_env = {**env, "PYTHONPATH": str(checkout)}
            up = subprocess.Popen([*(wrap or []), *up_command, "up", "-f", str(toml), "--socket", str(path)],
                                  cwd=workdir, env=up_env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT)
            cpu = CpuWatch(up.pid)
            if not exited_within(up, timeout):
                raise RuntimeError(f"up: not done within {timeout} s; server stderr: "
                                   f"{''.join(server_tail)!r}")
            wall = time.monotonic() - t0
            returncode = up.wait()
            server_cpu = process_cpu(server.pid) - server_cpu
        result = Round(graph, depth, sleep, launched, wall, returncode, plain)
        result.up_cpu_s, result.server_cpu_s = cpu.stop(), server_cpu
        result.output_tail = (workdir / "up.out").read_text(errors="replace")[-2000:]
        for kind, stamps in (("starts", result.starts), ("ends", result.ends)):
            for stamp in (workdir / kind).iterdir():
                text = stamp.read_text().strip()
                if text:
                    stamps[stamp.name] = float(text)
        result.started, result.completed, result.first_event = trio.run(read_history, path)
        return result
    finally:
        if up is not None and up.poll() is None:
            up.kill()
            up.wait(timeout=10)
        stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


def _spread(values: list[float]) -> dict[str, float]:
    """p50, p99, max (ms) of ``values`` (seconds); NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        nan = float("nan")
        return {"p50": nan, "p99": nan, "max": nan}
    return {"p50": round(percentile(ordered, 0.50) * 1e3, 3),
            "p99": round(percentile(ordered, 0.99) * 1e3, 3),
            "max": round(ordered[-1] * 1e3, 3)}


def samples(run: Round) -> dict[str, list[float]]:
    """Per-unit intervals (seconds) of one round: ``delay``, ``hold``, ``launch`` (units with
    dependencies, every dependency and the unit measured), ``lag`` (every unit measured)."""
    out: dict[str, list[float]] = {"delay": [], "hold": [], "launch": [], "lag": []}
    for unit, deps in run.graph.items():
        if unit in run.ends and unit in run.completed:
            out["lag"].append(run.completed[unit] - run.ends[unit])
        if not deps or unit not in run.starts or not all(d in run.completed for d in deps):
            continue
        released = max(run.completed[d] for d in deps)
        out["delay"].append(run.starts[unit] - released)
        if unit in run.started:
            out["hold"].append(run.started[unit] - released)
            out["launch"].append(run.starts[unit] - run.started[unit])
    return out


def realized_chain(run: Round) -> list[str]:
    """The chain that decided the wall time: from the unit completed last, back through the
    dependency that completed last each time, to a unit without dependencies (first first)."""
    if not run.completed:
        return []
    unit = max(run.completed, key=run.completed.__getitem__)
    chain = [unit]
    while run.graph[unit] and all(d in run.completed for d in run.graph[unit]):
        unit = max(run.graph[unit], key=run.completed.__getitem__)
        chain.append(unit)
    return chain[::-1]


def chain_figures(run: Round) -> dict[str, float]:
    """The wall time along :func:`realized_chain`, exactly: ``chain_startup_ms`` (spawn to its
    first command's start stamp) + ``chain_run_ms`` (its units' start stamps to their
    ``completed`` events; ``chain_sleep_ms`` of it asleep) + ``chain_delay_ms`` (each
    completion to the next unit's start stamp) + ``exit_ms``."""
    chain = realized_chain(run)
    if not chain or not all(u in run.starts for u in chain):
        return {}
    run_s = sum(run.completed[u] - run.starts[u] for u in chain)
    delay_s = sum(run.starts[b] - run.completed[a] for a, b in pairwise(chain))
    return {
        "chain_units": len(chain),
        "chain_startup_ms": round((run.starts[chain[0]] - run.launched) * 1e3, 1),
        "chain_run_ms": round(run_s * 1e3, 1),
        "chain_sleep_ms": round(len(chain) * run.sleep * 1e3, 1),
        "chain_delay_ms": round(delay_s * 1e3, 1),
    }


def queue_fit(runs: list[Round]) -> dict[str, float]:
    """Each delay against the launches queued ahead of it (other units' start stamps between
    its dependency's completion and its own): least squares ``delay = alone + per_launch x
    ahead``, and their correlation. up starts commands one at a time, so a unit released
    together with others waits for their launches."""
    xs: list[float] = []
    ys: list[float] = []
    for run in runs:
        stamps = sorted(run.starts.values())
        for unit, deps in run.graph.items():
            if not deps or unit not in run.starts or not all(d in run.completed for d in deps):
                continue
            released, start = max(run.completed[d] for d in deps), run.starts[unit]
            xs.append(sum(released < t < start for t in stamps))
            ys.append((start - released) * 1e3)
    if len(xs) < 3 or len(set(xs)) < 2:
        return {}
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {"delay_alone_ms": round(my - slope * mx, 2), "delay_per_launch_ahead_ms": round(slope, 2),
            "delay_ahead_r": round(statistics.correlation(xs, ys), 2),
            "launches_ahead_max": max(xs)}


def figures(run: Round) -> dict[str, Any]:
    """One round's figures (see the module docstring)."""
    graph = run.graph
    measured = {u: run.completed[u] - run.starts[u] for u in graph
                if u in run.starts and u in run.completed}
    complete = len(measured) == len(graph)
    critical = run.depth * run.sleep
    measured_critical = longest_chain(graph, measured) if complete else float("nan")
    result: dict[str, Any] = {
        "units": len(graph),
        "edges": sum(len(d) for d in graph.values()),
        "depth": run.depth,
        "sources": sum(not d for d in graph.values()),
        "completed": len(run.completed),
        "started_commands": len(run.starts),
        "returncode": run.returncode,
        "wall_s": round(run.wall_s, 4),
        "critical_s": round(critical, 4),
        "measured_critical_s": round(measured_critical, 4),
        "wall_over_critical": round(run.wall_s / critical, 4),
        "wall_over_measured": round(run.wall_s / measured_critical, 4),
        # the first command's start to the last completion: the ratio without up's startup
        # and exit
        "span_over_critical": round((max(run.completed.values()) - min(run.starts.values()))
                                    / critical, 4) if complete else float("nan"),
        "unit_duration_p50_ms": _spread(list(measured.values()))["p50"],
        "startup_ms": round((min(run.starts.values()) - run.launched) * 1e3, 1)
        if run.starts else float("nan"),
        "apply_ms": round((run.first_event - run.launched) * 1e3, 1),
        "exit_ms": round((run.launched + run.wall_s - max(run.completed.values())) * 1e3, 1)
        if run.completed else float("nan"),
    }
    sources = sorted(run.starts[u] for u, d in graph.items() if not d and u in run.starts)
    result["first_hold_ms"] = round((min(run.started.values()) - run.first_event) * 1e3, 1) \
        if run.started else float("nan")
    result["sources_spread_ms"] = round((sources[-1] - sources[0]) * 1e3, 1) if sources else 0.0
    result["per_source_launch_ms"] = round(result["sources_spread_ms"] / (len(sources) - 1), 2) \
        if len(sources) > 1 else float("nan")
    result["up_cpu_s"] = round(run.up_cpu_s, 2)
    result["server_cpu_s"] = round(run.server_cpu_s, 2)
    result.update(chain_figures(run))
    intervals = samples(run)
    result["constrained_starts"] = len(intervals["delay"])
    for name, values in intervals.items():
        for key, value in _spread(values).items():
            result[f"{name}_{key}_ms"] = value
    result["delay_min_ms"] = round(min(intervals["delay"]) * 1e3, 3) if intervals["delay"] else 0.0
    return result


def plain_figures(run: Round) -> dict[str, Any]:
    """A round of ``sleep T`` commands (``plain``): its wall time against the critical path,
    and, from the coordinator's events alone, the first hold to the last completion over it."""
    critical = run.depth * run.sleep
    complete = len(run.completed) == len(run.graph)
    return {
        "plain_wall_s": round(run.wall_s, 4),
        "plain_wall_over_critical": round(run.wall_s / critical, 4),
        "plain_span_over_critical": round(
            (max(run.completed.values()) - min(run.started.values())) / critical, 4
        ) if complete and run.started else float("nan"),
        "plain_apply_ms": round((run.first_event - run.launched) * 1e3, 1),
        "plain_completed": len(run.completed),
        "plain_returncode": run.returncode,
    }


def summarize_plain(rounds: list[Round]) -> dict[str, Any]:
    """Medians (and the ratio's range) over the ``plain`` rounds."""
    per_round = [plain_figures(run) for run in rounds]
    result: dict[str, Any] = {k: round(statistics.median(r[k] for r in per_round), 4)
                              for k in per_round[0]}
    values = [r["plain_wall_over_critical"] for r in per_round]
    result["plain_wall_over_critical_range"] = [min(values), max(values)]
    result["plain_all_completed"] = all(
        r["plain_completed"] == len(run.graph) and r["plain_returncode"] == 0
        for r, run in zip(per_round, rounds)
    )
    result["plain_rounds"] = len(rounds)
    return result


def add_plain(summary: dict[str, Any], rounds: list[Round]) -> None:
    """The ``plain`` rounds' figures into ``summary``: the wall goal is judged on them (the
    issue's commands), and every unit of them must have completed too."""
    if not rounds:
        return
    summary.update(summarize_plain(rounds))
    summary["ratio_goal_met"] = summary["plain_wall_over_critical"] <= RATIO_GOAL
    summary["all_completed"] = summary["all_completed"] and summary["plain_all_completed"]


def summarize(rounds: list[Round], per_round: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of every numeric figure (``*_range``: min and max for the
    headlines), and the delays pooled over all rounds."""
    keys = [k for k, v in per_round[0].items() if isinstance(v, (int, float))]
    result: dict[str, Any] = {k: round(statistics.median(r[k] for r in per_round), 4)
                              for k in keys}
    for key in ("wall_s", "wall_over_critical", "wall_over_measured", "span_over_critical",
                "delay_p99_ms",
                "delay_max_ms", "startup_ms", "depth"):
        values = [r[key] for r in per_round]
        result[f"{key}_range"] = [min(values), max(values)]
    pooled: dict[str, list[float]] = {}
    for run in rounds:
        for name, values in samples(run).items():
            pooled.setdefault(name, []).extend(values)
    for name, values in pooled.items():
        for key, value in _spread(values).items():
            result[f"pooled_{name}_{key}_ms"] = value
    result.update(queue_fit(rounds))
    result["rounds"] = len(rounds)
    result["all_completed"] = all(r["completed"] == r["units"] and r["returncode"] == 0
                                  for r in per_round)
    result["ratio_goal_met"] = result["wall_over_critical"] <= RATIO_GOAL
    result["delay_goal_met"] = result["delay_p99_ms"] <= DELAY_P99_GOAL_MS
    return result


#: What ``up`` imports before it can send its apply, for :class:`Floor`: its modules and
#: those it imports lazily on the way (the client, which brings capnp; the display; the
#: in-process coordinator's starter, which does not bring Trio): every module a real ``up``
#: against a running server imports (PYTHONPROFILEIMPORTTIME, 2026-12-06). A plain ``up`` line
#: imports no cyclopts since then (``cli/_main.py``); until then this list began with
#: ``cli._app``.
UP_IMPORTS = ("import cli, cli._up_run, cli._display, cli._autostart, cli._inprocess, "
              "coordinator.rpc._client, coordinator.rpc._socket")


def up_imports(checkout: Path | None) -> str:
    """:data:`UP_IMPORTS` as ``checkout``'s ``stress/up.py`` has it (None: this one's), so that
    ``--compare`` measures each checkout's own floor."""
    if checkout is None:
        return UP_IMPORTS
    import ast

    tree = ast.parse((checkout / "stress" / "up.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "UP_IMPORTS" for t in node.targets):
            return str(ast.literal_eval(node.value))
    raise RuntimeError(f"no UP_IMPORTS in {checkout}/stress/up.py")


class Floor:
    """Spawn to exit (seen through a pidfd) of ``python -c pass`` (``python_ms``: the
    interpreter alone, with this venv's site), of a python that only imports what ``up``
    imports (``imports_ms``: the checkout's own :data:`UP_IMPORTS`, :func:`up_imports`) and
    ends with ``os._exit`` as ``up`` does —
    what any ``up`` written on this stack pays before its first call, whatever it then does —,
    and of ``sleep T`` alone (``sleep_ms``: what each level of the critical path costs with no
    scheduling at all: the exec, the timer, the exit and its wake-up on this machine); per
    checkout (None: this one). :meth:`sample` between rounds, so that the medians come from the
    same stretch of time as the rounds (this host's speed changes by half within minutes)."""

    def __init__(self, *checkouts: Path | None, sleep: float = 0.1) -> None:
        self._checkouts = checkouts
        self._programs = [
            (("python_ms", [sys.executable, "-c", "pass"]),
             ("imports_ms",
              [sys.executable, "-c", f"{up_imports(checkout)}; import os; os._exit(0)"]),
             ("sleep_ms", ["sleep", f"{sleep:g}"]))
            for checkout in checkouts
        ]
        self._spent: list[dict[str, list[float]]] = [
            {name: [] for name, _ in programs} for programs in self._programs
        ]

    def sample(self, runs: int = 3) -> None:
        """``runs`` more of each program for each checkout, interleaved."""
        for _ in range(runs):
            for checkout, programs, spent in zip(self._checkouts, self._programs, self._spent):
                env = {**os.environ}
                if checkout is not None:  # (safe path: not the current directory first)
                    env.update(PYTHONPATH=str(checkout), PYTHONSAFEPATH="1")
                for name, argv in programs:
                    t0 = time.monotonic()
                    process = subprocess.Popen(argv, env=env)
                    exited_within(process, 60.0)
                    spent[name].append(time.monotonic() - t0)
                    if process.wait() != 0:
                        raise RuntimeError(f"floor: {argv} exited {process.returncode}")

    def medians(self) -> list[dict[str, float]]:
        """Per checkout, each program's median, ms (and how many samples: ``floor_samples``)."""
        return [{**{name: round(statistics.median(values) * 1e3, 1)
                    for name, values in spent.items()},
                 "floor_samples": len(spent["python_ms"])}
                for spent in self._spent]


def add_floor(summary: dict[str, Any], floor: dict[str, float], sleep: float) -> None:
    """``floor`` (:meth:`Floor.medians`) into ``summary``, and the wall time no ``up`` on this
    stack and machine could beat: the imports, then a chain of ``depth`` commands each started
    the moment the one before exits (``floor_over_critical``); and what the plain rounds' up
    spent beyond it, in all and per level (``beyond_floor_ms``, ``beyond_floor_per_level_ms``:
    the file, the connection, the apply, the holds, the launches, the exit)."""
    summary.update(floor)
    depth = summary["depth"]
    critical_ms = depth * sleep * 1e3
    floor_ms = floor["imports_ms"] + depth * floor["sleep_ms"]
    summary["floor_over_critical"] = round(floor_ms / critical_ms, 4)
    if "plain_wall_over_critical" in summary:
        beyond = summary["plain_wall_over_critical"] * critical_ms - floor_ms
        summary["beyond_floor_ms"] = round(beyond, 1)
        summary["beyond_floor_per_level_ms"] = round(beyond / depth, 2)


def print_floor(summary: dict[str, Any]) -> None:
    s = summary
    print(f"floor (spawn to exit, medians of {s['floor_samples']:g} between the rounds): python -c pass {s['python_ms']:.1f} ms; a python"
          f" importing what up imports {s['imports_ms']:.1f} ms; the command alone"
          f" {s['sleep_ms']:.1f} ms; so imports + depth {s['depth']:g} x the command ="
          f" {s['floor_over_critical']:.3f} x the critical path before any scheduling")
    if "beyond_floor_ms" in s:
        print(f"  the plain rounds' up beyond that floor: {s['beyond_floor_ms']:.1f} ms"
              f" ({s['beyond_floor_per_level_ms']:.2f} ms per level of the critical path)")


def print_report(per_round: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print(f"{'round':>5} {'depth':>5} {'wall s':>7} {'crit s':>7} {'meas s':>7} {'/crit':>6}"
          f" {'/meas':>6} {'startup':>8} {'apply':>7} {'exit':>6} {'delay p50':>9} {'p99':>7}"
          f" {'max':>7} {'hold p50':>8} {'launch p50':>10} {'lag p50':>8} {'done':>7}")
    for k, r in enumerate(per_round):
        print(f"{k:5} {r['depth']:5} {r['wall_s']:7.3f} {r['critical_s']:7.3f}"
              f" {r['measured_critical_s']:7.3f} {r['wall_over_critical']:6.3f}"
              f" {r['wall_over_measured']:6.3f} {r['startup_ms']:8.1f} {r['apply_ms']:7.1f}"
              f" {r['exit_ms']:6.1f} {r['delay_p50_ms']:9.2f} {r['delay_p99_ms']:7.2f}"
              f" {r['delay_max_ms']:7.2f} {r['hold_p50_ms']:8.2f} {r['launch_p50_ms']:10.2f}"
              f" {r['lag_p50_ms']:8.2f} {r['completed']:3}/{r['units']:<3}")
    s = summary
    print(f"medians of {s['rounds']} rounds ({s['units']:g} units, {s['edges']:g} edges, "
          f"depth {s['depth']:g}, {s['constrained_starts']:g} starts after a dependency):")
    print(f"  wall {s['wall_s']:.3f} s (range {s['wall_s_range'][0]:.3f}-{s['wall_s_range'][1]:.3f});"
          f" critical path {s['critical_s']:.3f} s theoretical, {s['measured_critical_s']:.3f} s"
          f" measured")
    print(f"  wall / critical: {s['wall_over_critical']:.3f} theoretical (range "
          f"{s['wall_over_critical_range'][0]:.3f}-{s['wall_over_critical_range'][1]:.3f}),"
          f" {s['wall_over_measured']:.3f} measured; first command's start to last completion"
          f" / critical {s['span_over_critical']:.3f} (range {s['span_over_critical_range'][0]:.3f}-"
          f"{s['span_over_critical_range'][1]:.3f})")
    print(f"  up's startup (spawn to first command) {s['startup_ms']:.1f} ms, of which spawn to"
          f" apply {s['apply_ms']:.1f} ms; last completion to up's exit {s['exit_ms']:.1f} ms")
    print(f"    after the apply: first hold {s['first_hold_ms']:.1f} ms; the {s['sources']:g} units"
          f" without dependencies started over {s['sources_spread_ms']:.1f} ms"
          f" ({s['per_source_launch_ms']:.2f} ms apart: up launches one at a time)")
    print(f"  scheduling delay (dependency completed -> process start), ms: p50"
          f" {s['delay_p50_ms']:.2f}, p99 {s['delay_p99_ms']:.2f} (range"
          f" {s['delay_p99_ms_range'][0]:.2f}-{s['delay_p99_ms_range'][1]:.2f}), max"
          f" {s['delay_max_ms']:.2f}; pooled: p50 {s['pooled_delay_p50_ms']:.2f}, p99"
          f" {s['pooled_delay_p99_ms']:.2f}, max {s['pooled_delay_max_ms']:.2f}")
    print(f"    of which completion -> started (the hold; in the coordinator since revision 4), p50/p99 {s['pooled_hold_p50_ms']:.2f}"
          f" / {s['pooled_hold_p99_ms']:.2f}; started -> process start (launch), p50/p99"
          f" {s['pooled_launch_p50_ms']:.2f} / {s['pooled_launch_p99_ms']:.2f}")
    if "delay_per_launch_ahead_ms" in s:
        print(f"    pooled fit: delay = {s['delay_alone_ms']:.2f} ms + "
              f"{s['delay_per_launch_ahead_ms']:.2f} ms x launches queued ahead of it (r"
              f" {s['delay_ahead_r']:.2f}; at most {s['launches_ahead_max']:g} ahead)")
    print(f"  command's end -> completed event (exit seen, pumps, complete), p50/p99"
          f" {s['pooled_lag_p50_ms']:.2f} / {s['pooled_lag_p99_ms']:.2f} ms")
    if "chain_units" in s:
        print(f"  along the chain that finished last ({s['chain_units']:g} units; medians): startup"
              f" {s['chain_startup_ms']:.0f} + running {s['chain_run_ms']:.0f} (asleep"
              f" {s['chain_sleep_ms']:.0f}) + waits between them {s['chain_delay_ms']:.0f}"
              f" + exit {s['exit_ms']:.0f} ms")
    print(f"  CPU during the run: up itself {s['up_cpu_s']:.2f} s, the server"
          f" {s['server_cpu_s']:.2f} s (of {s['wall_s']:.2f} s wall, 2 cores shared)")
    if "plain_wall_over_critical" in s:
        print(f"  commands `sleep {s['critical_s'] / s['depth']:g}` themselves (the issue's; the"
              f" same seeds, alternating): wall / critical {s['plain_wall_over_critical']:.3f}"
              f" (range {s['plain_wall_over_critical_range'][0]:.3f}-"
              f"{s['plain_wall_over_critical_range'][1]:.3f}), first hold to last completion /"
              f" critical {s['plain_span_over_critical']:.3f}; spawn to apply"
              f" {s['plain_apply_ms']:.1f} ms")
    ratio = s.get("plain_wall_over_critical", s["wall_over_critical"])
    print(f"goal wall <= {RATIO_GOAL:g} x critical path"
          f"{' (sleep commands)' if 'plain_wall_over_critical' in s else ''}: "
          f"{'met' if ratio <= RATIO_GOAL else 'NOT met'} ({ratio:.3f})")
    print(f"goal scheduling delay p99 <= {DELAY_P99_GOAL_MS:g} ms: "
          f"{'met' if s['delay_goal_met'] else 'NOT met'} ({s['delay_p99_ms']:.2f} ms)")


#: Where up's main thread is, by the first of these found on its stack (function names of
#: cli/, asyncio, subprocess, importlib), for ``--py-spy``.
PROFILE_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("imports", ("_find_and_load",)),
    ("launch: vfork+exec of the command (Popen._execute_child)", ("Popen._execute_child",)),
    ("launch: asyncio's subprocess transport (before the pidfd launch)",
     ("_make_subprocess_transport", "BaseSubprocessTransport")),
    ("launch: a waitpid thread per child (ThreadedChildWatcher.add_child_handler)",
     ("ThreadedChildWatcher.add_child_handler",)),
    ("launch: the watchdog's list (Watchdog)", ("Watchdog.",)),
    ("launch: the rest (pipes, pidfd, readers; before: transport, setpriv lookup)",
     ("launch",)),
    ("output pumps", ("pass_through",)),
    ("status lines (Display)", ("Display.",)),
    ("supervise (the lease's complete)", ("supervise", "_keep_the_hold")),
    ("start_when_ready (info, hold, ready)", ("start_when_ready",)),
    ("Up._run / _ended (info after exit)", ("Up._run", "Up._ended")),
    ("apply, workspace file", ("load_workspace", "AsyncioClient.apply", "Up.run")),
    ("command line parsing", ("App.parse_commands", "AppStack")),
    ("loop idle (epoll wait)", ("EpollSelector.select",)),
    ("asyncio loop, capnp callbacks", ("_run_once", "Handle._run")),
)


def profile_main_thread(path: Path) -> dict[str, float]:
    """Milliseconds of up's main thread per :data:`PROFILE_CATEGORIES` in a py-spy speedscope
    file (recorded with ``--idle``: waiting counts too; ``total`` is the whole)."""
    data = json.loads(path.read_text())
    frames = [f["name"] for f in data["shared"]["frames"]]
    main_thread = data["profiles"][0]  # py-spy lists the main thread first
    spent: dict[str, float] = {"total": 0.0}
    for sample, weight in zip(main_thread["samples"], main_thread["weights"]):
        names = [frames[i] for i in sample]
        where = next((label for label, keys in PROFILE_CATEGORIES
                      if any(k in n for n in names for k in keys)), "other")
        spent[where] = spent.get(where, 0.0) + weight * 1e3
        spent["total"] += weight * 1e3
    return {k: round(v, 1) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


def launch_bench(launches: int = 100, rounds: int = 5) -> None:
    """``--launch-bench``: what one detached launch costs up's event loop, four ways, each
    ``launches`` in a row of ``bash -c 'exit 0'`` (own session, stdin /dev/null, stdout and
    stderr pipes), the loop's time per launch (until the next may begin), ``rounds`` times
    interleaved: asyncio's ``create_subprocess_exec`` through ``setpriv --pdeathsig TERM`` (up
    before 2026-12-05), the same without setpriv, a plain ``Popen`` with a pidfd reader (up
    now), and that ``Popen`` in a worker thread (``run_in_executor``) awaited by the loop."""
    import asyncio
    import warnings

    command = ["bash", "-c", "exit 0"]
    setpriv = shutil.which("setpriv")

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)

    async def via_asyncio(prefix: list[str]) -> float:
        t0 = time.perf_counter()
        children = []
        for _ in range(launches):
            children.append(await asyncio.create_subprocess_exec(
                *prefix, *command, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True))
        spent = time.perf_counter() - t0
        for child in children:
            await child.communicate()
        return spent

    async def via_popen(thread: bool) -> float:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        exits = []
        for _ in range(launches):
            process = await loop.run_in_executor(None, popen) if thread else popen()
            pidfd = os.pidfd_open(process.pid)
            exited = loop.create_future()

            def reap(pidfd: int = pidfd, process: subprocess.Popen[bytes] = process,
                     exited: asyncio.Future[int] = exited) -> None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                exited.set_result(process.wait())

            loop.add_reader(pidfd, reap)
            exits.append((process, exited))
        spent = time.perf_counter() - t0
        for process, exited in exits:
            await exited
            assert process.stdout is not None and process.stderr is not None
            process.stdout.close()
            process.stderr.close()
        return spent

    async def bench() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            watcher = asyncio.PidfdChildWatcher()
            watcher.attach_loop(asyncio.get_running_loop())
            asyncio.set_child_watcher(watcher)
        ways = {"asyncio + setpriv": lambda: via_asyncio([setpriv] + ["--pdeathsig", "TERM", "--"]),
                "asyncio": lambda: via_asyncio([]), "Popen + pidfd": lambda: via_popen(False),
                "Popen in a thread": lambda: via_popen(True)}
        if setpriv is None:
            del ways["asyncio + setpriv"]
        spent: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(rounds):
            for way, run in ways.items():
                spent[way].append(await run() / launches * 1e3)
        print(f"the loop's time per launch, ms ({launches} launches x {rounds} rounds, "
              f"interleaved): median (min-max)")
        for way, values in spent.items():
            print(f"  {way:20} {statistics.median(values):6.3f} ({min(values):.3f}-"
                  f"{max(values):.3f})")

    asyncio.run(bench())


def _say_if_incomplete(run: Round, units: int) -> None:
    if run.returncode != 0 or len(run.completed) != units:
        print(f"up: exit {run.returncode}, {len(run.completed)} of {units} completed; "
              f"its output ends: {run.output_tail!r}", file=sys.stderr)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress up")
    parser.add_argument("--units", type=int, help="units in the DAG (default 200; --quick 30)")
    parser.add_argument("--edges", type=int, help="edges (default 2.5 x units)")
    parser.add_argument("--seed", type=int, default=1, help="round r uses seed S + r")
    parser.add_argument("--sleep", type=float, default=0.1, help="each command's sleep, s")
    parser.add_argument("--rounds", type=int, help=f"default 5; --quick {QUICK_ROUNDS}")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on one up run, s")
    parser.add_argument("--py-spy", type=Path, metavar="FILE",
                        help="after the measured rounds, one more (seed S, not in the figures) "
                             "with up under `py-spy record --idle --nonblocking -r 1000 -f "
                             "speedscope -o FILE`; prints where up's main thread spent it")
    parser.add_argument("--compare", type=Path, nargs="+", metavar="DIR",
                        help="run each round twice, with this checkout's up (or the first of "
                             "two DIRs') and with DIR's (a git worktree of another commit), in "
                             "alternating order; both as `python -m cli` on PYTHONPATH, against "
                             "this checkout's server; reports both and their medians side by "
                             "side")
    parser.add_argument("--compare-server", action="store_true",
                        help="with --compare, each checkout's server too (`python -m cli serve` "
                             "on PYTHONPATH), so that the coordinator's side (the apply) is "
                             "compared as well")
    parser.add_argument("--launch-bench", action="store_true",
                        help="only measure what one launch costs up's loop, four ways "
                             "(see launch_bench)")
    parser.add_argument("--no-plain", dest="plain", action="store_false",
                        help="only the stamping commands: no round of `sleep T` commands (the "
                             "issue's, for the wall figure) beside each")
    parser.add_argument("--bash-stamps", action="store_true",
                        help="stamp with bash ($EPOCHREALTIME; ~1 ms more per command start, as"
                             " until 2026-12-06) instead of the compiled stress/stamp.c")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_UNITS} units, {QUICK_ROUNDS} round (smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    units = args.units or (QUICK_UNITS if args.quick else 200)
    edges = args.edges if args.edges is not None else int(2.5 * units)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else 5)
    if units < 2 or edges < 1 or rounds < 1 or args.sleep <= 0:
        parser.error("need --units >= 2, --edges >= 1, --rounds >= 1, --sleep > 0")

    if args.launch_bench:
        launch_bench()
        return 0
    if args.compare:
        return compare(args, units, edges, rounds)
    compile_checkout(Path(__file__).resolve().parents[1])
    stamps = "bash" if args.bash_stamps or stamper() is None else "stress/stamp.c"
    print(f"stamps: {stamps}", flush=True)
    runs: list[Round] = []
    plain_runs: list[Round] = []
    per_round: list[dict[str, Any]] = []
    floor = Floor(None, sleep=args.sleep)
    for r in range(rounds):
        kinds = (False, True) if args.plain else (False,)
        for plain in kinds if r % 2 == 0 else kinds[::-1]:
            run = run_round(units, edges, args.seed + r, args.sleep, args.timeout, plain=plain,
                            bash=args.bash_stamps)
            print(f"round {r}{' (sleep commands)' if plain else ''}: seed {args.seed + r},"
                  f" {units} units, {edges} edges, depth {run.depth} (critical path"
                  f" {run.depth * args.sleep:.2f} s), wall {run.wall_s:.3f} s", flush=True)
            _say_if_incomplete(run, units)
            (plain_runs if plain else runs).append(run)
        per_round.append(figures(runs[-1]))
        floor.sample()
    summary = summarize(runs, per_round)
    add_plain(summary, plain_runs)
    print_report(per_round, summary)
    add_floor(summary, floor.medians()[0], args.sleep)
    print_floor(summary)
    profile: dict[str, float] = {}
    if args.py_spy:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        wrap = [spy, "record", "--idle", "--nonblocking", "-r", "1000", "-f", "speedscope",
                "-o", str(args.py_spy.resolve()), "--"]
        run = run_round(units, edges, args.seed, args.sleep, args.timeout, wrap,
                        bash=args.bash_stamps)
        profile = profile_main_thread(args.py_spy)
        print(f"profiled round (seed {args.seed}, py-spy {args.py_spy}): wall {run.wall_s:.3f} s;"
              f" up's main thread, ms:")
        for label, ms in profile.items():
            print(f"  {ms:8.1f} {ms / profile['total'] * 100:5.1f} %  {label}")
    if args.json:
        print(json.dumps({**summary, "sleep": args.sleep, "seed": args.seed, "stamps": stamps,
                          "profile_main_thread_ms": profile, "per_round": per_round}))
    return 0 if summary["all_completed"] else 1


#: The figures :func:`compare` puts side by side (medians over rounds).
COMPARED = (
    "plain_wall_over_critical", "plain_span_over_critical", "wall_over_critical", "span_over_critical", "startup_ms", "apply_ms", "first_hold_ms",
    "sources_spread_ms", "exit_ms", "delay_p50_ms", "delay_p99_ms", "delay_max_ms",
    "hold_p50_ms", "launch_p50_ms", "lag_p50_ms", "chain_delay_ms", "chain_run_ms", "up_cpu_s",
    "python_ms", "imports_ms", "sleep_ms", "floor_over_critical", "beyond_floor_ms",
    "beyond_floor_per_level_ms",
)


def compare(args: argparse.Namespace, units: int, edges: int, rounds: int) -> int:
    """``--compare DIR``: every seed run by both checkouts, interleaved (the order alternates
    by round, so that neither always runs on the machine the other just warmed or loaded)."""
    if len(args.compare) > 2:
        raise SystemExit("--compare takes one or two checkouts")
    this = args.compare[0] if len(args.compare) == 2 else Path(__file__).resolve().parents[1]
    checkouts = {"this": this.resolve(), "other": args.compare[-1].resolve()}
    for checkout in {Path(__file__).resolve().parents[1], *checkouts.values()}:
        compile_checkout(checkout)
    runs: dict[str, list[Round]] = {name: [] for name in checkouts}
    plain_runs: dict[str, list[Round]] = {name: [] for name in checkouts}
    floor = Floor(*checkouts.values(), sleep=args.sleep)
    for r in range(rounds):
        order = [(name, plain) for plain in ((False, True) if args.plain else (False,))
                 for name in checkouts]
        for name, plain in order if r % 2 == 0 else order[::-1]:
            run = run_round(units, edges, args.seed + r, args.sleep, args.timeout,
                            checkout=checkouts[name], plain=plain,
                            server_too=args.compare_server, bash=args.bash_stamps)
            print(f"round {r} ({name}: {checkouts[name]}){' (sleep commands)' if plain else ''}:"
                  f" seed {args.seed + r}, depth {run.depth}, wall {run.wall_s:.3f} s", flush=True)
            _say_if_incomplete(run, units)
            (plain_runs if plain else runs)[name].append(run)
        floor.sample()
    summaries: dict[str, dict[str, Any]] = {}
    floors = dict(zip(checkouts, floor.medians()))
    for name, checkout in checkouts.items():
        per_round = [figures(run) for run in runs[name]]
        summaries[name] = summarize(runs[name], per_round)
        add_plain(summaries[name], plain_runs[name])
        add_floor(summaries[name], floors[name], args.sleep)
        print(f"== {name}: {checkout}")
        print_report(per_round, summaries[name])
        print_floor(summaries[name])
    print(f"medians of {rounds} rounds each | this | other")
    for key in COMPARED:
        print(f"  {key:20} {summaries['this'].get(key, float('nan')):9.3f}"
              f" {summaries['other'].get(key, float('nan')):9.3f}")
    for key in ("plain_wall_over_critical_range", "wall_over_critical_range",
                "delay_p99_ms_range"):
        if key in summaries["this"]:
            print(f"  {key:20} {summaries['this'][key]} {summaries['other'][key]}")
    if args.json:
        print(json.dumps({name: {**summary, "checkout": str(checkouts[name])}
                          for name, summary in summaries.items()}))
    return 0 if all(s["all_completed"] for s in summaries.values()) else 1

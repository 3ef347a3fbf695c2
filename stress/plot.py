"""``python -m stress.plot`` — the PNGs in stress/README.md, from the scenarios' ``--raw`` files.

    python -m stress wakeup --sizes 1,100,1000 --raw stress/results/wakeup.json
    python -m stress scale --raw stress/results/scale.json
    python -m stress.plot                      # writes stress/results/*.png

* ``wakeup-latency.png`` — per waiter, the time from ``complete`` being sent to its ``ready()``
  resolving (the JSON's ``from_call_ms``: measured from the return, a wake-up can beat the
  complete's own reply), a cumulative distribution per number of waiters, with the 1 s polling
  baseline of the same runs.
* ``scale-per-edge.png`` — µs per ``want`` (one edge) against the number of edges already in
  the graph, per shape: through the public API and for the bare graph's cycle check.

Needs matplotlib (``pip install -e '.[stress]'``); the scenarios themselves do not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


def _cdf(values: list[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    count = len(ordered)
    return ordered, [(i + 1) / count for i in range(count)]


def plot_wakeup(raw: dict[str, Any], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    poll: list[float] = []
    for run in raw["runs"]:
        latencies = run["from_call_ms"]  # from complete() being sent: never negative
        if latencies:
            xs, ys = _cdf(latencies)
            ax.step(xs, ys, where="post", label=f"pushed, {run['waiters']:,} waiters")
        # the pollers' stamps count from complete() returning (pollers run in the first
        # round only); shift them by that round's complete() duration, to its sending
        first_complete = run["complete_ms"][0] if run["complete_ms"] else 0.0
        poll.extend(v + first_complete for v in run.get("poll_latency_ms") or [])
    if poll:
        xs, ys = _cdf(poll)
        ax.step(xs, ys, where="post", linestyle="--", color="grey",
                label="polling info() once a second (same runs)")
    ax.set_xscale("log")
    ax.set_xlabel("ms from complete() being sent to ready() resolving (log scale)")
    ax.set_ylabel("fraction of waiters woken")
    ax.set_title("unitsync wake-up latency over RPC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_scale(raw: dict[str, Any], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (api, graph) = plt.subplots(1, 2, figsize=(10, 4.2))
    for shape, curve in raw["curves"].items():
        api.plot(curve["edges"], curve["api_us_per_edge"], marker=".", label=shape)
        graph.plot(curve["edges"], curve["graph_us_per_edge"], marker=".", label=shape)
    api.set_title("per want() through the actors (µs per edge)")
    graph.set_title("the graph's cycle check alone (µs per edge)")
    for ax in (api, graph):
        ax.set_xlabel("edges in the graph")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress.plot")
    parser.add_argument("--wakeup", type=Path, default=RESULTS / "wakeup.json")
    parser.add_argument("--scale", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("stress.plot needs matplotlib: pip install -e '.[stress]'", file=sys.stderr)
        return 2
    made = 0
    for source, name, plot in ((args.wakeup, "wakeup-latency.png", plot_wakeup),
                               (args.scale, "scale-per-edge.png", plot_scale)):
        if source.exists():
            plot(json.loads(source.read_text()), args.out / name)
            print(f"wrote {args.out / name}")
            made += 1
        else:
            print(f"skipped {name}: no {source}", file=sys.stderr)
    return 0 if made else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

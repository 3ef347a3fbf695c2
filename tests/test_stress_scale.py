"""``python -m stress scale --quick`` runs and reports its figures (not how fast: that is stress/'s job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

QUICK_UNITS = 500
QUICK_EDGES = 2000


def test_scale_quick(tmp_path: Path) -> None:
    raw = tmp_path / "curves.json"
    out = subprocess.run(
        [sys.executable, "-m", "stress", "scale", "--quick", "--json", "--raw", str(raw)],
        capture_output=True, text=True, check=True, timeout=120,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])

    assert result["units"] == QUICK_UNITS and result["edges"] == QUICK_EDGES
    assert result["dag_edges"] == QUICK_EDGES
    for shape in ("chain", "fanout", "fanin"):
        assert result[f"{shape}_edges"] == QUICK_UNITS - 1, shape
    keys = [
        "dag_us_per_edge_last", "cycle_probe_us", "chain_propagate_s", "chain_propagate_us_per_unit",
        "bytes_per_idle_unit_tracemalloc", "bytes_per_idle_unit_rss",
        "bytes_per_linked_unit_tracemalloc", "bytes_per_linked_unit_rss",
    ]
    for shape in ("chain", "fanout", "fanin", "dag"):
        keys += [f"{shape}_build_s", f"{shape}_us_per_edge_first", f"{shape}_us_per_edge_last"]
    for key in keys:
        assert isinstance(result[key], (int, float)) and result[key] > 0, key
    assert result["cycle_probes"] > 0  # every probe was refused, or the run would have failed

    curves = json.loads(raw.read_text())["curves"]
    assert curves["dag"]["edges"][-1] == QUICK_EDGES
    assert len(curves["dag"]["edges"]) == len(curves["dag"]["api_us_per_edge"]) > 1

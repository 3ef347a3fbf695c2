"""``python -m stress churn --quick``: clients coming, going, giving up calls and being
SIGKILLed leave the server with exactly the state they were told about, no waiter and no extra
task or thread.

A correctness test, not a benchmark: it fails if the server loses an acknowledged mutation,
keeps a dead client's waiter, leaves a unit started whose holder has gone, or breaks an invariant
(see stress/churn.py for the checker).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
#: The harness's own findings on stderr (the server's stderr is mixed in).
FINDINGS = ("mismatch:", "invariant:", "anomaly:", "worker error:", "hung:", "... and", "logs kept")


def test_churn_quick() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "stress", "churn", "--quick", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{out.stderr[-3000:]}"
    result = json.loads(lines[-1])
    details = "\n".join(line for line in out.stderr.splitlines() if line.startswith(FINDINGS))
    assert result["mismatches"] == 0, details
    assert result["waiters_after"] == 0, details
    assert result["invariant_failures"] == 0, details
    assert (result["anomalies"], result["worker_errors"], result["hung"]) == (0, 0, 0), details
    assert result["killed"] >= 1
    assert result["acknowledged"] > 0 and result["connections"] > 0
    assert result["tasks_after"] <= result["tasks_baseline"] + result["unit_actors"]
    assert result["ok"] and out.returncode == 0, details

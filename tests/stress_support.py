"""Running a ``python -m stress`` scenario from a test and reading what it found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
#: The harness's own findings on stderr (the server's stderr is mixed in).
FINDINGS = ("mismatch:", "invariant:", "anomaly:", "worker error:", "hung:", "probe:", "... and",
            "logs kept", "the last server")


def run_scenario(*args: str, timeout: float) -> tuple[dict[str, Any], str, int]:
    """``python -m stress ARGS --json``: (its JSON figures, the findings it printed, its exit
    status)."""
    out = subprocess.run(
        [sys.executable, "-m", "stress", *args, "--json"],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{out.stderr[-3000:]}"
    details = "\n".join(line for line in out.stderr.splitlines() if line.startswith(FINDINGS))
    return json.loads(lines[-1]), details, out.returncode

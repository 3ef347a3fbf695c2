"""The benchmarks run (not how fast: that is stress/'s job) and print their JSON keys."""

from __future__ import annotations

import json
import subprocess
import sys


def run_stress(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "stress", *args, "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_chain_quick() -> None:
    result = run_stress("chain", "--units", "200")
    assert result["units"] == 200 and result["edges"] == 199
    assert result["build_s"] > 0 and result["propagate_s"] > 0


def test_rpc_quick() -> None:
    result = run_stress("rpc", "--quick")
    for key in ("ours_calls_per_s", "baseline_calls_per_s", "ping_ours_calls_per_s",
                "ping_baseline_calls_per_s", "info_ratio", "ping_ratio"):
        assert result[key] > 0, key


def test_cli_quick() -> None:
    result = run_stress("cli", "--quick")
    assert result["runs"] == 3
    for key in ("python_pass_ms", "import_capnp_ms", "help_ms", "ping_ms", "complete_ms",
                "complete_p90_ms"):
        assert result[key] > 0, key
    assert isinstance(result["complete_over_capnp_ms"], float)  # a difference; may be < 0

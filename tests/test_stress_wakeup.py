"""``stress wakeup`` runs (not how fast: that is stress/'s job) and prints its JSON keys."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from stress._cxx import missing_tools
from stress.wakeup import QUICK_POLLERS, QUICK_WAITERS

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("waiters", ["c++", "python"])
def test_wakeup_quick(waiters: str) -> None:
    # two rounds: the second is parked on the driver's go (the workers' stdin)
    out = subprocess.run(
        [sys.executable, "-m", "stress", "wakeup", "--quick", "--rounds", "2", "--json",
         "--waiter-client", waiters],
        capture_output=True, text=True, check=True, timeout=300,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    built = waiters == "c++" and not missing_tools()
    assert result["waiter_client"] == ("c++" if built else "python")
    assert result["rounds"] == 2
    assert 0 < result["server_trio_cpu_us_per_waiter"] <= result["server_cpu_us_per_waiter"]
    for key in ("waiters", "p50_ms", "p99_ms", "max_ms", "us_per_waiter", "poll_p50_ms",
                "poll_p99_ms", "negative", "clients", "pollers", "park_s"):
        assert key in result, key
    assert result["waiters"] == QUICK_WAITERS
    assert result["journal"] is True  # the default, as `unitsync serve`'s
    assert result["from_call_p50_ms"] <= result["from_call_p99_ms"] <= result["from_call_max_ms"]
    assert result["from_call_max_ms"] >= result["max_ms"]  # sent before its reply came back
    assert result["pollers"] == QUICK_POLLERS
    assert result["missing"] == 0 and result["errors"] == 0
    for key in ("p50_ms", "p99_ms", "max_ms", "us_per_waiter"):
        assert math.isfinite(result[key]), key  # latencies may be < 0 (a wake-up beat the reply)
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert math.isclose(result["us_per_waiter"], result["max_ms"] * 1e3 / QUICK_WAITERS,
                        rel_tol=1e-3, abs_tol=0.05)  # both rounded
    assert 0 < result["poll_p50_ms"] <= result["poll_p99_ms"]
    assert 0 <= result["negative"] <= 2 * QUICK_WAITERS

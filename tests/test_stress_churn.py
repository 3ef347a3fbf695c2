"""``python -m stress churn``: clients coming, going, giving up calls and being SIGKILLed leave the
server with exactly the state they were told about, no waiter and no extra task or thread.

A correctness test, not a benchmark: it fails if the server loses an acknowledged mutation,
keeps a dead client's waiter, leaves a unit started whose holder has gone, or breaks an invariant
(see stress/churn.py for the checker). The quick run is ``-m bench`` (with the other stress
scenarios' quick runs); the chaos run (hundreds of client processes, a hundred and more of them
SIGKILLed) is ``-m slow``.
"""

from __future__ import annotations

from typing import Any

import pytest

from .stress_support import run_scenario


def assert_churn_held(result: dict[str, Any], details: str, returncode: int) -> None:
    assert result["mismatches"] == 0, details
    assert result["waiters_after"] == 0, details
    assert result["invariant_failures"] == 0, details
    assert (result["anomalies"], result["worker_errors"], result["hung"]) == (0, 0, 0), details
    assert result["killed"] >= 1
    assert result["acknowledged"] > 0 and result["connections"] > 0
    assert result["tasks_after"] <= result["tasks_baseline"] + result["unit_actors"]
    assert result["ok"] and returncode == 0, details


@pytest.mark.bench
def test_churn_quick() -> None:
    result, details, returncode = run_scenario("churn", "--quick", timeout=120)
    assert result["journal"] is True  # the default, as `unitsync serve`'s
    assert_churn_held(result, details, returncode)


@pytest.mark.slow
def test_churn_chaos_hundreds_of_clients() -> None:
    """60 s, 24 slots: hundreds of worker processes come and go, over a hundred SIGKILLed."""
    result, details, returncode = run_scenario(
        "churn", "--seconds", "60", "--clients", "24", timeout=600
    )
    assert_churn_held(result, details, returncode)
    assert result["workers"] >= 300, result
    assert result["killed"] >= 100, result
    assert result["killed_mid_call"] >= 50, result
    assert result["abandoned"] >= 1000 and result["cycles_refused"] >= 100, result
    assert result["threads_after"] - result["idle_trio_threads_after"] == result["threads_baseline"]

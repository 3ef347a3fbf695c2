"""``python -m stress crash``: the churn against a real ``unitsync serve --state``, SIGKILLed
mid-churn and restarted on its journal; every acknowledged mutation is restored, nothing else
changes, and the restarted server still refuses cycles and takes new mutations.

The checker is stress/crash.py (on churn's); ``--sabotage`` proves it would notice a journal that
lost acknowledged mutations. The quick runs are ``-m bench`` (a stress scenario, 5 s each;
the default suite has tests/test_durable.py's ``kill -9`` checks); the long run (several
rounds) is ``-m slow``.
"""

from __future__ import annotations

from typing import Any

import pytest

from .stress_support import run_scenario


def assert_recovered(result: dict[str, Any], details: str, returncode: int, rounds: int) -> None:
    assert result["mismatches"] == 0, details
    assert result["invariant_failures"] == 0, details
    assert (result["anomalies"], result["worker_errors"], result["hung"]) == (0, 0, 0), details
    assert result["probe_failures"] == 0, details
    assert result["rounds"] == rounds >= 1
    assert len(result["restart_ms"]) == len(result["journal_bytes_per_round"]) == rounds
    assert result["acknowledged"] > 0 and result["calls"] >= result["acknowledged"]
    assert result["restored_units"] > 0 and result["restored_edges"] > 0
    # per round: a random path of restored edges and the last probe's edge, both refused
    assert result["cycles_refused_after_restart"] == 2 * rounds, details
    assert result["journal_bytes"] > 0 and 0 < result["restart_ms_max"] < 60_000
    assert result["final_exit"] == 0, details
    assert result["sabotaged_records"] == 0
    # the held-unit rule is exact: no hold that ended in the log comes back started
    assert result["held_restored_started_at_kill"] == 0, details
    assert result["held_restored_started_released_before"] == 0, details
    assert result["ok"] and returncode == 0, details


@pytest.mark.bench
def test_crash_quick() -> None:
    result, details, returncode = run_scenario("crash", "--quick", timeout=120)
    assert_recovered(result, details, returncode, rounds=2)


@pytest.mark.bench
def test_crash_checker_notices_lost_acknowledged_mutations() -> None:
    """The same run with the last 30 records of the journal dropped after each kill: the
    restarted server lacks acknowledged mutations, and the checker must say so."""
    result, details, returncode = run_scenario("crash", "--quick", "--sabotage", "30", timeout=120)
    assert result["sabotaged_records"] > 0
    assert result["mismatches"] > 0, result
    assert "mismatch: round 1:" in details
    assert not result["ok"] and returncode == 1


@pytest.mark.slow
def test_crash_several_rounds() -> None:
    """6 kill/restart rounds of 8 s, 8 client slots."""
    result, details, returncode = run_scenario(
        "crash", "--kills", "6", "--seconds", "8", "--clients", "8", timeout=600
    )
    assert_recovered(result, details, returncode, rounds=6)
    assert result["workers"] >= 48 and result["acknowledged"] >= 1000, result
    assert result["in_flight_at_kill"] >= 6, result  # calls cut short by the kills

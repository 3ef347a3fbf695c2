"""The benchmarks run (not how fast: that is stress/'s job) and print their JSON keys."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench


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


def test_fanout_quick() -> None:
    (result,) = run_stress("fanout", "--quick")["runs"]
    assert result["waiters"] == 100 and result["rounds"] == 2
    # a start changes nothing a dependent waiting for completion answers: no actor is woken
    # for it (it was a third or more of a completion's cost while each was)
    assert 0 < result["start_us_per_waiter"] < result["complete_us_per_waiter"] / 3
    assert result["complete_cpu_us_per_waiter"] > 0


def test_rpc_quick() -> None:
    result = run_stress("rpc", "--quick")
    for key in ("ours_calls_per_s", "baseline_calls_per_s", "ping_ours_calls_per_s",
                "ping_baseline_calls_per_s", "info_ratio", "ping_ratio", "bridge_ratio",
                "want_ours_calls_per_s", "want_ratio", "complete_ours_calls_per_s",
                "complete_ratio"):
        assert result[key] > 0, key


def test_cli_quick() -> None:
    result = run_stress("cli", "--quick")
    assert result["runs"] == 3
    for key in ("python_pass_ms", "import_capnp_ms", "help_ms", "ping_ms", "complete_ms",
                "complete_p90_ms"):
        assert result[key] > 0, key
    assert isinstance(result["complete_over_capnp_ms"], float)  # a difference; may be < 0


def test_fsync_quick(tmp_path: Path) -> None:
    result = run_stress("fsync", "--quick", "--dir", str(tmp_path))
    assert (result["records"], result["rounds"], result["dir"]) == (50, 1, str(tmp_path))
    assert result["filesystem"] != "?"
    for policy in ("fdatasync_per_record", "fdatasync_per_batch", "write_only"):
        assert result[f"{policy}_us_per_record"] > 0, policy
        assert result[f"{policy}_ms_per_flush"] > 0, policy
    # one flush per record: a flush costs as much as a record
    for policy in ("fdatasync_per_record", "write_only"):
        per_record, per_flush = result[f"{policy}_us_per_record"], result[f"{policy}_ms_per_flush"]
        assert abs(per_record - per_flush * 1e3) <= 0.01 + per_record * 0.01, result
    assert result["fdatasync_over_write_only"] > 0


def test_history_quick() -> None:
    result = run_stress("history", "--quick")
    # memory: the history keeps what it was given, and it costs something per event
    units, runs = result["memory_units"], result["memory_runs"]
    assert result["memory_events_kept"] == result["memory_events"] == 2 * units - 1 + 2 * units * runs
    assert result["memory_full_kept"] == result["memory_full_history"] < result["memory_events"]
    assert result["bytes_per_event"] > 0 and result["bytes_per_kept_event_full"] > 0, result
    # server: the busy unit's events are all kept and its status shows each; the rest answered
    assert result["busy_events"] == 1_000 and result["other_events"] == 2, result
    assert result["status_busy_rows"] == result["busy_events"], result
    assert result["events"] == result["read_events"] == 5_000, result
    assert result["pages"] >= 1 and result["page_ms_max"] > 0, result
    for key in ("status_busy_ms", "status_other_ms", "timeline_json_ms", "timeline_text_ms",
                "blame_ms", "critical_chain_ms", "rss_start_kb", "rss_full_kb"):
        assert result[key] > 0, key
    # want: every configuration measured
    for key in ("want_on_us", "want_off_us", "want_full_us", "want_ratio", "want_full_ratio"):
        assert result[key] > 0, key


def test_up_quick() -> None:
    result = run_stress("up", "--quick")
    assert result["all_completed"] and result["rounds"] == 1
    assert result["completed"] == result["started_commands"] == result["units"] == 30
    assert 1 <= result["depth"] <= 30 and result["critical_s"] == result["depth"] * 0.1
    # the wall time covers the critical path; each command ran at least its sleep
    assert result["wall_s"] >= result["measured_critical_s"] >= result["critical_s"] * 0.99
    assert result["unit_duration_p50_ms"] >= 100
    assert result["constrained_starts"] > 0
    # the start and end stamps: the compiled stamper where there is a C compiler
    assert result["stamps"] == ("stress/stamp.c" if shutil.which("cc") else "bash")
    # a start comes after its dependencies' completion, and not absurdly later (a loaded
    # machine: a generous bound)
    assert 0 <= result["delay_min_ms"] <= result["delay_p50_ms"] <= result["delay_p99_ms"]
    assert result["delay_max_ms"] < 2000
    assert 0 < result["apply_ms"] < result["startup_ms"] < 30_000
    for key in ("hold_p50_ms", "launch_p50_ms", "lag_p50_ms", "exit_ms"):
        assert result[key] >= 0, key
    # the same DAG with `sleep 0.1` commands themselves: every unit completed, and the wall
    # time covers the critical path
    assert result["plain_all_completed"] and result["plain_rounds"] == 1
    assert result["plain_wall_over_critical"] >= 1.0
    # the floor: the imports and a chain of the commands alone, no scheduling
    assert result["sleep_ms"] >= 100 and result["imports_ms"] > result["python_ms"] > 0
    assert result["floor_over_critical"] > 1.0
    assert "beyond_floor_ms" in result and "beyond_floor_per_level_ms" in result
    assert 1.0 <= result["plain_span_over_critical"] <= result["plain_wall_over_critical"]

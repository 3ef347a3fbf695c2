"""What durability costs: appending records to the journal (``coordinator/_journal.py``) and
flushing them, under three flush policies, on the filesystem of ``--dir``.

Policies, each in a fresh journal in its own temp directory under ``--dir``:
``fdatasync per record`` (one write and one fdatasync per record: what a lone mutation pays),
``fdatasync per batch of 100`` (what a burst pays when the journal writer batches) and
``write only per record`` (the same writes with ``fsync=False``: the baseline, no durability).
Each round runs the three, the first one a policy later each round so drift in machine load hits
all alike; the figures are medians over the rounds. ``/tmp`` (ext4 here) and a tmpfs such as
``$XDG_RUNTIME_DIR`` differ by orders of magnitude: the filesystem is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from coordinator._journal import Journal, StatusRecord
from coordinator._status import Status

#: (key, label, records per flush, fsync)
POLICIES = [
    ("fdatasync_per_record", "fdatasync per record", 1, True),
    ("fdatasync_per_batch", "fdatasync per batch of 100", 100, True),
    ("write_only", "write only per record (no fsync)", 1, False),
]


def filesystem(directory: str) -> str:
    """The type of the filesystem ``directory`` is on (from /proc/self/mounts; "?" if unknown)."""
    where = os.path.realpath(directory)
    best, kind = "", "?"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = where == point or where.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def timed(directory: str, records: int, batch: int, fsync: bool) -> float:
    """Seconds to append and flush ``records`` records, ``batch`` per flush, in a new journal."""
    with tempfile.TemporaryDirectory(prefix="us-fsync-", dir=directory) as tmp:
        journal, _ = Journal.open(Path(tmp) / "state", fsync=fsync)
        with journal:
            start = time.perf_counter()
            for i in range(records):
                journal.append(StatusRecord(f"unit-{i}", Status.STARTED))
                if (i + 1) % batch == 0 or i + 1 == records:
                    journal.flush()
            return time.perf_counter() - start


def run(directory: str, records: int, rounds: int) -> dict[str, list[float]]:
    """Per policy key, the seconds of each round."""
    seconds: dict[str, list[float]] = {key: [] for key, *_ in POLICIES}
    for k in range(rounds):
        for i in range(len(POLICIES)):
            key, _, batch, fsync = POLICIES[(k + i) % len(POLICIES)]
            seconds[key].append(timed(directory, records, batch, fsync))
    return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress fsync")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the journals go (default: the temp directory, /tmp)")
    parser.add_argument("--records", type=int, default=1000, help="records per policy and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 records, 1 round (smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    records, rounds = (50, 1) if args.quick else (args.records, args.rounds)
    if records < 1 or rounds < 1:
        parser.error("--records and --rounds must be at least 1")
    seconds = run(args.dir, records, rounds)

    result: dict[str, object] = {
        "records": records, "rounds": rounds, "dir": args.dir, "filesystem": filesystem(args.dir),
    }
    for key, _, batch, _ in POLICIES:
        median = statistics.median(seconds[key])
        result[f"{key}_us_per_record"] = round(median / records * 1e6, 2)
        result[f"{key}_ms_per_flush"] = round(median / -(-records // batch) * 1e3, 4)
    result["fdatasync_over_write_only"] = round(
        statistics.median(seconds["fdatasync_per_record"]) / statistics.median(seconds["write_only"]),
        1,
    )
    if not args.json:
        print(f"{records} records per policy, {rounds} round(s), medians; "
              f"{args.dir} ({result['filesystem']})")
        print(f"{'policy':34} {'µs/record':>10} {'ms/flush':>10}")
        for key, label, _, _ in POLICIES:
            print(f"{label:34} {result[f'{key}_us_per_record']:10.1f} "
                  f"{result[f'{key}_ms_per_flush']:10.3f}")
        print(f"fdatasync per record / write only: {result['fdatasync_over_write_only']}x")
    print(json.dumps(result))
    return 0

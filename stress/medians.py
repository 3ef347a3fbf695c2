"""Medians of repeated runs saved in one results file: ``python -m stress.medians FILE KEY...``.

The file holds runs one after another, each introduced by a line ``## rep N: LABEL   (...)``
and ending with the scenario's ``--json``-style last line (one JSON object). Runs with the same
LABEL are grouped; for each group and KEY the median is printed (and the values it came from),
so a with/without comparison is read from what the runs printed, not typed in.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

HEADER = re.compile(r"^## rep \d+: (?P<label>.*?)\s+(\(.*\))?$")


def groups(text: str) -> dict[str, list[dict[str, object]]]:
    found: dict[str, list[dict[str, object]]] = {}
    label = None
    for line in text.splitlines():
        match = HEADER.match(line)
        if match:
            label = match["label"]
        elif line.startswith("{") and label is not None:
            found.setdefault(label, []).append(json.loads(line))
            label = None
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, keys = Path(argv[0]), argv[1:]
    width = max(len(key) for key in keys)
    for label, runs in groups(path.read_text()).items():
        print(f"{label}  ({len(runs)} runs)")
        for key in keys:
            values = [run[key] for run in runs if isinstance(run.get(key), (int, float))]
            if values:
                print(f"  {key:{width}}  median {statistics.median(values):10.3f}   "
                      f"runs: {', '.join(f'{v:g}' for v in values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m stress <scenario> [options] [--json]`` — see stress/README.md.

Scenarios: ``wakeup`` (pushed wake-up latency of N parked clients, against polling), ``rpc``
(calls/s against a plain pycapnp server), ``scale`` (graph size, per-edge cost, memory per
unit), ``churn`` (clients coming, going and being killed; the server returns to its baseline),
``crash`` (the churn against ``unitsync serve``, SIGKILLed and restarted on its journal; nothing
acknowledged is lost), ``cli`` (whole-process time of the command line), ``chain`` (an N-unit chain in-process),
``fanout`` (one dependency's start and completion told to N parked dependents, in-process),
``fsync`` (what the journal's flush policies cost on a filesystem), ``history`` (what keeping
the coordinator's events costs: memory per event, ``want`` with and without, reading it), ``up`` (``unitsync up`` on a
random DAG of sleeps: wall time against the critical path, scheduling delay), ``shared`` (several
``unitsync serve --store etcd://...`` on a real etcd, 1 node and 3 members, against the local
journal: wake-up across coordinators, want/complete throughput, a 10,000-unit load at start;
``shared --churn``: the churn across two coordinators while an etcd member is killed).
With ``--json`` the last line printed is one JSON object with the scenario's figures;
``--quick`` finishes in seconds (the CI smoke tests use it).
"""

from __future__ import annotations

import importlib
import sys

#: scenario -> module (imported only when that scenario runs).
SCENARIOS = {
    "wakeup": "stress.wakeup",
    "rpc": "stress.rpc",
    "scale": "stress.scale",
    "churn": "stress.churn",
    "crash": "stress.crash",
    "cli": "stress.cli",
    "chain": "stress.chain",
    "fanout": "stress.fanout",
    "fsync": "stress.fsync",
    "history": "stress.history",
    "up": "stress.up",
    "shared": "stress.shared",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SCENARIOS:
        print(f"usage: python -m stress {{{'|'.join(SCENARIOS)}}} [options] [--json]",
              file=sys.stderr)
        return 2
    module = importlib.import_module(SCENARIOS[argv[0]])
    return int(module.main(argv[1:]))


sys.exit(main(sys.argv[1:]))

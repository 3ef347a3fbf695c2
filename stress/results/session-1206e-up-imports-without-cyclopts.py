"""Spawn-to-exit of a python importing what up imports, with and without cyclopts (stubbed),
alternating; medians. An estimate of what an up free of cyclopts would save (not built)."""
import statistics, subprocess, sys, time
UP = ("import cli._app, cli._up, cli._check, cli._sync, cli._display, cli._autostart, "
      "cli._inprocess, coordinator.rpc._client, coordinator.rpc._socket")
STUB = ("import sys, types\n"
        "class _Any:\n"
        "    def __init__(self, *a, **k): pass\n"
        "    def __call__(self, *a, **k): return self\n"
        "    def __getattr__(self, name): return _Any()\n"
        "m = types.ModuleType('cyclopts'); m.App = m.Parameter = _Any; m.CycloptsError = Exception\n"
        "sys.modules['cyclopts'] = m\n")
progs = {"with": f"{UP}; import os; os._exit(0)", "without": STUB + f"{UP}; import os; os._exit(0)",
         "pass": "pass"}
spent = {k: [] for k in progs}
for _ in range(15):
    for k, code in progs.items():
        t0 = time.monotonic(); subprocess.run([sys.executable, "-c", code], check=True); spent[k].append(time.monotonic() - t0)
for k, v in spent.items():
    print(f"{k:8} median {statistics.median(v)*1e3:.1f} ms (min {min(v)*1e3:.1f}, max {max(v)*1e3:.1f}, n {len(v)})")

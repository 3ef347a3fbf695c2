"""What cyclopts' parse of an `up` line costs, in process, after every import: the line
`up -f x.toml` through the cyclopts app three times, with up's work stubbed out."""
import time

import cli._app
import cli._up as up_command

up_command.run_up = lambda args: 0  # the command returns at once: only the parse is timed
for i in range(3):
    t0 = time.perf_counter()
    assert cli._app.run(["up", "-f", "x.toml"]) == 0
    print(f"parse {i + 1}: {(time.perf_counter() - t0) * 1e3:.1f} ms")

"""The ``unitsync`` cyclopts application.

Commands are registered lazily (``"cli._sync:start"``) so ``unitsync --help`` imports neither
Trio nor capnp; each command module imports what it needs when it runs. :func:`run` parses a
command line with it (``_main.main``, the entry point, turns errors into exit codes).
"""

from __future__ import annotations

from collections.abc import Sequence

from cyclopts import App, CycloptsError

from coordinator import __version__

from ._connect import EXIT_CODES, USAGE, say

__all__ = ["app", "run"]

app = App(
    name="unitsync",
    help=(
        "Order independent processes on one machine: `unitsync want claude git`, "
        "`unitsync start claude` (waits until git has completed), `unitsync complete git`.\n\n"
        + EXIT_CODES
    ),
    version=__version__,
)

_COMMANDS = {
    "serve": ("cli._serve:serve",
              "Run the coordinator in the foreground, serving on the socket until SIGINT/SIGTERM."),
    "ping": ("cli._sync:ping", "Check that the coordinator answers."),
    "want": ("cli._sync:want", "Declare that UNIT depends on each DEP (atomically)."),
    "start": ("cli._sync:start", "Wait until UNIT is ready, then mark it started."),
    "complete": ("cli._sync:complete", "Mark UNIT completed."),
    "fail": ("cli._sync:fail", "Mark UNIT failed; units waiting on it are answered at once."),
    "skip": ("cli._sync:skip", "Mark UNIT skipped: it did not run (only before it starts)."),
    "status": ("cli._show:status", "Show one unit and its dependencies."),
    "list": ("cli._show:list_", "List the registered units."),
    "graph": ("cli._show:graph", "Print the dependency graph (Graphviz DOT or JSON)."),
    "wait": ("cli._wait:wait",
             "Wait until each UNIT (or --all units) has reached a status, without being a unit."),
    "why": ("cli._why:why", "Show what UNIT is waiting for, down to the root causes."),
    "watch": ("cli._show:watch",
              "Print changes (status, edges) as they happen, until interrupted."),
    "timeline": ("cli._history:timeline",
                 "Show every kept event in time order (or draw it: -o svg / -o html)."),
    "blame": ("cli._history:blame",
              "Show how long each unit ran and waited, slowest first."),
    "critical-chain": ("cli._history:critical_chain",
                       "Show the chain of waits that decided when a unit could run."),
    "run": ("cli._run:run",
            "Run a command as UNIT: wait for its dependencies, complete or fail it on exit."),
    "up": ("cli._up:up",
           "Run the workspace file: each unit's command the moment it is ready."),
    "apply": ("cli._apply:apply",
              "Declare the workspace file's units and edges on the coordinator, all at once."),
    "check": ("cli._check:check",
              "Check the workspace file (unitsync.toml): keys, names, order; no coordinator."),
}
for _name, (_target, _help) in _COMMANDS.items():
    app.command(_target, name=_name, help=_help)

# cyclopts writes the script (static: commands and options; unit names are not completed, see
# README "Shell completion") and, for bash and zsh, the line in ~/.bashrc / ~/.zshrc that loads it
app.register_install_completion_command(
    help="Install shell completion (bash, zsh or fish: --shell; default: the current shell).",
)


def run(tokens: Sequence[str]) -> object:
    """Run the command ``tokens`` name; its result. Bad arguments are one line, like every
    other diagnostic, and exit 2."""
    try:
        return app(list(tokens), result_action="return_value", print_error=False,
                   exit_on_error=False)
    except CycloptsError as error:
        say(str(error).strip().replace("\n", " "))
        return USAGE

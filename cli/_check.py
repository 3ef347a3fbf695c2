"""``unitsync check [-f FILE]``: is the workspace file usable? No coordinator is asked.

Also the workspace commands' one-line summary (:func:`summary`). Finding and loading the file
for a command is ``_workspace.load_workspace``.
"""

from __future__ import annotations

from ._connect import OK
from ._options import File
from ._workspace import Workspace, load_workspace

__all__ = ["check", "summary"]


def check(*, file: File = None) -> int:
    """Check the workspace file (unitsync.toml in the current directory, or FILE): its syntax,
    keys and values, that every name in after, before and the groups is known, and that the
    units' order has no cycle. Needs no coordinator.

    Prints `6 units, 7 edges, 1 group: ok` and exits 0 when it is usable. Otherwise every
    problem is printed on stderr (`unitsync: unitsync.toml:7: unit "git": unknown key "aftr"
    (did you mean "after"?)`) and it exits 2 — or 5 when the only problems are dependency
    cycles (`dependency cycle refused: a -> b -> a`).

    Parameters
    ----------
    file
        The workspace file. Default: unitsync.toml in the current directory.
    """
    workspace = load_workspace(file)
    print(summary(workspace))
    return OK


def summary(workspace: Workspace, outcome: str = "ok") -> str:
    """``6 units, 7 edges, 1 group: ok`` (or another ``outcome``: ``applied``)."""
    counts = (len(workspace.units), len(workspace.edges()), len(workspace.groups))
    words = ("unit", "edge", "group")
    counted = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in zip(counts, words))
    return f"{counted}: {outcome}"

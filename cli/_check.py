"""``unitsync check [-f FILE]``: is the workspace file usable? No coordinator is asked.

Also the workspace commands' shared steps: finding the file (:func:`workspace_path`) and
loading it, every problem in one CommandError with the right exit code (:func:`load_workspace`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from ._connect import CYCLE, OK, USAGE, CommandError
from ._workspace import WORKSPACE_FILE, Workspace, WorkspaceError, load

__all__ = ["check", "load_workspace", "summary", "workspace_path"]

#: ``-f FILE``, shared by the commands that read the workspace file.
File = Annotated[Path | None, Parameter(name=["--file", "-f"])]


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


def workspace_path(file: Path | None) -> Path:
    """``file``, else ``unitsync.toml`` in the current directory: :class:`CommandError` (exit 2)
    if that is missing, saying where it looked."""
    if file is not None:
        return file
    path = Path(WORKSPACE_FILE)
    if not path.exists():
        raise CommandError(f"no {WORKSPACE_FILE} in {Path.cwd()} (use -f FILE)", USAGE)
    return path


def load_workspace(file: Path | None) -> Workspace:
    """The checked workspace of ``-f FILE`` (see :func:`workspace_path`). A file with problems
    is :class:`CommandError` naming each of them, one per line, with the exit code: 5 if all
    are cycles, else 2."""
    try:
        return load(workspace_path(file))
    except WorkspaceError as error:
        code = CYCLE if error.only_cycles else USAGE
        raise CommandError("\n".join(map(str, error.problems)), code) from None


def summary(workspace: Workspace, outcome: str = "ok") -> str:
    """``6 units, 7 edges, 1 group: ok`` (or another ``outcome``: ``applied``)."""
    counts = (len(workspace.units), len(workspace.edges()), len(workspace.groups))
    words = ("unit", "edge", "group")
    counted = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in zip(counts, words))
    return f"{counted}: {outcome}"

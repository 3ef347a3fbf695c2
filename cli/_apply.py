"""``unitsync apply [-f FILE]``: the workspace file's units and edges, on the coordinator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._check import summary
from ._connect import call
from ._options import Common, File
from ._workspace import load_workspace

if TYPE_CHECKING:
    from coordinator.rpc import AsyncioClient

__all__ = ["apply"]


def apply(*, file: File = None, common: Common = Common()) -> int:
    """Declare every unit of the workspace file and every edge between them on the running
    coordinator, as one step: all or nothing. For workspaces whose scripts are started by
    someone else and report with `run`, `start` and `complete`; `unitsync up` applies the file
    itself. Applying the same file again changes nothing.

    Prints `7 units, 9 edges, 2 groups: applied`. A file `check` refuses is refused with the
    same messages (exit 2, or 5 for a cycle), and nothing is sent; an edge that would close a
    cycle with units already on the coordinator is refused whole (exit 5).

    Parameters
    ----------
    file
        The workspace file. Default: unitsync.toml in the current directory.
    """
    workspace = load_workspace(file)

    async def body(core: AsyncioClient) -> None:
        await core.apply(dict(workspace.requirements()))
        print(summary(workspace, "applied"))

    return call(common, body, autostart=True)

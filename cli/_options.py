"""Options shared by every command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

__all__ = ["Common"]


@Parameter(name="*")
@dataclass(frozen=True)
class Common:
    socket: Annotated[Path | None, Parameter(name="--socket")] = None
    """Coordinator socket. Default: $UNITSYNC_SOCKET, else $XDG_RUNTIME_DIR/unitsync/unitsync.sock,
    else /tmp/unitsync-<uid>/unitsync.sock."""

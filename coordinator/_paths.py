"""Where the coordinator's socket lives (no Trio, no capnp: the CLI imports this)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_SOCKET", "default_socket_path", "default_state_path", "socket_path"]

#: Environment variable naming the socket; ``--socket`` wins over it.
ENV_SOCKET = "UNITSYNC_SOCKET"


def default_socket_path() -> Path:
    """``$XDG_RUNTIME_DIR/unitsync/unitsync.sock``, else ``/tmp/unitsync-<uid>/unitsync.sock``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "unitsync" / "unitsync.sock"
    return Path(f"/tmp/unitsync-{os.getuid()}") / "unitsync.sock"


def socket_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The socket to use: ``path`` if given, else ``$UNITSYNC_SOCKET``, else the default."""
    if path is not None and str(path):
        return Path(path)
    env = os.environ.get(ENV_SOCKET)
    if env:
        return Path(env)
    return default_socket_path()


def default_state_path(socket: Path) -> Path:
    """Where ``serve`` keeps its journal by default: next to ``socket``, in the same 0700
    directory (``unitsync.sock`` -> ``unitsync.state``)."""
    return socket.with_suffix(".state")

"""Where a command named without a slash is found on ``PATH``, for ``up``'s launches.

Given ``sleep``, ``Popen`` lets the child look through ``PATH`` itself: one ``execve`` per
directory until one succeeds. The child is a ``vfork`` of ``up``, and ``up``'s event loop stands
still until it has exec'd, so every directory before the right one (a venv's ``bin``,
``~/.cargo/bin``, pyenv's shims ...) is paid on the loop, launch after launch (stress/README.md,
"up"). :class:`ExecutablePaths` looks the name up once and hands ``Popen`` the path.

It gives the same program the child's own search would: a name found is remembered only
while none of the directories of that ``PATH`` has changed (their modification times: adding,
removing or renaming a file in a directory changes it), so a tool installed by one unit into
a directory early on ``PATH`` is what the next unit runs. A name not found, or a ``PATH`` with
a relative directory (the child's working directory decides those), is left to the child's
search, which also gives its usual error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

__all__ = ["ExecutablePaths", "find_executable"]

#: One directory's state: its modification time in ns, or None if it cannot be read.
_Stamp = int | None


class ExecutablePaths:
    """Names found on a ``PATH``, each with the states of that ``PATH``'s directories."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], tuple[str, tuple[_Stamp, ...]]] = {}

    def find(self, name: str, env: Mapping[str, str] | None = None) -> str | None:
        """The path ``name`` runs as with ``env``'s ``PATH`` (default: ours), or None: the
        child is to search (a name with a slash, not found, a relative directory)."""
        if not name or "/" in name:
            return None
        path = (os.environ if env is None else env).get("PATH", os.defpath)
        directories = path.split(os.pathsep)
        if not all(os.path.isabs(d) for d in directories):
            return None
        stamps = tuple(_stamp(d) for d in directories)
        key = (name, path)
        known = self._found.get(key)
        if known is not None and known[1] == stamps:
            return known[0]
        found = shutil.which(name, path=path)
        if found is None:
            self._found.pop(key, None)
            return None
        self._found[key] = (found, stamps)
        return found


def _stamp(directory: str) -> _Stamp:
    try:
        return os.stat(directory).st_mtime_ns
    except OSError:
        return None


_paths = ExecutablePaths()


def find_executable(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """:meth:`ExecutablePaths.find` on this process's one table."""
    return _paths.find(name, env)

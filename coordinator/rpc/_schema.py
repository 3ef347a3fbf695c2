"""Loading ``unitsync.capnp``, from the source tree or from the installed package."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import capnp

__all__ = ["schema", "schema_path"]

capnp.remove_import_hook()


def schema_path() -> Path:
    """The schema file: ``schema/unitsync.capnp`` in a source checkout (editable install), else
    the copy shipped inside the package (``coordinator/rpc/schema/``, a wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "schema" / "unitsync.capnp", here / "schema" / "unitsync.capnp"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("unitsync.capnp is neither in the source tree nor in the package")


@functools.cache
def schema() -> Any:
    """The loaded schema module (``schema().Coordinator`` ...).

    ``/capnp/stream.capnp`` is resolved from pycapnp's own directory (a missing import aborts
    the process instead of raising, so we always pass it).
    """
    capnp_dir = os.path.dirname(os.path.dirname(capnp.__file__))
    return capnp.load(str(schema_path()), imports=[capnp_dir])

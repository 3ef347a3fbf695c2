"""unitsync's coordinator: units that wait for each other, as a Trio library.

``async with open_coordinator() as coord:`` runs one in your nursery; see README.md.

Importing this package is cheap: the names below are loaded on first use (PEP 562), so the
command line can import ``coordinator.rpc``'s asyncio client without paying for Trio. Type
checkers see the explicit re-exports in the ``TYPE_CHECKING`` block.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import Coordinator as Coordinator
    from ._api import Dependency as Dependency
    from ._api import Event as Event
    from ._api import UnitHandle as UnitHandle
    from ._api import UnitInfo as UnitInfo
    from ._coordinator import CoordinatorStatistics as CoordinatorStatistics
    from ._coordinator import LocalCoordinator as LocalCoordinator
    from ._coordinator import LocalUnit as LocalUnit
    from ._coordinator import open_coordinator as open_coordinator
    from ._errors import AlreadyInStatus as AlreadyInStatus
    from ._errors import AlreadyRegistered as AlreadyRegistered
    from ._errors import CoordinatorClosed as CoordinatorClosed
    from ._errors import CoordinatorUnreachable as CoordinatorUnreachable
    from ._errors import CycleError as CycleError
    from ._errors import DependencyFailed as DependencyFailed
    from ._errors import InvalidArgument as InvalidArgument
    from ._errors import InvalidName as InvalidName
    from ._errors import Lagged as Lagged
    from ._errors import NotHeld as NotHeld
    from ._errors import NotReady as NotReady
    from ._errors import Overloaded as Overloaded
    from ._errors import UnitNotFound as UnitNotFound
    from ._errors import UnitsyncError as UnitsyncError
    from ._lease import Lease as Lease
    from ._names import MAX_NAME_BYTES as MAX_NAME_BYTES
    from ._names import validate_name as validate_name
    from .rpc._remote import connect as connect
    from .rpc._server import serve as serve
    from ._status import Status as Status
    from ._version import __version__ as __version__

_EXPORTS = {
    "Coordinator": "._api",
    "Dependency": "._api",
    "Event": "._api",
    "UnitHandle": "._api",
    "UnitInfo": "._api",
    "CoordinatorStatistics": "._coordinator",
    "LocalCoordinator": "._coordinator",
    "LocalUnit": "._coordinator",
    "open_coordinator": "._coordinator",
    "AlreadyInStatus": "._errors",
    "AlreadyRegistered": "._errors",
    "CoordinatorClosed": "._errors",
    "CoordinatorUnreachable": "._errors",
    "CycleError": "._errors",
    "DependencyFailed": "._errors",
    "InvalidArgument": "._errors",
    "InvalidName": "._errors",
    "Lagged": "._errors",
    "NotHeld": "._errors",
    "NotReady": "._errors",
    "Overloaded": "._errors",
    "UnitNotFound": "._errors",
    "UnitsyncError": "._errors",
    "Lease": "._lease",
    "MAX_NAME_BYTES": "._names",
    "validate_name": "._names",
    "serve": ".rpc._server",
    "connect": ".rpc._remote",
    "Status": "._status",
    "__version__": "._version",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

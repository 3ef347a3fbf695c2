"""unitsync's coordinator: units that wait for each other, as a Trio library.

``async with open_coordinator() as coord:`` runs one in your nursery; see README.md.

The public names are the lines of the ``TYPE_CHECKING`` block below, and only those (see
``_exports.py``): they are loaded on first use, so importing this package is cheap and the
command line can use the asyncio client (``coordinator.rpc``) without paying for Trio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exports import lazy_exports

if TYPE_CHECKING:
    from ._api import Coordinator as Coordinator
    from ._api import Dependency as Dependency
    from ._api import Event as Event
    from ._api import HistoryPage as HistoryPage
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
    from ._errors import StoreUnavailable as StoreUnavailable
    from .store._address import StoreLost as StoreLost
    from .store._address import StoreUnreachable as StoreUnreachable
    from .store._address import parse_store as parse_store
    from ._errors import UnitNotFound as UnitNotFound
    from ._errors import UnitsyncError as UnitsyncError
    from ._lease import Lease as Lease
    from ._names import MAX_NAME_BYTES as MAX_NAME_BYTES
    from ._names import validate_name as validate_name
    from ._paths import default_state_path as default_state_path
    from ._paths import socket_path as socket_path
    from ._status import Status as Status
    from ._timeline import Analysis as Analysis
    from ._timeline import BlameRow as BlameRow
    from ._timeline import Link as Link
    from ._timeline import Met as Met
    from ._timeline import PastRun as PastRun
    from ._timeline import Run as Run
    from ._timeline import Start as Start
    from ._timeline import TimelineRow as TimelineRow
    from ._timeline import blame as blame
    from ._timeline import critical_chain as critical_chain
    from ._timeline import runs as runs
    from ._timeline import timeline as timeline
    from ._version import __version__ as __version__
    from .rpc._remote import connect as connect
    from .rpc._server import serve as serve

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

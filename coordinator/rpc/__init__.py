"""Cap'n Proto RPC for the coordinator: the only package that imports capnp.

Trio programs use ``coordinator.serve`` and ``coordinator.connect``. What is here is for
programs that are not Trio programs, and for servers: the asyncio client the command line
runs on pycapnp's own event loop (no Trio import: a short process starts fast), and the
server's limits and socket checks. Loaded on first use, like ``coordinator`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._exports import lazy_exports

if TYPE_CHECKING:
    from ._client import AsyncioClient as AsyncioClient
    from ._client import ClientWatch as ClientWatch
    from ._client import run_client as run_client
    from ._server import ServerLimits as ServerLimits
    from ._socket import AddressInUse as AddressInUse
    from ._socket import adopt_listener as adopt_listener
    from ._socket import connect_socket as connect_socket
    from ._socket import prepare_directory as prepare_directory
    from ._socket import prepare_socket as prepare_socket

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

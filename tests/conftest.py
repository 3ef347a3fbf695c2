"""Fixtures shared by the suite.

``coord`` is the coordinator under test. Every test written against it runs once per
transport (in-process today; the RPC client joins the parametrization) with the same assertions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from coordinator import Coordinator, open_coordinator

#: Upper bound for any single wait in a test (they all finish in milliseconds when correct).
WAIT = 5.0


@pytest.fixture(params=["local"])
async def coord(request: pytest.FixtureRequest) -> AsyncIterator[Coordinator]:
    async with open_coordinator() as coordinator:
        yield coordinator

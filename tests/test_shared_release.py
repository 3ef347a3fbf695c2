"""A hold released while the shared store cannot take the change (found by ``python -m stress
shared --churn``, an etcd leader killed under churn: a unit stayed ``started`` on both
coordinators after its holder had disconnected).

When a hold ends without complete/fail (its holder disconnected, its ``hold()`` block left, a
hold given up), the coordinator submits ``release(unit, holder, HOLDER_GONE)``. With a shared
store that release is a commit; when it failed (``StoreUnavailable``: no leader for a second or
two, the endpoint down) nothing tried again, and since the hold key stays on this
coordinator's live lease, no coordinator's orphan rule failed it either: the unit stayed
``started`` until that coordinator stopped. ``LocalCoordinator.submit`` now tries a release
again every second until the store takes it (``RELEASE_RETRY``).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from coordinator import Status, open_coordinator
from coordinator._lease import HOLDER_GONE

from .etcd_support import requires_etcd, start_cluster

pytestmark = requires_etcd
WAIT = 10.0  # seconds: an upper bound for any one step (each takes milliseconds when correct)
RETRY = 5.0  # seconds for the release to be taken once the store is back (tried every second)


def test_a_hold_released_while_the_store_is_down_fails_its_unit_once_it_is_back(
    tmp_path: Path,
) -> None:
    with start_cluster(tmp_path, 1) as cluster:
        (node,) = cluster.members
        url = f"etcd://{cluster.endpoints[0].removeprefix('http://')}/ws-{uuid.uuid4().hex[:8]}"

        seen: dict[str, tuple[Status, str]] = {}

        async def body() -> None:
            async with open_coordinator(store=url) as a, open_coordinator(store=url) as b:
                with trio.fail_after(WAIT):
                    async with a.unit("build").hold():
                        await b.unit("build").reached(Status.STARTED)
                        node.kill()  # the store goes away while the holder is still there
                    # the hold ended (its block left) while the store could not take the fail
                    node.start()
                    await cluster.wait_healthy()
                with trio.move_on_after(RETRY):  # the unit fails within the bound, or never
                    await b.unit("build").reached(Status.FAILED)
                with trio.fail_after(WAIT):
                    for name, coord in (("a", a), ("b", b)):
                        info = await coord.unit("build").info()
                        seen[name] = (info.status, info.reason)

        trio.run(body)
        assert seen == {"a": (Status.FAILED, HOLDER_GONE), "b": (Status.FAILED, HOLDER_GONE)}

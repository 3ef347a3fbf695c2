"""``ready()`` on one coordinator right after a write through another sees that write (found by
``python -m stress shared --churn`` at ``f5a8fba``: a worker's ``start`` acknowledged by
coordinator A, then on its next connection, to B, ``ready()`` of the same unit answered at once
with the unit *not registered*, 4 ms later, no etcd member down).

Issue 15: "a client's own writes are visible to its next call; status/list/graph answer from a
state no older than the call". ``info()`` (and ``list()``) on B first read the store's revision
and wait for B's mirror to reach it (``EtcdStore.synced``); ``ready()`` did not then (a unit
that B's mirror had not seen yet looked unregistered, so ready); since ``04b8bd4`` it does.
"""

from __future__ import annotations

import uuid

import trio

from coordinator import Status, open_coordinator

from .etcd_support import EtcdCluster, etcd_node, requires_etcd

__all__ = ["etcd_node"]  # fixtures, used by name

pytestmark = requires_etcd
WAIT = 10.0
ROUNDS = 20


def store_url(cluster: EtcdCluster) -> str:
    return f"etcd://{cluster.endpoints[0].removeprefix('http://')}/ws-{uuid.uuid4().hex[:12]}"


async def test_info_on_the_other_coordinator_sees_a_start_just_made(etcd_node: EtcdCluster) -> None:
    """The contrast: ``info()`` is a read no older than the call."""
    url = store_url(etcd_node)
    with trio.fail_after(WAIT):
        async with open_coordinator(store=url) as a, open_coordinator(store=url) as b:
            for n in range(ROUNDS):
                await a.unit(f"u{n}").start()
                assert (await b.unit(f"u{n}").info()).status is Status.STARTED


async def test_ready_on_the_other_coordinator_sees_a_start_just_made(etcd_node: EtcdCluster) -> None:
    url = store_url(etcd_node)
    seen = []
    with trio.fail_after(WAIT):
        async with open_coordinator(store=url) as a, open_coordinator(store=url) as b:
            for n in range(ROUNDS):
                await a.unit(f"u{n}").start()
                seen.append((await b.unit(f"u{n}").ready()).status)
    # at f5a8fba most rounds saw NOT_REGISTERED: B's mirror had not applied A's commit yet
    assert seen == [Status.STARTED] * ROUNDS

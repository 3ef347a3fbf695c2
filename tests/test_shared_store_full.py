"""A store that is full (etcd's space quota, its NOSPACE alarm): a mutation is refused with
``unitsync.unavailable`` naming the fix — compaction and defragmentation — and nothing else
breaks (reads answer)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from coordinator import Status, StoreUnavailable, open_coordinator
from coordinator.store._etcd import EtcdClient
from coordinator.store._etcd_errors import StoreFull

from .etcd_support import requires_etcd, start_cluster

pytestmark = requires_etcd
WAIT = 20.0
QUOTA = 2 * 1024 * 1024  # bytes: etcd's backend quota, small enough to fill in a moment


def test_a_full_store_refuses_a_mutation_naming_the_fix(tmp_path: Path) -> None:
    with start_cluster(tmp_path, 1, ("--quota-backend-bytes", str(QUOTA))) as cluster:
        hosts = cluster.endpoints[0].removeprefix("http://")
        url = f"etcd://{hosts}/ws-{uuid.uuid4().hex[:8]}"

        async def body() -> None:
            with trio.fail_after(WAIT):
                async with open_coordinator(store=url) as coord:
                    await coord.unit("git").start()
                    async with EtcdClient(cluster.endpoints) as etcd:  # fill it up
                        with pytest.raises(StoreFull):
                            for n in range(100):
                                await etcd.put(f"/junk/{n}".encode(), b"x" * 512 * 1024)
                    with pytest.raises(StoreUnavailable) as caught:
                        await coord.unit("git").complete()
                    message = str(caught.value)
                    assert "--auto-compaction-mode=periodic" in message
                    assert "etcdctl defrag" in message and "alarm disarm" in message
                    assert caught.value.applied == "no"
                    assert (await coord.unit("git").info()).status is Status.STARTED

        trio.run(body)

"""A coordinator's membership lease and its holds against a real single-node etcd: members/ID on
the lease, a hold written with the unit's record, refused twice, released only by its holder,
deleted with the lease (what every mirror sees of a dead machine), and the race of coordinators
failing the orphan: exactly one wins."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest
import trio

from coordinator._journal import UnitRecord
from coordinator._lease import HOLDER_GONE
from coordinator._status import Status
from coordinator.store._etcd import EtcdClient
from coordinator.store._etcd_errors import LeaseNotFound
from coordinator.store._etcd_lease import (
    fail_orphan,
    hold,
    membership,
    orphaned,
    release,
)
from coordinator.store._etcd_state import Change, Conflict, Layout, commit, follow, load

from .etcd_support import EtcdCluster, etcd, etcd_node, layout, requires_etcd

__all__ = ["etcd", "etcd_node", "layout"]  # fixtures, used by name

pytestmark = requires_etcd
WAIT = 10.0  # seconds: an upper bound for any one step (each takes milliseconds when correct)

PENDING = UnitRecord(Status.PENDING)
HELD = UnitRecord(Status.STARTED, held=True)




async def create(etcd: EtcdClient, layout: Layout, unit: str) -> int:
    return await commit(etcd, layout, {unit: PENDING}, unit_revisions={unit: 0}, graph_revision=None)


async def holder(etcd: EtcdClient, layout: Layout, unit: str) -> tuple[str | None, int]:
    """The hold's value and lease (None, 0: no hold)."""
    kvs = (await etcd.range(layout.hold(unit))).kvs
    return (kvs[0].value.decode(), kvs[0].lease) if kvs else (None, 0)


async def next_hold_change(changes: AsyncIterator[Change]) -> Change:
    async for change in changes:
        if change.holds:
            return change
    raise AssertionError("the follow ended")


async def test_membership_puts_the_member_and_revokes_it(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        async with membership(etcd, layout, "m1", ttl=2) as me:
            assert me.ttl >= 2 and not me.lost.is_set()
            (kv,) = (await etcd.range(layout.member("m1"))).kvs
            assert kv.lease == me.lease_id
            info = json.loads(kv.value)
            assert info["pid"] == os.getpid() and set(info) == {"host", "pid", "version"}
            assert await load(etcd, layout) is not None  # members/ID is skipped by load
        assert (await etcd.range(layout.member("m1"))).kvs == ()
        with pytest.raises(LeaseNotFound):
            await etcd.lease_keepalive(me.lease_id)
        assert not me.lost.is_set()  # a clean exit is not a loss
    with pytest.raises(ValueError, match="member id"):
        async with membership(etcd, layout, "a/b"):
            pass


async def test_hold_is_written_with_the_unit_and_refused_twice(
    etcd: EtcdClient, layout: Layout
) -> None:
    with trio.fail_after(WAIT):
        created = await create(etcd, layout, "x")
        async with membership(etcd, layout, "m1", ttl=2) as one, \
                membership(etcd, layout, "m2", ttl=2) as two:
            revision = await hold(etcd, layout, "x", HELD, lease=one.lease_id, member="m1",
                                  unit_revision=created)
            loaded = await load(etcd, layout)
            assert loaded.state["x"] == HELD and loaded.holds == {"x": "m1"}
            assert loaded.revisions["x"] == revision  # the record and the hold: one revision
            assert await holder(etcd, layout, "x") == ("m1", one.lease_id)
            # a second hold: refused whether its copy of the unit is current or stale
            for unit_revision in (revision, created):
                with pytest.raises(Conflict):
                    await hold(etcd, layout, "x", HELD, lease=two.lease_id, member="m2",
                               unit_revision=unit_revision)
            assert await holder(etcd, layout, "x") == ("m1", one.lease_id)
            with pytest.raises(ValueError, match="started, held"):
                await hold(etcd, layout, "x", UnitRecord(Status.STARTED), lease=two.lease_id,
                           member="m2", unit_revision=revision)


async def test_release_only_by_the_holder(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        async with membership(etcd, layout, "m1", ttl=2) as one:
            for unit in ("x", "y"):
                await hold(etcd, layout, unit, HELD, lease=one.lease_id, member="m1",
                           unit_revision=await create(etcd, layout, unit))
            with pytest.raises(Conflict):
                await release(etcd, layout, "x", "m2")
            assert (await holder(etcd, layout, "x"))[0] == "m1"
            await release(etcd, layout, "x", "m1")
            assert await holder(etcd, layout, "x") == (None, 0)
            with pytest.raises(Conflict):
                await release(etcd, layout, "x", "m1")  # already gone
            # with the outcome: the record and the release in one txn
            loaded = await load(etcd, layout)
            async with follow(etcd, layout, loaded.revision) as changes:
                done = UnitRecord(Status.COMPLETED)
                revision = await release(etcd, layout, "y", "m1", record=done,
                                         unit_revision=loaded.revisions["y"])
                change = await next_hold_change(changes)
            assert change == Change(revision, units=(("y", done),), holds=(("y", None),))
            assert orphaned(change) == ()  # released with its outcome: no orphan
            with pytest.raises(ValueError, match="unit_revision"):
                await release(etcd, layout, "y", "m1", record=done)


async def test_a_revoked_lease_deletes_the_holds_and_follow_reports_it(
    etcd: EtcdClient, layout: Layout
) -> None:
    with trio.fail_after(WAIT):
        async with membership(etcd, layout, "dead", ttl=2) as dead:
            for unit in ("a", "b"):
                await hold(etcd, layout, unit, HELD, lease=dead.lease_id, member="dead",
                           unit_revision=await create(etcd, layout, unit))
            loaded = await load(etcd, layout)
            async with follow(etcd, layout, loaded.revision) as changes:
                assert await etcd.lease_revoke(dead.lease_id)  # the machine died
                change = await next_hold_change(changes)
            assert change.units == ()
            assert sorted(change.holds) == [("a", None), ("b", None)]
            assert sorted(orphaned(change)) == ["a", "b"]
            state = {**loaded.state, "b": UnitRecord(Status.COMPLETED)}
            assert orphaned(change, state) == ("a",)
            assert (await etcd.range(layout.member("dead"))).kvs == ()
            await dead.lost.wait()  # its next keepalive learns it: not silent
            assert dead.reason is not None and "gone" in dead.reason


async def test_coordinators_racing_to_fail_an_orphan_one_wins(
    etcd: EtcdClient, etcd_node: EtcdCluster, layout: Layout
) -> None:
    rounds = 20
    units = [f"u{i}" for i in range(rounds)]
    async with EtcdClient(etcd_node.endpoints) as other:
        with trio.fail_after(WAIT):
            async with membership(etcd, layout, "dead", ttl=2) as dead:
                for unit in units:
                    await hold(etcd, layout, unit, HELD, lease=dead.lease_id, member="dead",
                               unit_revision=await create(etcd, layout, unit))
                await etcd.lease_revoke(dead.lease_id)
            loaded = await load(etcd, layout)
            assert loaded.holds == {}
            for unit in units:
                outcomes: dict[int, bool] = {}

                async def try_fail(
                    index: int, client: EtcdClient, unit: str = unit,
                    outcomes: dict[int, bool] = outcomes,
                ) -> None:
                    outcomes[index] = await fail_orphan(
                        client, layout, unit, loaded.state[unit], loaded.revisions[unit]
                    )

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(try_fail, 0, etcd)
                    nursery.start_soon(try_fail, 1, other)
                assert sorted(outcomes.values()) == [False, True], unit
            final = await load(etcd, layout)
            assert all(final.state[u] == UnitRecord(Status.FAILED, HOLDER_GONE) for u in units)
            # a unit held again (a restarted holder took it back) is not failed
            async with membership(etcd, layout, "back", ttl=2) as back:
                revision = await create(etcd, layout, "z")
                await hold(etcd, layout, "z", HELD, lease=back.lease_id, member="back",
                           unit_revision=revision)
                now = await load(etcd, layout)
                assert not await fail_orphan(etcd, layout, "z", HELD, now.revisions["z"])


async def test_taking_a_hold_back_from_a_previous_holder(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        async with membership(etcd, layout, "old", ttl=2) as old, \
                membership(etcd, layout, "new", ttl=2) as new:
            first = await hold(etcd, layout, "x", HELD, lease=old.lease_id, member="old",
                               unit_revision=await create(etcd, layout, "x"))
            with pytest.raises(Conflict):  # wrong previous holder
                await hold(etcd, layout, "x", HELD, lease=new.lease_id, member="new",
                           unit_revision=first, previous="other")
            await hold(etcd, layout, "x", HELD, lease=new.lease_id, member="new",
                       unit_revision=first, previous="old")
            assert await holder(etcd, layout, "x") == ("new", new.lease_id)


@pytest.mark.slow
async def test_a_membership_that_stops_refreshing_loses_its_holds(
    etcd: EtcdClient, layout: Layout
) -> None:
    async with membership(etcd, layout, "frozen", ttl=2) as frozen:
        await hold(etcd, layout, "x", HELD, lease=frozen.lease_id, member="frozen",
                   unit_revision=await create(etcd, layout, "x"))
        loaded = await load(etcd, layout)
        frozen._keepalive.cancel()  # the process stops refreshing (frozen, cut off)
        start = trio.current_time()
        with trio.fail_after(frozen.ttl + WAIT):
            async with follow(etcd, layout, loaded.revision) as changes:
                change = await next_hold_change(changes)
        assert trio.current_time() - start >= frozen.ttl - 1  # not before the TTL (about)
        assert orphaned(change, loaded.state) == ("x",)
        assert (await etcd.range(layout.member("frozen"))).kvs == ()

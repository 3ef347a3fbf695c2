"""The etcd data layer's consistency helpers against a real single-node etcd: a commit's
request id and :func:`resolve` (a lost answer is resolved, never retried blindly), and
:func:`barrier` with :meth:`Follow.caught_up` (a mirror that reaches the store's current
revision, even when nothing of the workspace changed)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
import trio

from coordinator._journal import UnitRecord
from coordinator._status import Status
from coordinator.store._etcd import EtcdClient
from coordinator.store._etcd_errors import OutcomeUnknown, RequestTooLarge
from coordinator.store._etcd_state import (
    Change,
    Conflict,
    Follow,
    Layout,
    Relist,
    barrier,
    caught_up,
    commit,
    follow,
    load,
    resolve,
)
from coordinator.store._etcd_wire import Compare, Op, TxnResult

from .etcd_support import EtcdCluster, etcd, etcd_node, layout, requires_etcd

__all__ = ["etcd", "etcd_node", "layout"]  # fixtures, used by name

pytestmark = requires_etcd
WAIT = 2.0  # seconds: each test is a few milliseconds of etcd when correct

PENDING = UnitRecord(Status.PENDING)
STARTED = UnitRecord(Status.STARTED)




def new_id() -> str:
    return uuid.uuid4().hex


# -- request ids and resolve


async def test_a_committed_request_resolves_to_its_revision(
    etcd: EtcdClient, layout: Layout
) -> None:
    with trio.fail_after(WAIT):
        request = new_id()
        revision = await commit(etcd, layout, {"git": PENDING}, unit_revisions={"git": 0},
                                graph_revision=0, request=request)
        assert await resolve(etcd, layout, request) == revision
        assert await resolve(etcd, layout, request) == revision  # a read: ask as often as needed
        (kv,) = (await etcd.range(layout.request(request))).kvs
        assert kv.value == b'{"units":["git"],"graph":true}'
        loaded = await load(etcd, layout)  # the request key is not state
        assert loaded.state == {"git": PENDING} and loaded.revisions == {"git": revision}
        # a request id is used once: the same id again is refused, whatever it writes
        with pytest.raises(Conflict):
            await commit(etcd, layout, {"other": PENDING}, unit_revisions={"other": 0},
                         graph_revision=None, request=request)
        assert "other" not in (await load(etcd, layout)).state


async def test_an_unknown_request_resolves_to_none_and_is_then_refused(
    etcd: EtcdClient, layout: Layout
) -> None:
    """None is final: the commit that was never seen (or is still on its way) can no longer
    apply after resolve said so."""
    with trio.fail_after(WAIT):
        request = new_id()
        assert await resolve(etcd, layout, request) is None
        assert await resolve(etcd, layout, request) is None  # idempotent (it is retried)
        with pytest.raises(Conflict):  # the late txn: refused by its own compare
            await commit(etcd, layout, {"git": PENDING}, unit_revisions={"git": 0},
                         graph_revision=None, request=request)
        assert (await load(etcd, layout)).state == {}
        # the caller decides again, with a new id
        again = new_id()
        revision = await commit(etcd, layout, {"git": PENDING}, unit_revisions={"git": 0},
                                graph_revision=None, request=again)
        assert await resolve(etcd, layout, again) == revision


async def test_a_conflicting_commit_leaves_no_request_key(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        await commit(etcd, layout, {"x": PENDING}, unit_revisions={"x": 0}, graph_revision=None)
        request = new_id()
        with pytest.raises(Conflict):
            await commit(etcd, layout, {"x": STARTED}, unit_revisions={"x": 0},
                         graph_revision=None, request=request)
        assert (await etcd.range(layout.request(request))).kvs == ()
        assert await resolve(etcd, layout, request) is None


class LosesOneAnswer(EtcdClient):
    """A client whose next txn is applied but answered with :class:`OutcomeUnknown`, as when
    the connection breaks after the request was sent."""

    lose = True

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op] = (),
        failure: Sequence[Op] = (), *, retry: bool = False,
    ) -> TxnResult:
        result = await super().txn(compares, success, failure, retry=retry)
        if self.lose:
            self.lose = False
            raise OutcomeUnknown(self._endpoints[0], "the answer was lost (simulated)")
        return result


async def test_a_lost_answer_is_resolved(etcd_node: EtcdCluster, layout: Layout) -> None:
    async with LosesOneAnswer(etcd_node.endpoints) as etcd:
        with trio.fail_after(WAIT):
            request = new_id()
            with pytest.raises(OutcomeUnknown):
                await commit(etcd, layout, {"git": STARTED}, unit_revisions={"git": 0},
                             graph_revision=None, request=request)
            revision = await resolve(etcd, layout, request)
            loaded = await load(etcd, layout)
            assert revision is not None and loaded.revisions == {"git": revision}
            assert loaded.state == {"git": STARTED}


async def test_request_keys_go_with_their_lease(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        lease = (await etcd.lease_grant(10)).id
        request = new_id()
        revision = await commit(etcd, layout, {"a": PENDING}, unit_revisions={"a": 0},
                                graph_revision=None, request=request, lease=lease)
        (kv,) = (await etcd.range(layout.request(request))).kvs
        assert kv.lease == lease and kv.mod_revision == revision
        await etcd.lease_revoke(lease)
        assert (await etcd.range(layout.request(request))).kvs == ()
        assert (await load(etcd, layout)).state == {"a": PENDING}  # the record stays


async def test_the_request_counts_toward_the_txn_limit(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        many = {f"u{i:03}": PENDING for i in range(127)}
        with pytest.raises(RequestTooLarge, match="request id is 129 txn operations"):
            await commit(etcd, layout, many, unit_revisions=dict.fromkeys(many, 0),
                         graph_revision=0, request=new_id())
        with pytest.raises(ValueError, match="request id"):
            await commit(etcd, layout, {"a": PENDING}, unit_revisions={"a": 0},
                         graph_revision=None, request="a/b")


# -- barrier and caught_up


async def collect(changes: Follow, seen: list[Change]) -> None:
    """The mirror's task: apply (here: keep) each Change as it comes."""
    async for change in changes:
        seen.append(change)


async def test_barrier_then_caught_up_has_seen_another_clients_write(
    etcd_node: EtcdCluster, etcd: EtcdClient, layout: Layout
) -> None:
    async with EtcdClient(etcd_node.endpoints) as other:
        with trio.fail_after(WAIT):
            loaded = await load(etcd, layout)
            seen: list[Change] = []
            async with follow(etcd, layout, loaded.revision) as changes, \
                    trio.open_nursery() as nursery:
                nursery.start_soon(collect, changes, seen)
                for round_ in range(5):
                    name = f"u{round_}"
                    written = await commit(other, layout, {name: PENDING},
                                           unit_revisions={name: 0}, graph_revision=None)
                    revision = await barrier(etcd, layout)
                    assert revision >= written
                    await caught_up(changes, revision)
                    assert Change(written, ((name, PENDING),)) in seen
                    assert changes.position >= revision
                nursery.cancel_scope.cancel()


async def test_caught_up_returns_with_no_writes_at_all(
    etcd: EtcdClient, layout: Layout
) -> None:
    """Nothing of the workspace changes (other workspaces' writes move the store's revision):
    the progress key moves the watch past the barrier, and the follower's exit removes it."""
    with trio.fail_after(WAIT):
        loaded = await load(etcd, layout)
        await etcd.put(b"/unitsync/elsewhere-" + layout.workspace.encode(), b"x")
        async with follow(etcd, layout, loaded.revision) as changes, \
                trio.open_nursery() as nursery:
            seen: list[Change] = []
            nursery.start_soon(collect, changes, seen)
            revision = await barrier(etcd, layout)
            assert revision > loaded.revision
            await caught_up(changes, revision)
            assert changes.position > revision and changes.nudged
            assert all(not (c.units or c.holds or c.graph) for c in seen)
            # already there: returns at once, without a write
            before = await barrier(etcd, layout)
            await caught_up(changes, loaded.revision)
            assert await barrier(etcd, layout) == before
            nursery.cancel_scope.cancel()
        assert (await etcd.range(layout.prefix + b"progress/", layout.end)).kvs == ()


async def test_caught_up_with_a_member_id_on_its_lease(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        lease = (await etcd.lease_grant(10)).id
        loaded = await load(etcd, layout)
        async with follow(etcd, layout, loaded.revision, member_id="m1", lease=lease) as changes, \
                trio.open_nursery() as nursery:
            nursery.start_soon(collect, changes, [])
            await etcd.put(b"/unitsync/elsewhere-" + layout.workspace.encode(), b"x")
            await changes.caught_up(await barrier(etcd, layout))
            nursery.cancel_scope.cancel()
        (kv,) = (await etcd.range(layout.progress("m1"))).kvs
        assert kv.lease == lease  # left to its lease (a coordinator's membership)
        await etcd.lease_revoke(lease)
        assert (await etcd.range(layout.progress("m1"))).kvs == ()


async def test_caught_up_raises_when_the_follow_stopped(
    etcd: EtcdClient, layout: Layout
) -> None:
    with trio.fail_after(WAIT):
        old = await load(etcd, layout)
        last = await commit(etcd, layout, {"a": PENDING}, unit_revisions={"a": 0},
                            graph_revision=None)
        await commit(etcd, layout, {"a": STARTED}, unit_revisions={"a": last}, graph_revision=None)
        await etcd.compact(last + 1)
        async with follow(etcd, layout, old.revision) as changes:
            with pytest.raises(Relist):
                await changes.__anext__()
            with pytest.raises(Relist):
                await caught_up(changes, await barrier(etcd, layout))


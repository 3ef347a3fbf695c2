"""The etcd client against a real etcd: a single node, and a 3-member cluster whose members the
tests kill and freeze. Every wait is under ``fail_after``; the slow tests (lease expiry, a
leader killed) are marked ``slow``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from coordinator.store._etcd import EtcdClient
from coordinator.store._etcd_errors import (
    Compacted,
    LeaseNotFound,
    NoQuorum,
    OutcomeUnknown,
    RequestTooLarge,
    Unavailable,
)
from coordinator.store._etcd_wire import (
    Compare,
    EventType,
    Op,
    PutResult,
    RangeResult,
    WatchBatch,
    prefix_end,
)

from .etcd_support import (
    EtcdCluster,
    etcd,
    etcd_cluster,
    etcd_cluster_shared,
    etcd_node,
    requires_etcd,
    unused_ports,
)

__all__ = ["etcd", "etcd_cluster", "etcd_cluster_shared", "etcd_node"]  # fixtures, used by name

pytestmark = requires_etcd
WAIT = 10.0  # seconds: an upper bound for any one step (each takes milliseconds when correct)


@pytest.fixture
def prefix() -> bytes:
    """Keys of this test's own, binary (not UTF-8, a NUL, a 0xff) under a shared node."""
    return b"\xfe\x00" + uuid.uuid4().bytes + b"/"



async def collect(watch: AsyncIterator[WatchBatch], count: int) -> list[tuple[EventType, bytes, int]]:
    """The next events as (type, key, mod_revision), at least ``count`` of them (whole batches)."""
    seen: list[tuple[EventType, bytes, int]] = []
    async for batch in watch:
        seen += [(event.type, event.kv.key, event.kv.mod_revision) for event in batch.events]
        if len(seen) >= count:
            break
    return seen


async def until(watch: AsyncIterator[WatchBatch], revision: int) -> list[int]:
    """The revisions of the next events, up to one at ``revision``."""
    seen: list[int] = []
    async for batch in watch:
        seen += [event.kv.mod_revision for event in batch.events]
        if seen and seen[-1] >= revision:
            break
    return seen


async def test_put_range_delete_with_binary_keys(etcd: EtcdClient, prefix: bytes) -> None:
    with trio.fail_after(WAIT):
        keys = [prefix + bytes([i, 0xFF, 0]) for i in range(3)]
        written = [await etcd.put(key, b"\x00v" + key) for key in keys]
        assert [w.revision for w in written] == sorted(w.revision for w in written)

        one = await etcd.range(keys[1])
        assert [(kv.key, kv.value, kv.version) for kv in one.kvs] == [(keys[1], b"\x00v" + keys[1], 1)]
        assert one.kvs[0].create_revision == one.kvs[0].mod_revision == written[1].revision
        assert one.revision >= written[-1].revision

        every = await etcd.range(prefix, prefix_end(prefix))
        assert [kv.key for kv in every.kvs] == keys and every.count == 3 and not every.more
        limited = await etcd.range(prefix, prefix_end(prefix), limit=2)
        assert len(limited.kvs) == 2 and limited.count == 3 and limited.more
        then = await etcd.range(keys[0], revision=written[0].revision - 1)
        assert then.kvs == ()  # before it was written
        stale_ok = await etcd.range(keys[0], serializable=True)
        assert stale_ok.kvs[0].value == b"\x00v" + keys[0]

        gone = await etcd.delete(keys[0], prev_kv=True)
        assert gone.deleted == 1 and gone.prev_kvs[0].key == keys[0]
        rest = await etcd.delete(prefix, prefix_end(prefix))
        assert rest.deleted == 2
        assert (await etcd.range(prefix, prefix_end(prefix))).kvs == ()
        assert (await etcd.delete(keys[0])).deleted == 0


async def test_txn_compare_and_swap(etcd: EtcdClient, prefix: bytes) -> None:
    key, request_id = prefix + b"unit", prefix + b"request"
    with trio.fail_after(WAIT):
        # create if absent
        created = await etcd.txn(
            [Compare.create_revision(key, "==", 0)],
            [Op.put(key, b"one"), Op.put(request_id, b"r1")],
            [Op.range(key)],
        )
        assert created.succeeded and [type(r) for r in created.responses] == [PutResult, PutResult]
        again = await etcd.txn([Compare.create_revision(key, "==", 0)], [Op.put(key, b"x")], [Op.range(key)])
        assert not again.succeeded
        (current,) = again.responses
        assert isinstance(current, RangeResult) and current.kvs[0].value == b"one"
        revision = current.kvs[0].mod_revision

        # swap: a stale revision fails and changes nothing; the right one succeeds
        stale = await etcd.txn([Compare.mod_revision(key, "==", revision - 1)], [Op.put(key, b"no")])
        assert not stale.succeeded and stale.responses == ()
        swapped = await etcd.txn(
            [Compare.mod_revision(key, "==", revision), Compare.value(key, "==", b"one"),
             Compare.version(key, "<", 2)],
            [Op.put(key, b"two", prev_kv=True)],
        )
        assert swapped.succeeded
        assert swapped.responses[0].prev_kv.value == b"one"  # type: ignore[union-attr]

        # a compare over a range: every key in it must hold
        end = prefix_end(prefix)
        assert not (await etcd.txn([Compare.mod_revision(prefix, "<", revision, range_end=end)])).succeeded
        everything = await etcd.txn(
            [Compare.mod_revision(prefix, "<", swapped.revision + 1, range_end=end),
             Compare.value(key, "!=", b"one")],
            [Op.delete(prefix, end, prev_kv=True)],
        )
        assert everything.succeeded and everything.responses[0].deleted == 2  # type: ignore[union-attr]


async def test_two_concurrent_compare_and_swaps_one_wins(etcd: EtcdClient, prefix: bytes) -> None:
    """The cycle check's pattern: both read a revision, both commit with a compare on it."""
    key = prefix + b"graph-version"
    with trio.fail_after(WAIT):
        revision = (await etcd.put(key, b"0")).revision
        for round_ in range(20):
            results: list[bool] = []
            async with trio.open_nursery() as nursery:
                for who in (b"a", b"b"):
                    nursery.start_soon(commit, etcd, key, revision, who, results)
            assert sorted(results) == [False, True], round_
            revision = (await etcd.range(key)).kvs[0].mod_revision


async def commit(etcd: EtcdClient, key: bytes, seen: int, who: bytes, results: list[bool]) -> None:
    answer = await etcd.txn([Compare.mod_revision(key, "==", seen)], [Op.put(key, who)])
    results.append(answer.succeeded)


async def test_watch_delivers_in_order_with_prev_kv(etcd: EtcdClient, prefix: bytes) -> None:
    with trio.fail_after(WAIT):
        start = (await etcd.put(prefix + b"before", b"")).revision
        async with etcd.watch(prefix, prefix_end(prefix), start_revision=start + 1, prev_kv=True) as watch:
            assert watch.endpoint == etcd.statistics().preferred
            for i in range(5):
                await etcd.put(prefix + b"k", b"%d" % i)
            await etcd.txn([], [Op.put(prefix + b"x", b"1"), Op.put(prefix + b"y", b"2")])
            await etcd.delete(prefix + b"k")
            batches: list[WatchBatch] = []
            async for batch in watch:
                batches.append(batch)
                if sum(len(b.events) for b in batches) >= 8:
                    break
        events = [event for batch in batches for event in batch.events]
        assert [e.kv.value for e in events[:5]] == [b"0", b"1", b"2", b"3", b"4"]
        assert [e.prev_kv.value if e.prev_kv else None for e in events[:5]] == [None, b"0", b"1", b"2", b"3"]
        revisions = [e.kv.mod_revision for e in events]
        assert revisions == sorted(revisions) and revisions[5] == revisions[6]  # one txn, one revision
        assert events[-1].type is EventType.DELETE and events[-1].kv.key == prefix + b"k"
        assert events[-1].prev_kv is not None and events[-1].prev_kv.value == b"4"
        assert watch.statistics().next_revision == revisions[-1] + 1
        assert etcd.statistics().watches == 0


async def test_compacted_revision_raises_compacted(etcd: EtcdClient, prefix: bytes) -> None:
    with trio.fail_after(WAIT):
        first = (await etcd.put(prefix + b"k", b"1")).revision
        last = (await etcd.put(prefix + b"k", b"2")).revision
        await etcd.compact(last)
        with pytest.raises(Compacted) as raised:
            await etcd.range(prefix + b"k", revision=first)
        assert raised.value.compact_revision is None  # a range's error does not say
        async with etcd.watch(prefix + b"k", start_revision=first) as watch:
            with pytest.raises(Compacted) as raised:
                await watch.__anext__()
        assert raised.value.compact_revision == last
        # the caller re-lists and watches from there
        listed = await etcd.range(prefix + b"k")
        async with etcd.watch(prefix + b"k", start_revision=listed.revision + 1) as watch:
            await etcd.put(prefix + b"k", b"3")
            assert await collect(watch, 1) == [(EventType.PUT, prefix + b"k", listed.revision + 1)]


async def test_lease_grant_keepalive_revoke(etcd: EtcdClient, prefix: bytes) -> None:
    with trio.fail_after(WAIT):
        lease = await etcd.lease_grant(1)
        assert lease.id > 0 and lease.ttl == 2  # etcd's minimum
        await etcd.put(prefix + b"held", b"", lease=lease.id)
        assert (await etcd.range(prefix + b"held")).kvs[0].lease == lease.id
        assert await etcd.lease_keepalive(lease.id) == 2
        assert await etcd.lease_revoke(lease.id)
        assert (await etcd.range(prefix + b"held")).kvs == ()  # revoking deleted its key
        assert not await etcd.lease_revoke(lease.id)
        with pytest.raises(LeaseNotFound):
            await etcd.lease_keepalive(lease.id)


@pytest.mark.slow
async def test_a_key_goes_when_its_lease_expires(etcd: EtcdClient, prefix: bytes) -> None:
    with trio.fail_after(WAIT):
        lease = await etcd.lease_grant(2)
        await etcd.put(prefix + b"held", b"", lease=lease.id)
        for _ in range(6):  # kept alive for 3 s, longer than the TTL
            await trio.sleep(0.5)
            assert await etcd.lease_keepalive(lease.id) == 2
        assert (await etcd.range(prefix + b"held")).kvs
        kept_until = trio.current_time()
        while (await etcd.range(prefix + b"held")).kvs:
            await trio.sleep(0.05)
        after = trio.current_time() - kept_until
        assert 1.5 < after < 4.0, after  # about the TTL: never early
        with pytest.raises(LeaseNotFound):
            await etcd.lease_keepalive(lease.id)


async def test_unavailable_when_nothing_listens() -> None:
    endpoints = [f"127.0.0.1:{port}" for port in unused_ports(2)]
    with trio.fail_after(WAIT):
        async with EtcdClient(endpoints, timeout=0.2) as etcd:
            with pytest.raises(Unavailable) as raised:
                await etcd.range(b"k")
            assert raised.value.endpoints == tuple(f"http://{e}" for e in endpoints)
            with pytest.raises(Unavailable):  # refused: never sent, so safe to say "not applied"
                await etcd.put(b"k", b"v")
            async with etcd.watch(b"k", start_revision=1, patience=0.3) as watch:
                with pytest.raises(Unavailable):
                    await watch.__anext__()


async def test_a_lost_answer_is_retried_for_reads_not_writes() -> None:
    """A server that accepts and never answers: a read tries every endpoint and says
    Unavailable; a write stops at the first: OutcomeUnknown (it may have been applied)."""
    listeners = [trio.socket.socket() for _ in range(2)]
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            for sock in listeners:
                await sock.bind(("127.0.0.1", 0))
                sock.listen()

                async def swallow(sock: trio.socket.SocketType = sock) -> None:
                    accepted = []  # held open, never answered
                    try:
                        while True:
                            accepted.append((await sock.accept())[0])
                    finally:
                        for conn in accepted:
                            conn.close()

                nursery.start_soon(swallow)
            endpoints = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in listeners]
            async with EtcdClient(endpoints, timeout=0.1) as etcd:
                with pytest.raises(Unavailable) as raised:
                    await etcd.range(b"k")
                assert raised.value.why.count("ReadTimeout") == 2
                with pytest.raises(OutcomeUnknown):
                    await etcd.txn([Compare.version(b"k", "==", 0)], [Op.put(b"k", b"v")])
            nursery.cancel_scope.cancel()
    for sock in listeners:
        sock.close()


async def test_limits_are_named(etcd: EtcdClient, prefix: bytes, etcd_node: EtcdCluster) -> None:
    with trio.fail_after(WAIT):
        puts = [Op.put(prefix + b"%d" % i, b"") for i in range(129)]
        with pytest.raises(RequestTooLarge, match="at most 128 per branch"):
            await etcd.txn([], puts)
        with pytest.raises(RequestTooLarge, match="--max-request-bytes"):
            await etcd.put(prefix + b"big", bytes(2 * 1024 * 1024))
        # the server's own refusals read the same
        async with EtcdClient(etcd_node.endpoints, max_txn_ops=1000, max_request_bytes=1 << 30) as lax:
            with pytest.raises(RequestTooLarge, match="too many operations"):
                await lax.txn([], puts)
            with pytest.raises(RequestTooLarge, match="refused the request"):
                await lax.put(prefix + b"big", bytes(2 * 1024 * 1024))
        assert (await etcd.txn([], puts[:128])).succeeded


async def test_watch_resumes_on_another_member_when_its_member_is_killed(
    etcd_cluster: EtcdCluster,
) -> None:
    """The watch is on a follower; killing it moves the stream to another member, from the
    last delivered revision + 1: every acknowledged put is seen once, in order. Requests whose
    preferred endpoint died go to the next one."""
    with trio.fail_after(WAIT):
        leader = await etcd_cluster.leader()
        follower = next(m for m in etcd_cluster.members if m is not leader)
        endpoints = [follower.client_url] + [e for e in etcd_cluster.endpoints if e != follower.client_url]
        async with EtcdClient(endpoints) as etcd:
            start = (await etcd.put(b"w/start", b"")).revision
            async with etcd.watch(b"w/", prefix_end(b"w/"), start_revision=start + 1) as watch:
                assert watch.endpoint == follower.client_url
                acknowledged = [(await etcd.put(b"w/%03d" % i, b"")).revision for i in range(10)]
                seen = await until(watch, acknowledged[4])
                follower.kill()
                acknowledged += [(await etcd.put(b"w/%03d" % i, b"", retry=True)).revision
                                 for i in range(10, 20)]
                seen += await until(watch, acknowledged[-1])
                assert watch.endpoint != follower.client_url
                assert watch.statistics().resumes >= 1  # more if a heartbeat missed under load
            stats = etcd.statistics()
            assert stats.preferred != follower.client_url and stats.failovers >= 1
        # each once, in order, none missed (a put retried after a lost answer may add one)
        assert seen == sorted(set(seen)) and set(acknowledged) <= set(seen)


async def test_watch_leaves_a_member_that_went_silent(etcd_cluster: EtcdCluster) -> None:
    """A frozen member (SIGSTOP: its connections stay open, nothing comes) is found by the
    heartbeat read and the watch resumes on another member without losing an event."""
    with trio.fail_after(WAIT):
        leader = await etcd_cluster.leader()
        member = next(m for m in etcd_cluster.members if m is not leader)
        endpoints = [member.client_url] + [e for e in etcd_cluster.endpoints if e != member.client_url]
        others = [e for e in etcd_cluster.endpoints if e != member.client_url]
        async with EtcdClient(others) as writer, EtcdClient(endpoints, timeout=0.2) as etcd:
            start = (await writer.put(b"s/start", b"")).revision
            async with etcd.watch(b"s/", prefix_end(b"s/"), start_revision=start + 1, heartbeat=0.2) as watch:
                assert watch.endpoint == member.client_url
                member.freeze()
                try:
                    written = [(await writer.put(b"s/%d" % i, b"", retry=True)).revision for i in range(5)]
                    seen = await until(watch, written[-1])
                    assert watch.endpoint != member.client_url
                finally:
                    member.thaw()
        # every acknowledged write seen, once, in order (a put retried after a lost answer
        # under load may add one more revision)
        assert seen == sorted(set(seen)) and set(written) <= set(seen)


@pytest.mark.slow
async def test_writes_through_a_leader_kill_resolve_by_request_id(etcd_cluster: EtcdCluster) -> None:
    """The leader (where the watch is) is killed under a stream of compare-and-swap writes;
    each write whose answer is lost is resolved by reading back its request id, never by
    writing again blindly. Every write is applied exactly once and the watch sees them all."""
    leader = await etcd_cluster.leader()
    endpoints = [leader.client_url] + [e for e in etcd_cluster.endpoints if e != leader.client_url]
    key = b"counter"
    with trio.fail_after(3 * WAIT):
        async with EtcdClient(endpoints) as etcd:
            start = (await etcd.put(key, b"0")).revision
            async with etcd.watch(key, start_revision=start + 1) as watch:
                for n in range(1, 41):
                    if n == 10:
                        leader.kill()
                    await increment(etcd, key, n)
                seen = await collect(watch, 40)
        values = [int(v) for v in (await read_values(etcd_cluster, key, start))]
        assert values == list(range(1, 41))
        assert len(seen) == 40


async def increment(etcd: EtcdClient, key: bytes, n: int) -> None:
    """Set ``key`` from n - 1 to n exactly once, with the request id ``n`` in the value."""
    while True:
        try:
            current = (await etcd.range(key)).kvs[0]
            if int(current.value) == n:
                return  # a lost answer that was applied
            assert int(current.value) == n - 1
            await etcd.txn([Compare.mod_revision(key, "==", current.mod_revision)], [Op.put(key, b"%d" % n)])
        except (OutcomeUnknown, NoQuorum, Unavailable):
            await trio.sleep(0.05)


async def read_values(cluster: EtcdCluster, key: bytes, start: int) -> list[bytes]:
    """Every value ``key`` took after revision ``start``, from a fresh watch."""
    alive = [m.client_url for m in cluster.members if m.process and m.process.poll() is None]
    async with EtcdClient(alive) as etcd:
        now = (await etcd.range(key)).revision
        values: list[bytes] = []
        async with etcd.watch(key, start_revision=start + 1) as watch:
            async for batch in watch:
                values += [event.kv.value for event in batch.events]
                if batch.events and batch.events[-1].kv.mod_revision >= now:
                    return values
    return values

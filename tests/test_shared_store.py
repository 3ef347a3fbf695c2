"""Two coordinators sharing one workspace in a real etcd, in one process (the library's
``open_coordinator(store=...)``): one graph, the one-machine semantics across them — a want
seen by the other, ``ready`` pushed across, fail-fast across, no cycle however the halves race,
holds whose holder's lease ends failed elsewhere, reads no older than the call."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from coordinator import (
    AlreadyInStatus,
    CycleError,
    DependencyFailed,
    LocalCoordinator,
    Status,
    StoreUnavailable,
    open_coordinator,
)
from coordinator._lease import HOLDER_GONE

from .etcd_support import (
    EtcdCluster,
    etcd_cluster,
    etcd_cluster_shared,
    etcd_node,
    requires_etcd,
)

__all__ = ["etcd_cluster", "etcd_cluster_shared", "etcd_node"]  # fixtures, used by name

pytestmark = requires_etcd
WAIT = 10.0  # seconds: an upper bound for any one step (each takes milliseconds when correct)


def store_url(cluster: EtcdCluster, workspace: str) -> str:
    hosts = ",".join(e.removeprefix("http://") for e in cluster.endpoints)
    return f"etcd://{hosts}/{workspace}"


@pytest.fixture
def url(etcd_node: EtcdCluster) -> str:
    """A workspace of this test's own on the module's node."""
    return store_url(etcd_node, f"ws-{uuid.uuid4().hex[:12]}")


@asynccontextmanager
async def two(url: str) -> AsyncIterator[tuple[LocalCoordinator, LocalCoordinator]]:
    async with open_coordinator(store=url) as a, open_coordinator(store=url) as b:
        yield a, b


async def test_a_want_and_a_completion_on_one_are_seen_by_the_other(url: str) -> None:
    with trio.fail_after(WAIT):
        async with two(url) as (a, b):
            await a.unit("claude").want("git")
            info = await b.unit("claude").info()  # a read no older than the call
            assert info.status is Status.PENDING and not info.ready
            assert [d.depends_on for d in info.dependencies] == ["git"]
            async with trio.open_nursery() as nursery:
                woken = trio.Event()

                async def wait_on_b() -> None:
                    await b.unit("claude").ready()
                    woken.set()

                nursery.start_soon(wait_on_b)
                await trio.testing.wait_all_tasks_blocked()
                await a.unit("git").start()
                assert not woken.is_set()
                await a.unit("git").complete()
                await woken.wait()  # pushed from a's commit through b's mirror
            assert (await b.unit("git").info()).status is Status.COMPLETED
            await b.unit("claude").start()
            assert (await a.unit("claude").info()).status is Status.STARTED


async def test_a_failure_on_one_blocks_the_waiters_on_the_other(url: str) -> None:
    with trio.fail_after(WAIT):
        async with two(url) as (a, b):
            await b.unit("claude").want("git")
            async with trio.open_nursery() as nursery:
                failed: list[DependencyFailed] = []

                async def wait_on_b() -> None:
                    with pytest.raises(DependencyFailed) as caught:
                        await b.unit("claude").ready()
                    failed.append(caught.value)

                nursery.start_soon(wait_on_b)
                await trio.testing.wait_all_tasks_blocked()
                await a.unit("git").start()
                await a.unit("git").fail("clone failed")
            assert failed[0].unit == "git" and failed[0].reason == "clone failed"


async def test_two_halves_of_a_cycle_added_at_once_never_both_land(url: str) -> None:
    with trio.fail_after(WAIT * 3):
        async with two(url) as (a, b):
            for round_ in range(20):
                x, y = f"x{round_}", f"y{round_}"
                results: dict[str, BaseException | None] = {}

                async def want(coord: LocalCoordinator, unit: str, dep: str) -> None:
                    try:
                        await coord.unit(unit).want(dep)
                        results[unit] = None
                    except CycleError as error:
                        results[unit] = error

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(want, a, x, y)
                    nursery.start_soon(want, b, y, x)
                refused = [e for e in results.values() if e is not None]
                assert len(refused) == 1, results
                assert isinstance(refused[0], CycleError)
                assert set(refused[0].path) == {x, y}
                landed = {(x, y) if results[x] is None else (y, x)}
                for coord in (a, b):  # both coordinators have that one edge, and only it
                    edges = {(u, d.depends_on) for u in (x, y)
                             for d in (await coord.unit(u).info()).dependencies}
                    assert edges == landed


@pytest.mark.slow  # the lease's TTL (5 s); tests/test_cli_shared.py kills a serve in the fast run
async def test_a_hold_whose_coordinator_goes_fails_on_the_other(url: str) -> None:
    with trio.fail_after(WAIT * 2):
        async with open_coordinator(store=url) as b:
            await b.unit("agent").want("build")
            async with open_coordinator(store=url) as a:
                held = a.unit("build").hold()
                await held.__aenter__()  # held, and never let go: its holder "dies" with a
                assert (await b.unit("build").info()).status is Status.STARTED
            # a is gone, its lease revoked: the hold went with it, and b fails the unit
            with pytest.raises(DependencyFailed) as caught:
                await b.unit("agent").ready()
            assert caught.value.unit == "build" and caught.value.reason == HOLDER_GONE
            info = await b.unit("build").info()
            assert info.status is Status.FAILED and info.reason == HOLDER_GONE


async def test_an_apply_bigger_than_one_txn_is_committed_in_parts(url: str) -> None:
    # etcd takes at most 128 operations per txn by default: 250 units take three parts
    graph = {f"u{i:03}": ({f"u{i - 1:03}": Status.COMPLETED} if i else {}) for i in range(250)}
    with trio.fail_after(WAIT):
        async with two(url) as (a, b):
            await a.apply(graph)
            infos = await b.list()
            assert len(infos) == 250
            assert all(i.status is Status.PENDING for i in infos)
            assert [d.depends_on for d in (await b.unit("u249").info()).dependencies] == ["u248"]
            await a.apply(graph)  # the same again: nothing to write
            with pytest.raises(CycleError) as caught:
                await b.apply({"u000": {"u249": Status.COMPLETED}})
            assert caught.value.path[0] == "u000" and "u249" in caught.value.path


async def test_a_coordinator_started_later_has_the_workspace_s_history(url: str) -> None:
    clock = iter(range(1_000, 2_000)).__next__

    def ticking() -> float:  # a wall clock that moves on by a second per event
        return float(clock())

    with trio.fail_after(WAIT):
        async with open_coordinator(store=url, clock=ticking) as a:
            await a.unit("claude").want("git")
            await a.unit("git").start()
            await a.unit("git").complete()
            mine = (await a.history()).events
        async with open_coordinator(store=url) as b:  # started after it all happened
            theirs = (await b.history()).events
    def shape(events: object) -> list[tuple[object, ...]]:
        return [(e.unit, e.old, e.new, e.depends_on, e.requires, e.time) for e in events]  # type: ignore[attr-defined]

    assert shape(theirs) == shape(mine)
    assert [e.seq for e in theirs] == [e.seq for e in mine]  # the store's revisions, scaled
    assert [(e.unit, e.new) for e in mine if not e.is_edge] == [
        ("claude", Status.PENDING), ("git", Status.STARTED), ("git", Status.COMPLETED)]


@pytest.mark.slow  # a commit whose answer is lost is resolved for up to 10 s
async def test_without_a_quorum_a_mutation_says_so_and_a_read_answers_from_the_copy(
    etcd_cluster: EtcdCluster,
) -> None:
    url = store_url(etcd_cluster, f"ws-{uuid.uuid4().hex[:12]}")
    with trio.fail_after(WAIT * 3):
        async with two(url) as (a, b):
            await a.unit("claude").want("git")
            await a.unit("git").start()
            leader = await etcd_cluster.leader()
            for member in etcd_cluster.members:
                if member is not leader:
                    member.kill()  # 1 of 3 left: no quorum
            with pytest.raises(StoreUnavailable) as caught:
                await b.unit("git").complete()
            assert caught.value.applied in ("no", "unknown")
            assert "shared store did not confirm" in str(caught.value)
            with trio.fail_after(5):  # the copy answers (stale is all there is)
                info = await b.unit("git").info()
            assert info.status is Status.STARTED
            for member in etcd_cluster.members:
                if member is not leader:
                    member.start()
            await etcd_cluster.wait_healthy()
            try:  # the store is back: so is every write
                await b.unit("git").complete()
            except AlreadyInStatus:  # the first one was applied after all: it said it might be
                assert caught.value.applied == "unknown"
            assert (await a.unit("claude").info()).ready


async def test_a_mirror_behind_a_compaction_loads_the_workspace_again(url: str) -> None:
    from coordinator._inbox import Inbox
    from coordinator._messages import RemoteChange
    from coordinator.store._etcd_store import open_etcd_store

    with trio.fail_after(WAIT):
        async with open_coordinator(store=url) as a:
            await a.unit("claude").want("git")
            await a.unit("git").start()
            await a.unit("git").complete()
        async with open_etcd_store(url) as (store, loaded), trio.open_nursery() as nursery:
            client = store._client
            await client.compact(loaded.revision)  # the changes before it are gone
            registry: Inbox[object] = Inbox(64)
            await nursery.start(store.mirror, registry, 1)  # behind the compaction
            await store.wait_applied(loaded.revision)
            assert registry.receiver is not None
            got: dict[str, object] = {}
            while True:
                try:
                    message = registry.receiver.receive_nowait()
                except trio.WouldBlock:
                    break
                assert isinstance(message, RemoteChange)
                for unit, record in message.units:
                    got[unit] = (record.status, dict(record.requirements), message.revision)
            nursery.cancel_scope.cancel()
    assert got == {
        "claude": (Status.PENDING, {"git": Status.COMPLETED}, loaded.revisions["claude"]),
        "git": (Status.COMPLETED, {}, loaded.revisions["git"]),
    }


async def test_wants_that_come_together_are_committed_together_and_a_cycle_refuses_one(
    url: str,
) -> None:
    with trio.fail_after(WAIT):
        async with two(url) as (a, b):
            results: dict[str, BaseException | None] = {}

            async def want(unit: str, dep: str) -> None:
                try:
                    await a.unit(unit).want(dep)
                    results[unit] = None
                except CycleError as error:
                    results[unit] = error

            async with trio.open_nursery() as nursery:  # queued behind one another's commit
                for n in range(20):
                    nursery.start_soon(want, f"x{n}", f"y{n}")
                nursery.start_soon(want, "y0", "x0")  # closes a cycle with x0 -> y0
            refused = {u: e for u, e in results.items() if e is not None}
            assert len(results) == 21 and len(refused) == 1, refused
            (loser,) = refused
            assert loser in ("x0", "y0") and set(refused[loser].path) == {"x0", "y0"}
            for coord in (a, b):
                edges = {(u, d.depends_on) for u in [*results, *(f"y{n}" for n in range(20))]
                         for d in (await coord.unit(u).info()).dependencies}
                expected = {(f"x{n}", f"y{n}") for n in range(1, 20)}
                expected.add(("y0", "x0") if loser == "x0" else ("x0", "y0"))
                assert edges == expected


async def test_a_coordinator_starts_on_a_compacted_workspace_with_the_history_kept(
    url: str,
) -> None:
    from coordinator.store._etcd_store import open_etcd_store

    with trio.fail_after(WAIT):
        async with open_coordinator(store=url) as a:
            await a.unit("git").start()
            await a.unit("git").complete()
        async with open_etcd_store(url) as (store, loaded):
            await store._client.compact(loaded.revision)  # etcd's auto-compaction, at once
        async with open_coordinator(store=url) as b:  # starts, and reads what is kept
            assert (await b.unit("git").info()).status is Status.COMPLETED
            events = (await b.history()).events
            await b.unit("git").start()  # a re-run after the compaction
        async with open_coordinator(store=url) as c:
            later = (await c.history()).events
    # the compaction kept only the latest revision's record: git seen first as completed
    assert [(e.unit, e.old, e.new) for e in events] == [
        ("git", Status.NOT_REGISTERED, Status.COMPLETED)]
    assert [(e.unit, e.old, e.new) for e in later] == [
        ("git", Status.NOT_REGISTERED, Status.COMPLETED), ("git", Status.COMPLETED, Status.STARTED)]


async def test_every_coordinator_numbers_the_same_events_the_same_way(url: str) -> None:
    from coordinator._shared import SEQ_PER_REVISION
    from coordinator.store._etcd_store import open_etcd_store

    with trio.fail_after(WAIT):
        async with two(url) as (a, b):
            async with trio.open_nursery() as nursery:  # changes through both at once
                nursery.start_soon(a.apply, {"claude": {"git": Status.COMPLETED}, "git": {}})
                nursery.start_soon(b.unit("lint").want, "git")
            await b.unit("git").start()
            await a.unit("git").complete()
            ours, theirs = (await a.history()).events, (await b.history()).events
        async with open_etcd_store(url) as (store, _):
            _, git_revision = await store.read_unit("git")
    assert ours == theirs  # seq, time, unit, change: all the same on both
    seqs = [e.seq for e in ours]
    assert seqs == sorted(set(seqs))
    assert ours[-1].unit == "git" and ours[-1].new is Status.COMPLETED
    assert ours[-1].seq // SEQ_PER_REVISION == git_revision  # the revision that completed it

"""The etcd store's data layer against a real single-node etcd: the key layout and record codec,
load (paged, at one revision), follow (one Change per revision, Relist after a compaction), and
commit's compares, including the cycle race between two coordinators' commits."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from coordinator._journal import UnitRecord
from coordinator._status import Status
from coordinator.store._etcd import EtcdClient
from coordinator.store._etcd_errors import RequestTooLarge
from coordinator.store._etcd_state import (
    Change,
    Conflict,
    Layout,
    Relist,
    StoreCorrupt,
    commit,
    decode_unit,
    encode_unit,
    follow,
    load,
)
from coordinator.store._etcd_wire import RangeResult

from .etcd_support import EtcdCluster, etcd, etcd_node, layout, requires_etcd

__all__ = ["etcd", "etcd_node", "layout"]  # fixtures, used by name

pytestmark = requires_etcd
WAIT = 10.0  # seconds: an upper bound for any one step (each takes milliseconds when correct)

PENDING = UnitRecord(Status.PENDING)




def needs(*deps: str) -> UnitRecord:
    return UnitRecord(Status.PENDING, requirements={dep: Status.COMPLETED for dep in deps})


# -- layout and codec (no etcd)


def test_layout_keys() -> None:
    layout = Layout("ci")
    assert layout.prefix == b"/unitsync/ci/"
    assert layout.end == b"/unitsync/ci0"
    assert layout.unit("a/b é") == "/unitsync/ci/units/a/b é".encode()
    assert layout.hold("git") == b"/unitsync/ci/holds/git"
    assert layout.graph == b"/unitsync/ci/graph"
    assert layout.name(layout.unit("a/b"), layout.units) == "a/b"
    for bad in ("", "a/b", "/", None):
        with pytest.raises(ValueError, match="workspace"):
            Layout(bad)  # type: ignore[arg-type]
    with pytest.raises(StoreCorrupt, match="not a unit name"):
        layout.name(layout.units + b"\xff", layout.units)


@pytest.mark.parametrize(
    "record",
    [
        UnitRecord(Status.PENDING),
        UnitRecord(Status.STARTED, "", {}, held=True),
        UnitRecord(Status.FAILED, "exit 3 — «ünïcode»"),
        UnitRecord(Status.SKIPPED, "dep failed", {"git": Status.FINISHED, "b/c": Status.STARTED}),
        UnitRecord(Status.COMPLETED, "", {"git": Status.COMPLETED}),
    ],
)
def test_codec_round_trip(record: UnitRecord) -> None:
    value = encode_unit(record)
    compact = json.dumps(json.loads(value), ensure_ascii=False, separators=(",", ":"))
    assert value == compact.encode()  # compact, UTF-8 kept as is
    assert decode_unit(b"k", value) == record


def test_codec_is_compact_and_omits_defaults() -> None:
    assert encode_unit(PENDING) == b'{"status":"pending","reason":""}'
    held = UnitRecord(Status.STARTED, "", {"b": Status.STARTED, "a": Status.COMPLETED}, True)
    assert encode_unit(held) == (
        b'{"status":"started","reason":"","held":true,'
        b'"requirements":{"a":"completed","b":"started"}}'
    )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "not a unit record"),
        (b'{"status":"pending"}', "not a unit record"),
        (b'{"status":3,"reason":""}', "not a unit record"),
        (b'{"status":"bogus","reason":""}', "bad value"),
        (b'{"status":"","reason":""}', "not one a registered unit"),
        (b'{"status":"finished","reason":""}', "not one a registered unit"),
        (b'{"status":"started","reason":"","held":1}', "held must be"),
        (b'{"status":"pending","reason":"","requirements":[["a","completed"]]}', "bad value"),
        (b'{"status":"pending","reason":"","requirements":{"a":"pending"}}', "requirement on 'a'"),
        (b'{"status":"pending","reason":"","requirements":{"a":7}}', "bad value"),
        (b'{"status":"pending","reason":"","requirements":{"":"started"}}', "bad value"),
        (b'{"status":"pending","reason":"","extra":1}', "unknown fields"),
    ],
)
def test_codec_refuses_bad_values_naming_the_key(value: bytes, why: str) -> None:
    with pytest.raises(StoreCorrupt, match=why) as raised:
        decode_unit(b"/unitsync/ci/units/git", value)
    assert "/unitsync/ci/units/git" in str(raised.value)
    assert raised.value.key == b"/unitsync/ci/units/git"


# -- load


async def test_load_pages_at_one_revision(
    etcd: EtcdClient, etcd_node: EtcdCluster, layout: Layout
) -> None:
    with trio.fail_after(WAIT):
        empty = await load(etcd, layout)
        assert empty.state == {} and empty.graph_revision == 0 and empty.revision > 0
        records = {f"u{i}": needs(f"u{i - 1}") if i else PENDING for i in range(5)}
        revision = await commit(
            etcd, layout, records, unit_revisions=dict.fromkeys(records, 0), graph_revision=0
        )
        await etcd.put(layout.hold("u0"), b"coordinator-1")
        await etcd.put(layout.prefix + b"members/1", b"{}")  # not ours to read: skipped
        await etcd.put(b"/unitsync/" + layout.workspace.encode() + b"x/units/a", b"junk")
        for page in (1, 2, 1000):
            loaded = await load(etcd, layout, page=page)
            assert loaded.state == records
            assert loaded.revisions == dict.fromkeys(records, revision)
            assert loaded.graph_revision == revision
            assert loaded.holds == {"u0": "coordinator-1"}
            assert loaded.revision >= revision + 2

        # the pages are read at the first page's revision: a write between pages is not seen
        async with WriteBetweenPages(etcd_node.endpoints, layout.unit("u9")) as other:
            loaded = await load(other, layout, page=1)
        assert loaded.state == records and other.written > loaded.revision
        assert (await load(etcd, layout)).state == {**records, "u9": PENDING}


class WriteBetweenPages(EtcdClient):
    """A client that, after the first range it reads, writes a pending unit at ``key``."""

    def __init__(self, endpoints: list[str], key: bytes) -> None:
        super().__init__(endpoints)
        self.key, self.written = key, 0

    async def range(self, *args: Any, **kwargs: Any) -> RangeResult:
        result = await super().range(*args, **kwargs)
        if not self.written:
            self.written = (await self.put(self.key, encode_unit(PENDING))).revision
        return result


async def test_load_refuses_a_corrupt_value(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        await etcd.put(layout.unit("git"), b'{"status":"sleeping","reason":""}')
        with pytest.raises(StoreCorrupt, match="units/git"):
            await load(etcd, layout)


# -- follow


async def test_follow_sees_each_commit_in_order(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        loaded = await load(etcd, layout)
        async with follow(etcd, layout, loaded.revision) as changes:
            first = await commit(
                etcd, layout, {"git": PENDING, "claude": needs("git")},
                unit_revisions={"git": 0, "claude": 0}, graph_revision=0,
            )
            started = UnitRecord(Status.STARTED, held=True)
            second = await commit(
                etcd, layout, {"git": started}, unit_revisions={"git": first}, graph_revision=None
            )
            hold = (await etcd.put(layout.hold("git"), b"c1")).revision
            release = (await etcd.delete(layout.hold("git"))).revision
            seen: list[Change] = []
            async for change in changes:
                if change.units or change.holds or change.graph:  # not a progress notification
                    seen.append(change)
                if change.revision >= release:
                    break
        assert seen == [
            Change(first, (("claude", needs("git")), ("git", PENDING)), graph=True),
            Change(second, (("git", started),)),
            Change(hold, holds=(("git", "c1"),)),
            Change(release, holds=(("git", None),)),
        ]


async def test_follow_raises_relist_after_compaction(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        old = await load(etcd, layout)
        first = await commit(etcd, layout, {"a": PENDING}, unit_revisions={"a": 0}, graph_revision=None)
        last = await commit(etcd, layout, {"a": needs("b")}, unit_revisions={"a": first},
                            graph_revision=0)
        await etcd.compact(last)
        async with follow(etcd, layout, old.revision) as changes:
            with pytest.raises(Relist) as raised:
                await changes.__anext__()
        assert raised.value.compact_revision == last
        # the caller loads again and follows from there
        again = await load(etcd, layout)
        assert again.state == {"a": needs("b")} and again.revisions == {"a": last}
        async with follow(etcd, layout, again.revision) as changes:
            done = await commit(etcd, layout, {"a": UnitRecord(Status.COMPLETED)},
                                unit_revisions=again.revisions, graph_revision=None)
            change = await changes.__anext__()
        assert change == Change(done, (("a", UnitRecord(Status.COMPLETED)),))


# -- commit


async def test_commit_conflicts_when_a_unit_changed(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        created = await commit(etcd, layout, {"x": PENDING}, unit_revisions={"x": 0},
                               graph_revision=None)
        with pytest.raises(Conflict) as raised:  # 0: must not exist, and it does
            await commit(etcd, layout, {"x": PENDING}, unit_revisions={"x": 0}, graph_revision=None)
        assert raised.value.revision >= created

        mine = await load(etcd, layout)
        theirs = await commit(etcd, layout, {"x": UnitRecord(Status.STARTED)},
                              unit_revisions=mine.revisions, graph_revision=None)
        with pytest.raises(Conflict) as raised:
            await commit(etcd, layout, {"x": UnitRecord(Status.SKIPPED, "no")},
                         unit_revisions=mine.revisions, graph_revision=None)
        assert raised.value.revision >= theirs
        # nothing of the refused commit was written, even a unit that had not changed
        with pytest.raises(Conflict):
            await commit(etcd, layout, {"x": PENDING, "new": PENDING},
                         unit_revisions={"x": mine.revisions["x"], "new": 0}, graph_revision=None)
        after = await load(etcd, layout)
        assert after.state == {"x": UnitRecord(Status.STARTED)}
        assert after.revisions == {"x": theirs}


async def test_commit_limits(etcd: EtcdClient, layout: Layout) -> None:
    with trio.fail_after(WAIT):
        many = {f"u{i:03}": PENDING for i in range(128)}
        with pytest.raises(RequestTooLarge, match="129 txn operations.*split it"):
            await commit(etcd, layout, many, unit_revisions=dict.fromkeys(many, 0), graph_revision=0)
        revision = await commit(
            etcd, layout, many, unit_revisions=dict.fromkeys(many, 0), graph_revision=None
        )
        assert (await load(etcd, layout)).revisions == dict.fromkeys(many, revision)
        with pytest.raises(ValueError, match="no revision to compare"):
            await commit(etcd, layout, {"a": PENDING}, unit_revisions={}, graph_revision=None)
        with pytest.raises(ValueError, match="nothing"):
            await commit(etcd, layout, {}, unit_revisions={}, graph_revision=None)


async def test_two_coordinators_racing_the_halves_of_a_cycle(
    etcd_node: EtcdCluster, layout: Layout
) -> None:
    """Each round, two clients with their own loaded state each commit one half of a cycle
    (x needs y; y needs x) with the graph compare, at once: exactly one wins, the other gets
    Conflict, and after catching up it sees the winner's edge (and would refuse its own)."""
    async with EtcdClient(etcd_node.endpoints) as one, EtcdClient(etcd_node.endpoints) as two:
        with trio.fail_after(WAIT):
            for round_ in range(20):
                x, y = f"x{round_}", f"y{round_}"
                await commit(one, layout, {x: PENDING, y: PENDING},
                             unit_revisions={x: 0, y: 0}, graph_revision=None)
                outcomes: dict[str, int | Conflict] = {}
                go = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(half, one, layout, x, y, go, outcomes)
                    nursery.start_soon(half, two, layout, y, x, go, outcomes)
                    await trio.sleep(0.01)
                    go.set()
                won = [unit for unit, outcome in outcomes.items() if isinstance(outcome, int)]
                lost = [outcome for outcome in outcomes.values() if isinstance(outcome, Conflict)]
                assert len(won) == 1 and len(lost) == 1, outcomes
                assert lost[0].revision >= outcomes[won[0]]  # type: ignore[operator]
                after = await load(two, layout)
                assert after.graph_revision == outcomes[won[0]]
                (winner,) = won
                loser = y if winner == x else x
                assert after.state[winner] == needs(loser) and after.state[loser] == PENDING


async def half(
    client: EtcdClient, layout: Layout, unit: str, dep: str, go: trio.Event,
    outcomes: dict[str, int | Conflict],
) -> None:
    """One coordinator's half of the cycle: load, wait for the start, commit ``unit`` needs
    ``dep`` with the graph compare; its revision or Conflict goes to ``outcomes[unit]``."""
    state = await load(client, layout)
    assert state.state[unit] == PENDING and dep in state.state
    await go.wait()
    try:
        outcomes[unit] = await commit(
            client, layout, {unit: needs(dep)},
            unit_revisions={unit: state.revisions[unit]},
            graph_revision=state.graph_revision,
        )
    except Conflict as conflict:
        outcomes[unit] = conflict

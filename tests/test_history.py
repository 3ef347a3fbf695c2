"""The kept history: what is recorded, paging, retention, restarts, and ``watch`` from a seq."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from coordinator import Coordinator, Event, Lagged, Status, connect, open_coordinator
from coordinator._history import MAX_HISTORY_PAGE, History
from coordinator._journal import Journal
from coordinator.rpc._schema import schema

from .rpc_support import raw_client, serving
from .waits import WAIT

NR, P, S, C, F, SK = (Status.NOT_REGISTERED, Status.PENDING, Status.STARTED, Status.COMPLETED,
                      Status.FAILED, Status.SKIPPED)


def fake_clock(start: float = 1_000.0, step: float = 0.25) -> Callable[[], float]:
    """A wall clock that moves ``step`` seconds each time it is read."""
    ticks = itertools.count()
    return lambda: start + step * next(ticks)


def status_event(seq: int, unit: str, old: Status, new: Status, reason: str = "") -> Event:
    return Event(seq=seq, time=float(seq), unit=unit, old=old, new=new, reason=reason)


def row(event: Event) -> tuple[object, ...]:
    if event.is_edge:
        return (event.seq, event.unit, "needs", event.depends_on, event.requires)
    return (event.seq, event.unit, event.old, event.new, event.reason)


async def scripted(coord: Coordinator) -> None:
    """git -> claude, a failure, a re-run, a skip."""
    await coord.unit("claude").want("git")
    await coord.unit("claude").want("git")  # the same edge again: nothing new
    await coord.unit("git").start()
    await coord.unit("git").fail("exit code 1")
    await coord.unit("report").want("claude", requires=Status.FINISHED)
    await coord.unit("claude").skip("git failed")
    await coord.unit("git").start()
    await coord.unit("git").complete()


SCRIPTED = [
    (1, "claude", NR, P, ""),
    (2, "claude", "needs", "git", C),
    (3, "git", NR, S, ""),
    (4, "git", S, F, "exit code 1"),
    (5, "report", NR, P, ""),
    (6, "report", "needs", "claude", Status.FINISHED),
    (7, "claude", P, SK, "git failed"),
    (8, "git", F, S, ""),
    (9, "git", S, C, ""),
]


# --- the History store --------------------------------------------------------------------


def test_history_pages_by_seq_and_by_unit() -> None:
    history = History(10)
    for seq in range(1, 8):
        history.append(status_event(seq, "ab"[seq % 2], P, S))
    page = history.page(after=2, limit=3)
    assert [e.seq for e in page.events] == [3, 4, 5] and page.more
    assert (page.oldest, page.last) == (1, 7)
    assert [e.seq for e in history.page(after=5).events] == [6, 7]
    assert not history.page(after=5).more
    assert [e.seq for e in history.page(unit="b").events] == [1, 3, 5, 7]
    newest = history.page(unit="b", limit=2, newest=True)
    assert [e.seq for e in newest.events] == [5, 7] and newest.more
    assert history.page(unit="nobody").events == ()
    assert history.page(after=7).events == () and not history.page(after=7).more


def test_history_keeps_the_newest_and_drops_the_oldest_from_every_index() -> None:
    history = History(3)
    for seq in range(1, 3001):
        history.append(status_event(seq, f"u{seq % 4}", P, S))
    assert len(history) == 3
    assert [e.seq for e in history.events()] == [2998, 2999, 3000]
    assert (history.oldest, history.last) == (2998, 3000)
    assert [e.seq for e in history.page(unit="u0").events] == [3000]
    assert history.page(unit="u1").events == ()  # 2997 was its last: dropped
    history.append(status_event(3000, "late", P, S))  # a seq already seen: ignored
    assert history.last == 3000 and len(history) == 3


def test_a_history_of_zero_keeps_nothing_but_counts() -> None:
    history = History(0)
    history.append(status_event(1, "a", P, S))
    assert (len(history), history.oldest, history.last) == (0, 0, 1)
    with pytest.raises(ValueError):
        History(-1)


def test_a_page_is_at_most_the_maximum() -> None:
    history = History(MAX_HISTORY_PAGE + 5)
    for seq in range(1, MAX_HISTORY_PAGE + 6):
        history.append(status_event(seq, "a", P, S))
    page = history.page(limit=MAX_HISTORY_PAGE * 2)
    assert len(page.events) == MAX_HISTORY_PAGE and page.more


# --- what the coordinator records -----------------------------------------------------------


async def test_every_status_change_and_new_edge_is_kept_in_order(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await scripted(coord)
        page = await coord.history()
    assert [row(e) for e in page.events] == SCRIPTED
    assert (page.more, page.oldest, page.last) == (False, 1, 9)
    claude = await coord.history(unit="claude")
    assert [e.seq for e in claude.events] == [1, 2, 7]
    last = await coord.history(unit="git", newest=True, limit=1)
    assert [row(e) for e in last.events] == [SCRIPTED[-1]] and last.more


async def test_events_carry_the_clock_they_were_made_with() -> None:
    with trio.fail_after(WAIT):
        async with open_coordinator(clock=fake_clock()) as coord:
            await scripted(coord)
            page = await coord.history()
    assert [e.time for e in page.events] == [1_000 + 0.25 * i for i in range(9)]


async def test_a_replaced_requirement_is_a_new_edge() -> None:
    with trio.fail_after(WAIT):
        async with open_coordinator() as coord:
            await coord.unit("claude").want("git")
            await coord.unit("claude").want("git", "dotfiles", requires=Status.STARTED)
            page = await coord.history(after=1)
    assert [row(e) for e in page.events] == [
        (2, "claude", "needs", "git", C),
        (3, "claude", "needs", "git", S),
        (4, "claude", "needs", "dotfiles", S),
    ]


async def test_bad_history_arguments_are_refused(coord: Coordinator) -> None:
    with trio.fail_after(WAIT), pytest.raises(Exception) as caught:
        await coord.history(unit="bad\nname")
    assert getattr(caught.value, "code", "") == "unitsync.invalid-name"


# --- retention and restarts -----------------------------------------------------------------


async def test_the_history_survives_a_restart_and_seq_goes_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with trio.fail_after(WAIT):
        async with open_coordinator(state=state) as coord:
            await scripted(coord)
        async with open_coordinator(state=state) as coord:
            page = await coord.history()
            assert [row(e) for e in page.events] == SCRIPTED
            await coord.unit("later").register()
            assert [row(e) for e in (await coord.history(after=9)).events] == [
                (10, "later", NR, P, "")
            ]


async def test_a_restart_keeps_only_the_newest(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with trio.fail_after(WAIT):
        async with open_coordinator(state=state, history=4) as coord:
            await scripted(coord)
            assert [e.seq for e in (await coord.history()).events] == [6, 7, 8, 9]
        async with open_coordinator(state=state, history=2) as coord:
            page = await coord.history()
    assert [row(e) for e in page.events] == SCRIPTED[-2:]
    assert (page.oldest, page.last) == (8, 9)


async def test_without_a_history_seq_still_goes_on_across_compaction(tmp_path: Path) -> None:
    path = tmp_path / "state"
    journal, _ = Journal.open(path, fsync=False)
    with journal:
        journal.compact({}, events=[], last_seq=41)
    with trio.fail_after(WAIT):
        async with open_coordinator(state=path, history=0) as coord:
            async with coord.watch() as events:
                await coord.unit("a").register()
                assert (await anext(events)).seq == 42
            assert (await coord.history()).events == ()


def test_compaction_writes_the_kept_history_and_drops_the_log(tmp_path: Path) -> None:
    path = tmp_path / "state"
    events = [status_event(seq, "a", P, S) for seq in range(1, 6)]
    journal, _ = Journal.open(path, fsync=False)
    with journal:
        for event in events:
            journal.append(event)
        journal.flush()
        journal.compact({}, events=events[2:], last_seq=7)
        assert journal.statistics().log_records == 0
    journal, _ = Journal.open(path, fsync=False)
    with journal:
        assert journal.history == events[2:]
        assert journal.last_seq == 7


# --- watch from a seq -----------------------------------------------------------------------


async def test_watch_after_replays_then_goes_live_without_gap_or_duplicate(
    coord: Coordinator,
) -> None:
    with trio.fail_after(WAIT):
        await scripted(coord)
        async with coord.watch(after=4) as events:
            replayed = [await anext(events) for _ in range(2)]
            await coord.unit("late").register()  # published while the replay is under way
            rest = [await anext(events) for _ in range(4)]
    assert [e.seq for e in replayed + rest] == [5, 6, 7, 8, 9, 10]
    assert rest[-1].unit == "late"


async def test_watch_after_the_last_seq_is_live_only(coord: Coordinator) -> None:
    with trio.fail_after(WAIT):
        await scripted(coord)
        async with coord.watch(after=9) as events:
            await coord.unit("late").register()
            assert (await anext(events)).seq == 10


async def test_a_replay_longer_than_the_buffer_is_not_lagged() -> None:
    with trio.fail_after(WAIT):
        async with open_coordinator() as coord:
            for i in range(50):
                await coord.unit(f"u{i}").register()
            async with coord.watch(after=0, buffer=4) as events:
                seen = [(await anext(events)).seq for _ in range(50)]
    assert seen == list(range(1, 51))


async def test_watch_after_events_no_longer_kept_is_lagged_naming_the_oldest() -> None:
    with trio.fail_after(WAIT):
        async with open_coordinator(history=3) as coord:
            await scripted(coord)
            async with coord.watch(after=2) as events:
                with pytest.raises(Lagged) as caught:
                    await anext(events)
    assert (caught.value.seq, caught.value.oldest) == (2, 7)
    assert "the oldest kept is 7" in str(caught.value)


async def test_a_remote_replay_too_old_is_lagged_with_the_oldest(sock_dir: Path) -> None:
    with trio.fail_after(WAIT):
        async with open_coordinator(history=3) as server:
            await scripted(server)
            async with serving(server, sock_dir / "s.sock") as path, connect(path) as client:
                async with client.watch(after=1) as events:
                    with pytest.raises(Lagged) as caught:
                        await anext(events)
    assert (caught.value.seq, caught.value.oldest) == (1, 7)


async def test_peers_of_revision_2_are_not_sent_edges(sock_dir: Path) -> None:
    """A client built from an older schema says hello(2): it gets status changes only."""
    with trio.fail_after(WAIT):
        async with open_coordinator() as server:
            async with serving(server, sock_dir / "s.sock") as path, raw_client(path) as run:
                async def old_watch(state: dict) -> None:
                    await state["coord"].hello(2)
                    got: list[tuple[int, str, str]] = []
                    done = asyncio.Event()

                    class Watcher(schema().Watcher.Server):  # type: ignore[misc,name-defined]
                        async def event(self, event, _context, **kwargs):  # type: ignore[no-untyped-def]
                            got.append((event.seq, event.unit, str(event.new)))
                            if event.unit == "end":
                                done.set()

                    state["got"], state["done"] = got, done
                    state["sub"] = (await state["coord"].watch(Watcher(), False, 0)).subscription

                await run(old_watch)
                await server.unit("claude").want("git")
                await server.unit("end").register()

                async def result(state: dict) -> list[tuple[int, str, str]]:
                    await state["done"].wait()
                    return state["got"]

                got = await run(result)
    assert got == [(1, "claude", "pending"), (3, "end", "pending")]  # seq 2 was the edge


# --- the analysis of a scripted run, with a fake clock --------------------------------------


async def test_a_scripted_run_reads_back_as_timeline_blame_and_critical_chain() -> None:
    """The library's history, stamped by a fake clock (0.25 s a tick), through the same
    analysis and layouts the CLI prints."""
    from cli._history_text import blame_text, chain_json, timeline_json

    with trio.fail_after(WAIT):
        async with open_coordinator(clock=fake_clock(start=0.0)) as coord:
            await scripted(coord)
            await coord.unit("claude").start()
            await coord.unit("claude").complete()
            events = list((await coord.history()).events)
    rows = json.loads(timeline_json(events))
    assert [(r["elapsed"], r["unit_name"], r["event"]) for r in rows] == [
        (0.0, "claude", "registered (pending)"),
        (0.25, "claude", "depends on git (completed)"),
        (0.5, "git", "not registered -> started"),
        (0.75, "git", "started -> failed: exit code 1"),
        (1.0, "report", "registered (pending)"),
        (1.25, "report", "depends on claude (finished)"),
        (1.5, "claude", "pending -> skipped: git failed"),
        (1.75, "git", "failed -> started"),
        (2.0, "git", "started -> completed"),
        (2.25, "claude", "skipped -> started"),
        (2.5, "claude", "started -> completed"),
    ]
    assert (rows[9]["waited"], rows[9]["waited_for"]) == (0.75, "git")  # since its skip
    assert blame_text(events).splitlines() == [
        "RUNNING  WAITING   TOTAL  UNIT    STATUS",
        " 0.250s   1.000s  1.250s  git     completed",  # its re-run waited from its failure
        " 0.250s   0.750s  1.000s  claude  completed",
        "      -   1.500s  1.500s  report  still pending",
    ]
    assert [(l["unit_name"], l["at"], l["took"]) for l in json.loads(chain_json(events))] == [
        ("claude", 2.5, 0.25), ("git", 2.0, 0.25),
    ]


def test_a_full_history_holds_at_most_twice_what_it_keeps() -> None:
    """Dropped events are let go: the columns and each unit's index are cut down once half
    of them is dropped (a unit that keeps one event must not keep a thousand dropped)."""
    history = History(100)
    for seq in range(1, 50_001):
        history.append(status_event(seq, f"u{seq % 1000}", P, S))
    assert len(history) == 100 and history.oldest == 49_901
    assert len(history._seq) <= 2 * 100
    assert len(history._by_unit) == 100  # units with no kept event are gone
    assert sum(len(p.items) for p in history._by_unit.values()) <= 2 * 100
    assert [e.seq for e in history.page(unit="u999").events] == [49_999]


def test_a_frozen_copy_is_what_was_kept_when_it_was_taken(tmp_path: Path) -> None:
    """The journal writer compacts from a copy taken in the Trio thread and iterated in a
    worker thread while the history goes on."""
    history = History(3)
    for seq in range(1, 6):
        history.append(status_event(seq, "a", P, S))
    frozen = history.frozen()
    history.append(status_event(6, "b", P, S))  # after the copy: not in it
    path = tmp_path / "state"
    journal, _ = Journal.open(path, fsync=False)
    with journal:
        journal.compact({}, events=frozen, last_seq=frozen.last)
    journal, _ = Journal.open(path, fsync=False)
    with journal:
        assert [e.seq for e in journal.history] == [3, 4, 5]
        assert journal.last_seq == 5
    assert [e.seq for e in history.events()] == [4, 5, 6]

"""Tests for coordinator._journal: the crash-safe snapshot + log of the coordinator's state."""

from __future__ import annotations

import os
import re
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator import _journal
from coordinator._errors import UnitsyncError
from coordinator._journal import (
    Journal,
    JournalCorrupt,
    JournalError,
    StatusRecord,
    UnitRecord,
    WantRecord,
    apply,
    encode,
)
from coordinator._status import Status

P, S, C, F = Status.PENDING, Status.STARTED, Status.COMPLETED, Status.FAILED

#: One of each kind of record, with names and reasons that need escaping.
EVERY_KIND = [
    StatusRecord("git", P),
    StatusRecord("git", S),
    WantRecord("claude", {"git": C, "setup": S}),
    StatusRecord("git", C),
    StatusRecord('qu"ote\\ ünï 🚀', F, "exit 3\nsecond line"),
    WantRecord("only-wanted", ()),
    StatusRecord("claude", S),
    StatusRecord("job", S, held=True),
]


def fold(records: list[StatusRecord | WantRecord]) -> dict[str, UnitRecord]:
    state: dict[str, UnitRecord] = {}
    for record in records:
        apply(state, record)
    return state


def write(path: Path, records: list[StatusRecord | WantRecord], **options: object) -> None:
    """A journal at ``path`` holding ``records``, flushed one by one, then closed."""
    journal, _ = Journal.open(path, **options)  # type: ignore[arg-type]
    with journal:
        for record in records:
            journal.append(record)
            journal.flush()


def reopen(path: Path, **options: object) -> dict[str, UnitRecord]:
    journal, state = Journal.open(path, **options)  # type: ignore[arg-type]
    journal.close()
    return state


# --- records and replay --------------------------------------------------------------------


def test_round_trip_every_record_kind(tmp_path: Path) -> None:
    write(tmp_path / "state", EVERY_KIND)
    assert reopen(tmp_path / "state") == fold(EVERY_KIND)
    assert fold(EVERY_KIND)["claude"] == UnitRecord(S, "", {"git": C, "setup": S})
    assert fold(EVERY_KIND)["only-wanted"] == UnitRecord(P)
    assert fold(EVERY_KIND)["job"] == UnitRecord(S, held=True)
    assert fold(EVERY_KIND)["claude"].held is False


def test_line_format(tmp_path: Path) -> None:
    line = encode(WantRecord("claude", [("git", C)]))
    assert line == b'%08x {"op":"want","unit":"claude","requires":[["git","completed"]]}\n' % (
        int(line[:8], 16)
    )
    write(tmp_path / "state", EVERY_KIND)
    lines = (tmp_path / "state.log").read_bytes().decode().splitlines()
    assert lines[0].endswith(' {"op":"log","generation":0}')
    assert all(re.fullmatch(r"[0-9a-f]{8} \{.*\}", line) for line in lines)
    assert len(lines) == 1 + len(EVERY_KIND)
    assert "ünï 🚀" in lines[5]  # UTF-8, not \u escapes
    assert lines[-1].endswith(',"held":true}')  # only a held start says so
    assert '"held"' not in "".join(lines[:-1])


def test_replay_order() -> None:
    state = fold([WantRecord("a", {"b": S}), StatusRecord("a", S)])
    assert state == {"a": UnitRecord(S, "", {"b": S})}  # want registers pending, status keeps edges
    apply(state, WantRecord("a", {"b": C, "c": C}))  # re-want replaces b's requirement, adds c
    assert state["a"] == UnitRecord(S, "", {"b": C, "c": C})
    apply(state, StatusRecord("a", F, "boom"))
    assert state["a"] == UnitRecord(F, "boom", {"b": C, "c": C})  # reason kept with the failure
    apply(state, StatusRecord("a", S))  # a re-run clears the reason
    assert state["a"] == UnitRecord(S, "", {"b": C, "c": C})
    assert "b" not in state  # only mentioned as a dependency: not stored
    apply(state, StatusRecord("a", S, held=True))
    apply(state, WantRecord("a", {"d": C}))  # a want keeps the hold
    assert state["a"] == UnitRecord(S, "", {"b": C, "c": C, "d": C}, held=True)
    apply(state, StatusRecord("a", C))  # any status change ends it
    assert state["a"].held is False


@pytest.mark.parametrize("record", [
    {"op": "status", "unit": "a", "status": "", "reason": ""},  # not registered
    {"op": "status", "unit": "a", "status": "finished", "reason": ""},  # only a requirement
    {"op": "status", "unit": "a", "status": "started", "reason": "", "held": 1},
    {"op": "want", "unit": "a", "requires": [["b", "pending"]]},
    {"op": "want", "unit": "a", "requires": [[7, "completed"]]},
    {"op": "want", "unit": "a", "requires": [["b"]]},
])
def test_a_stored_record_that_the_core_could_not_have_made_is_corrupt(
    tmp_path: Path, record: dict[str, object]
) -> None:
    write(tmp_path / "state", EVERY_KIND)
    with open(tmp_path / "state.log", "ab") as log:
        log.write(encode(record))
    with pytest.raises(JournalCorrupt, match="not a record") as caught:
        Journal.open(tmp_path / "state")
    assert caught.value.line == len(EVERY_KIND) + 2


def test_unflushed_records_are_not_durable(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path / "state")
    with journal:
        assert journal.append(StatusRecord("a", P)) == 1
        assert journal.append(StatusRecord("b", P)) == 2
        assert (journal.pending, journal.durable) == (2, 0)
        assert journal.flush() == 2
        assert (journal.pending, journal.durable, journal.flush()) == (0, 2, 0)
        journal.append(StatusRecord("c", P))  # never flushed: lost in the "crash" (close)
    assert reopen(tmp_path / "state") == {"a": UnitRecord(P), "b": UnitRecord(P)}


# --- torn tails and corruption -------------------------------------------------------------


def test_torn_tail_at_every_offset_is_dropped_and_repaired(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    write(source / "state", EVERY_KIND[:-1], fsync=False)
    before = (source / "state.log").stat().st_size
    write(source / "state", EVERY_KIND[-1:], fsync=False)
    data = (source / "state.log").read_bytes()
    for cut in range(before, len(data)):
        work = tmp_path / f"cut{cut}"
        work.mkdir()
        (work / "state.log").write_bytes(data[:cut])
        journal, state = Journal.open(work / "state", fsync=False)
        assert state == fold(EVERY_KIND[:-1]), cut
        assert (work / "state.log").stat().st_size == before  # repaired: cut at the good prefix
        journal.append(StatusRecord("after", C))
        journal.flush()
        journal.close()
        assert reopen(work / "state") == fold([*EVERY_KIND[:-1], StatusRecord("after", C)])


def test_bad_checksum_on_last_line_is_a_torn_tail(tmp_path: Path) -> None:
    write(tmp_path / "state", EVERY_KIND)
    log = tmp_path / "state.log"
    data = bytearray(log.read_bytes())
    data[-3] ^= 0x01  # inside the last JSON object; the newline is intact
    log.write_bytes(bytes(data))
    assert reopen(tmp_path / "state") == fold(EVERY_KIND[:-1])


@pytest.mark.parametrize("damage", ["flip", "zeros", "cut"])
def test_corruption_before_the_last_line_raises(tmp_path: Path, damage: str) -> None:
    write(tmp_path / "state", EVERY_KIND)
    log = tmp_path / "state.log"
    lines = log.read_bytes().splitlines(keepends=True)
    if damage == "flip":
        lines[3] = lines[3].replace(b"claude", b"claudf")
    elif damage == "zeros":
        lines[3] = b"\0" * len(lines[3])
    else:
        lines[3] = lines[3][:20]  # a partial line, then more lines: not a tail
    log.write_bytes(b"".join(lines))
    with pytest.raises(JournalCorrupt) as caught:
        Journal.open(tmp_path / "state")
    error = caught.value
    assert isinstance(error, UnitsyncError) and error.code == "unitsync.journal"
    assert (error.path, error.line) == (str(log), 4)
    assert "line 4" in str(error)
    assert log.read_bytes() == b"".join(lines)  # nothing repaired or dropped


def test_checksummed_line_that_is_not_a_record_raises(tmp_path: Path) -> None:
    write(tmp_path / "state", EVERY_KIND)
    with open(tmp_path / "state.log", "ab") as log:
        log.write(encode({"op": "status", "unit": "x", "status": "bogus", "reason": ""}))
    with pytest.raises(JournalCorrupt, match="not a record") as caught:
        Journal.open(tmp_path / "state")
    assert caught.value.line == len(EVERY_KIND) + 2


def test_corrupt_snapshot_raises(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path / "state")
    with journal:
        journal.compact(fold(EVERY_KIND))
    snapshot = tmp_path / "state"
    good = snapshot.read_bytes()
    snapshot.write_bytes(good[:-1])  # even the last line of a snapshot must be whole
    with pytest.raises(JournalCorrupt) as caught:
        Journal.open(snapshot)
    assert caught.value.path == str(snapshot)
    snapshot.write_bytes(b"".join(good.splitlines(keepends=True)[:-1]))  # a whole line missing
    with pytest.raises(JournalCorrupt, match="record count"):
        Journal.open(snapshot)


# --- compaction ----------------------------------------------------------------------------


def test_compact_then_append_then_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state"
    journal, state = Journal.open(path, compact_min_records=3)
    with journal:
        for record in EVERY_KIND[:4]:
            journal.append(record)
            apply(state, record)
        journal.flush()
        assert journal.should_compact()
        journal.append(EVERY_KIND[4])  # buffered, covered by the snapshot
        apply(state, EVERY_KIND[4])
        assert journal.compact(dict(state)) == 1
        assert not journal.should_compact()
        assert journal.statistics().generation == 1
        assert (journal.pending, journal.durable) == (0, 5)
        for record in EVERY_KIND[5:]:
            journal.append(record)
        journal.flush()
    assert reopen(path) == fold(EVERY_KIND)
    journal, state = Journal.open(path)
    with journal:
        stats = journal.statistics()
        assert (stats.generation, stats.log_records, stats.snapshot_units) == (1, 3, 3)


def test_compact_through_keeps_later_records_buffered(tmp_path: Path) -> None:
    path = tmp_path / "state"
    journal, state = Journal.open(path)
    with journal:
        for record in EVERY_KIND[:3]:
            apply(state, record)
            through = journal.append(record)
        captured = dict(state)  # the Trio thread captures state and seq together ...
        later = journal.append(StatusRecord("later", S))  # ... and keeps appending
        assert journal.compact(captured, through) == 3
        assert (journal.pending, journal.durable) == (1, through)
        journal.flush()
        assert journal.durable == later
        with pytest.raises(ValueError):
            journal.compact(captured, through)  # stale: older than what is durable
        journal.append(StatusRecord("more", S))  # still usable after the refusal
        journal.flush()
    expected = [*EVERY_KIND[:3], StatusRecord("later", S), StatusRecord("more", S)]
    assert reopen(path) == fold(expected)


class Crash(Exception):
    """Stands for the process dying at this point."""


@pytest.mark.parametrize("crash_at", ["before-replace", "before-log-reset"])
def test_crash_during_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    path = tmp_path / "state"
    write(path, EVERY_KIND[:4])
    journal, state = Journal.open(path)
    real_replace, calls = os.replace, []

    def replace(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == (1 if crash_at == "before-replace" else 2):
            raise Crash
        real_replace(src, dst)

    monkeypatch.setattr(_journal.os, "replace", replace)
    apply(state, StatusRecord("claude", C))
    journal.append(StatusRecord("claude", C))
    with pytest.raises(Crash):
        journal.compact(dict(state))
    with pytest.raises(JournalError, match="failed compaction"):
        journal.append(StatusRecord("x", P))
    journal.close()
    monkeypatch.setattr(_journal.os, "replace", real_replace)

    reopened, recovered = Journal.open(path)
    with reopened:
        assert not list(tmp_path.glob("*.tmp"))
        if crash_at == "before-replace":  # old snapshot (none) + old log; the append was unacked
            assert recovered == fold(EVERY_KIND[:4])
            assert reopened.statistics().generation == 0
        else:  # new snapshot; the old log predates it and is discarded, not replayed
            assert recovered == state
            stats = reopened.statistics()
            assert (stats.generation, stats.log_records) == (1, 0)
        reopened.append(StatusRecord("after", S))
        reopened.flush()
    assert reopen(path) == {**recovered, "after": UnitRecord(S)}


def test_log_older_than_snapshot_is_not_replayed(tmp_path: Path) -> None:
    path = tmp_path / "state"
    journal, _ = Journal.open(path)
    with journal:
        journal.compact({"a": UnitRecord(C)})  # generation 1
    old_log = encode({"op": "log", "generation": 0}) + encode(StatusRecord("a", S))
    (tmp_path / "state.log").write_bytes(old_log)
    assert reopen(path) == {"a": UnitRecord(C)}
    assert (tmp_path / "state.log").read_bytes() == encode({"op": "log", "generation": 1})
    (tmp_path / "state.log").write_bytes(encode({"op": "log", "generation": 2}))
    with pytest.raises(JournalCorrupt, match="newer than the snapshot"):
        Journal.open(path)
    path.unlink()  # a lost snapshot is noticed too
    (tmp_path / "state.log").write_bytes(encode({"op": "log", "generation": 1}))
    with pytest.raises(JournalCorrupt, match="newer than the snapshot"):
        Journal.open(path)


# --- files, locking, failures, threads -----------------------------------------------------


def test_files_are_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        journal, _ = Journal.open(tmp_path / "state")
        with journal:
            journal.compact({"a": UnitRecord(P)})
    finally:
        os.umask(old_umask)
    for name in ("state", "state.log", "state.lock"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_second_open_is_refused(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path / "state")
    with journal:
        with pytest.raises(JournalError, match="in use"):
            Journal.open(tmp_path / "state")
    reopen(tmp_path / "state")  # released on close


def test_failed_fsync_makes_the_journal_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal, _ = Journal.open(tmp_path / "state")
    with journal:
        journal.append(StatusRecord("a", P))
        journal.flush()

        def fdatasync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(_journal.os, "fdatasync", fdatasync)
        journal.append(StatusRecord("b", P))
        with pytest.raises(OSError):
            journal.flush()
        assert journal.durable == 1
        with pytest.raises(JournalError, match="failed flush"):
            journal.append(StatusRecord("c", P))
        with pytest.raises(JournalError):
            journal.flush()
    with pytest.raises(JournalError, match="failed flush"):  # closing keeps the first reason
        journal.append(StatusRecord("d", P))
    journal, _ = Journal.open(tmp_path / "state")  # a restart repairs the tail; "b" was unacked
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.flush()


def test_appends_from_one_thread_while_another_flushes(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path / "state", fsync=False)
    done = threading.Event()

    def committer() -> None:
        while not done.is_set():
            journal.flush()

    thread = threading.Thread(target=committer)
    thread.start()
    records = [StatusRecord(f"u{i}", S) for i in range(5000)]
    for record in records:
        journal.append(record)
    done.set()
    thread.join()
    journal.flush()
    assert journal.durable == journal.appended == len(records)
    journal.close()
    assert reopen(tmp_path / "state") == fold(records)


# --- the model: whatever happens, reopening gives the flushed records ----------------------

NAMES = st.sampled_from(["a", "b", "c", "ünï", 'q"\\'])
RECORDS = st.one_of(
    st.builds(StatusRecord, NAMES, st.sampled_from([P, S, C, F]), st.text(max_size=8),
              st.booleans()),
    st.builds(WantRecord, NAMES, st.dictionaries(NAMES, st.sampled_from([S, C]), max_size=3)),
)
OPS = st.one_of(
    st.tuples(st.just("append"), RECORDS),
    st.tuples(st.sampled_from(["flush", "compact", "capture", "compact-captured", "reopen"])),
    st.tuples(st.just("crash-mid-flush"), st.floats(0, 1)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, max_size=40))
def test_reopen_always_yields_the_durable_records(ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state"
        journal, live = Journal.open(path, fsync=False)
        durable: dict[str, UnitRecord] = {}
        pending: list[StatusRecord | WantRecord] = []  # appended, not yet durable
        captured = None
        for op, *args in ops:
            if op == "append":
                journal.append(args[0])
                apply(live, args[0])
                pending.append(args[0])
            elif op == "flush":
                assert journal.flush() == len(pending)
                for record in pending:
                    apply(durable, record)
                pending = []
            elif op == "compact":
                assert journal.compact(dict(live)) == len(pending)
                durable, pending = dict(live), []
            elif op == "capture":
                captured = (dict(live), journal.appended)
            elif op == "compact-captured" and captured is not None:
                state, through = captured
                if through < journal.durable:
                    with pytest.raises(ValueError):
                        journal.compact(state, through)
                else:
                    covered = through - journal.durable
                    assert journal.compact(state, through) == covered
                    durable, pending = dict(state), pending[covered:]
            elif op in ("reopen", "crash-mid-flush"):
                if op == "crash-mid-flush":  # part of the batch reaches the file, then death
                    batch = b"".join(map(encode, pending))
                    torn = batch[: int(len(batch) * args[0])]
                    with open(f"{path}.log", "ab") as log:
                        log.write(torn)
                    for record in pending[: torn.count(b"\n")]:
                        apply(durable, record)
                journal.close()
                journal, live = Journal.open(path, fsync=False)
                assert live == durable
                pending, captured = [], None
            assert journal.pending == len(pending)
        journal.close()
        assert reopen(path) == durable

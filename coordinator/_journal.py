"""The coordinator's state on disk, so it survives a crash: a snapshot plus an append-only log.

Pure storage (no Trio, no actors). Each accepted mutation is a :data:`Record`; :func:`apply`
folds records into ``dict[str, UnitRecord]`` (registered units only: a unit only mentioned as a
dependency is not stored). Records are state *assignments*, replayed in order.

Files, in the socket's 0700 directory, each created 0600::

    PATH       {"op":"snapshot","generation":G,"records":K,"seq":S}, then K records (per unit,
               sorted: its status record, then its want record if it has requirements; then
               the kept history's event records, oldest first); S: the last event's seq
    PATH.log   {"op":"log","generation":G}, then one record per mutation, in order
    PATH.lock  flock'ed while open: a second process gets JournalError

Every line is ``<crc32 of the JSON bytes: 8 hex digits> <compact UTF-8 JSON>\\n``; records::

    {"op":"status","unit":"git","status":"failed","reason":"exit 3"}  register/start/complete/
                                                                      fail/skip
    {"op":"status","unit":"git","status":"started","reason":"","held":true}   hold (a lease)
    {"op":"want","unit":"claude","requires":[["git","completed"]]}    add/replace edges; registers
    {"op":"event","seq":7,"t":1764932594.29,"unit":"git","old":"pending","new":"started",
     "reason":""}                                                     history: a status change
    {"op":"event","seq":8,"t":...,"unit":"claude","old":"pending","new":"pending","reason":"",
     "dep":"git","requires":"completed"}                              history: an edge added

Event records only feed the history (:attr:`Journal.history`); the state comes from the others.

Guarantees:

* Durable before acknowledged: :meth:`Journal.flush` writes the buffered batch with one
  ``write`` and one ``fdatasync`` (group commit). A record whose flush returned survives
  ``kill -9`` and power loss (``fsync=False``: only ``kill -9``, the page cache survives that).
  One fdatasync per batch, not per record: an fdatasync costs far more than appending a record,
  so a sync per record would cap the mutations per second (``python -m stress fsync``
  measures both; figures: stress/README.md).
* Torn tail: a crash during a flush may leave the log's last line incomplete or failing its
  checksum. That batch was never acknowledged: :meth:`Journal.open` drops the line and truncates
  the log there. A bad line anywhere else (a hole inside a batch included), any bad snapshot
  line, or a checksummed line that is not a record raises :class:`JournalCorrupt` with the line
  number: acknowledged data is never dropped silently (move the file away to start empty).
* Compaction: the snapshot goes to ``PATH.tmp``, is fsynced, renamed over ``PATH`` and the
  directory fsynced; only then is the log replaced (same steps) by an empty one of the new
  generation. A crash before the rename leaves the old snapshot + old log; after it, the new
  snapshot + a log of an older generation, which predates it and is discarded on open, never
  replayed on top of it. A log *newer* than the snapshot means a lost snapshot: corrupt.
* A failed write, fsync or compaction makes the journal unusable (later calls raise
  :class:`JournalError`): after a failed fsync the file's contents are unknown, so the owner
  stops and the next start repairs the tail. The failed batch may or may not survive.

Threads: :meth:`Journal.append` (no I/O) may run in the Trio thread while :meth:`~Journal.flush`
or :meth:`~Journal.compact` runs in ``trio.to_thread.run_sync``. ``append`` returns a sequence
number; its reply may go once ``journal.durable >= seq``.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._api import Event
from ._errors import UnitsyncError
from ._status import REQUIREMENTS, UNIT_STATUSES, Status

__all__ = ["COMPACT_MIN_RECORDS", "Journal", "JournalCorrupt", "JournalError", "JournalStatistics",
           "Record", "StatusRecord", "UnitRecord", "WantRecord", "apply", "encode"]

#: The statuses a record may store: a registered unit's (not NOT_REGISTERED, not FINISHED).
STORED_STATUSES = frozenset(UNIT_STATUSES) - {Status.NOT_REGISTERED}

#: :meth:`Journal.should_compact` waits for more than this many log records.
COMPACT_MIN_RECORDS = 10_000

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


class JournalError(UnitsyncError):
    """The state journal at ``path`` cannot be used; ``why`` says how."""

    code = "unitsync.journal"

    def __init__(self, path: str, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"state journal {path}: {why}")


class JournalCorrupt(JournalError):
    """Line ``line`` (1-based) of ``path`` is damaged and is not a torn tail; nothing was loaded."""

    def __init__(self, path: str, line: int, why: str) -> None:
        super().__init__(path, f"corrupt at line {line}: {why} (move it away to start empty)")
        self.line, self.why = line, why


@dataclass(frozen=True, slots=True)
class UnitRecord:
    """A registered unit's stored state; ``requirements``: dependency -> STARTED or COMPLETED.
    :func:`apply` replaces records, never mutates them, so ``dict(state)`` is a consistent copy."""

    status: Status
    reason: str = ""
    requirements: dict[str, Status] = field(default_factory=dict)
    #: Started by a holder (a lease) that has not completed or failed it yet.
    held: bool = False
    #: When it last changed (wall clock, s), where a shared store keeps it so that every
    #: coordinator's events carry the time of the change; 0: not kept (the journal's events
    #: have their own).
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """``unit`` is in ``status`` (registered: not NOT_REGISTERED) with ``reason``; ``held``:
    started by a holder (a lease), which a restart gives a grace period to come back."""

    unit: str
    status: Status
    reason: str = ""
    held: bool = False


@dataclass(frozen=True, slots=True)
class WantRecord:
    """``unit`` requires each ``(dependency, STARTED|COMPLETED)`` (given as pairs or a mapping);
    other requirements stay; ``unit`` is registered as pending if it was not.

    Records are made from values the core has checked; what is read back from disk is checked
    by :func:`_replay` (a bad one is :class:`JournalCorrupt`)."""

    unit: str
    requires: tuple[tuple[str, Status], ...]

    def __post_init__(self) -> None:
        given: Any = self.requires
        if not isinstance(given, tuple):
            pairs = tuple(given.items() if isinstance(given, Mapping) else given)
            object.__setattr__(self, "requires", pairs)


Record = StatusRecord | WantRecord


def apply(state: dict[str, UnitRecord], record: Record) -> None:
    """Fold ``record`` into ``state`` in place (no I/O): the replay step."""
    old = state.get(record.unit)
    match record:
        case StatusRecord(unit, status, reason, held):
            state[unit] = UnitRecord(status, reason, old.requirements if old else {}, held)
        case WantRecord(unit, requires):
            old = old or UnitRecord(Status.PENDING)
            state[unit] = UnitRecord(
                old.status, old.reason, {**old.requirements, **dict(requires)}, old.held
            )


def encode(record: Record | Event | dict[str, Any]) -> bytes:
    """The framed line for ``record`` (or an event, or a header dict): ``<crc32 hex> <json>\\n``."""
    match record:
        case Event():
            record = _event_object(record)
        case StatusRecord(unit, status, reason, held):
            record = {"op": "status", "unit": unit, "status": status.value, "reason": reason}
            if held:
                record["held"] = True
        case WantRecord(unit, requires):
            record = {"op": "want", "unit": unit, "requires": [[d, r.value] for d, r in requires]}
    payload = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _event_object(event: Event) -> dict[str, Any]:
    obj = {"op": "event", "seq": event.seq, "t": event.time, "unit": event.unit,
           "old": event.old.value, "new": event.new.value, "reason": event.reason}
    if event.depends_on:
        obj["dep"], obj["requires"] = event.depends_on, event.requires.value
    return obj


def _read_event(obj: dict[str, Any]) -> Event | None:
    """The event an ``"op":"event"`` object holds, None if it is not a valid one."""
    match obj:
        case {"seq": int(seq), "t": float(t) | int(t), "unit": str(unit), "old": str(old),
              "new": str(new), "reason": str(reason)} if seq > 0:
            dep, requires = obj.get("dep", ""), Status(obj.get("requires", ""))
            if not isinstance(dep, str) or (dep and requires not in REQUIREMENTS):
                return None
            return Event(seq=seq, time=float(t), unit=unit, old=Status(old), new=Status(new),
                         reason=reason, depends_on=dep, requires=requires)
    return None


class _BadLine(Exception):
    """A damaged line; ``torn``: incomplete or failing its checksum (a torn write if last)."""

    def __init__(self, why: str, *, torn: bool = False) -> None:
        super().__init__(why)
        self.torn = torn


def _unframe(line: bytes) -> dict[str, Any]:
    crc, payload = line[:8], line[9:]
    if len(line) < 9 or line[8:9] != b" " or crc.strip(b"0123456789abcdef"):
        raise _BadLine("not a '<crc32> <json>' line", torn=True)
    if zlib.crc32(payload) != int(crc, 16):
        raise _BadLine("checksum mismatch", torn=True)
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise _BadLine(f"invalid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _BadLine("not a JSON object")
    return obj


def _parse(path: str, data: bytes, *, torn_tail_ok: bool) -> tuple[list[dict[str, Any]], int]:
    """The objects on the lines of ``data`` (line n at index n-1) and the length of the good
    prefix; a torn last line ends the list if ``torn_tail_ok``, any other bad line raises."""
    objs: list[dict[str, Any]] = []
    offset = 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        try:
            if end < 0:
                raise _BadLine("incomplete last line", torn=True)
            objs.append(_unframe(data[offset:end]))
        except _BadLine as exc:
            if exc.torn and torn_tail_ok and end in (-1, len(data) - 1):
                break
            raise JournalCorrupt(path, len(objs) + 1, str(exc)) from None
        offset = end + 1
    return objs, offset


def _replay(
    path: str, state: dict[str, UnitRecord], objs: list[dict[str, Any]], history: list[Event]
) -> None:
    """Apply the records after the header line; event records go to ``history``."""
    for number, obj in enumerate(objs[1:], start=2):
        try:
            match obj:
                case {"op": "event"}:
                    event = _read_event(obj)
                    if event is not None:
                        history.append(event)
                        continue
                case {"op": "status", "unit": str(u), "status": str(s), "reason": str(reason)}:
                    held, status = obj.get("held", False), Status(s)
                    if isinstance(held, bool) and status in STORED_STATUSES:
                        apply(state, StatusRecord(u, status, reason, held))
                        continue
                case {"op": "want", "unit": str(u), "requires": list(requires)}:
                    pairs = tuple((d, Status(r)) for d, r in requires)
                    if all(isinstance(d, str) and r in REQUIREMENTS for d, r in pairs):
                        apply(state, WantRecord(u, pairs))
                        continue
        except (ValueError, TypeError):
            pass
        raise JournalCorrupt(path, number, f"not a record: {json.dumps(obj)[:200]}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass(frozen=True, slots=True)
class JournalStatistics:
    """Counters of a :class:`Journal`; sequence numbers count appends since open (0 = none)."""

    generation: int
    appended: int
    durable: int
    pending: int
    log_records: int
    snapshot_units: int
    flushes: int


class Journal:
    """An open journal: owns its files and lock until :meth:`close`. Made by :meth:`open`."""

    def __init__(self, path: str, *, fsync: bool, compact_min_records: int) -> None:
        self.path, self._log_path = path, path + ".log"
        self._fsync, self._compact_min = fsync, compact_min_records
        self._lock, self._io_lock = threading.Lock(), threading.Lock()  # buffer; files
        self._pending: list[bytes] = []  # encoded records durable+1 .. appended
        self._appended = self._durable = self._flushes = 0
        self._generation = self._log_records = self._snapshot_units = self._snapshot_events = 0
        #: The events the journal holds (snapshot, then log), oldest first, and the seq of the
        #: last event ever journaled: what a restarted coordinator's history starts from.
        self.history: list[Event] = []
        self.last_seq = 0
        self._log_fd: int | None = None
        self._lock_fd: int | None = None
        self._unusable: str | None = None

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, fsync: bool = True,
        compact_min_records: int = COMPACT_MIN_RECORDS,
    ) -> tuple[Journal, dict[str, UnitRecord]]:
        """Lock and load the journal at ``path`` (none yet: empty state; the files are created),
        repair a torn log tail, and return it with the replayed state. Blocking.

        Raises :class:`JournalCorrupt` for damage other than a torn tail, :class:`JournalError`
        if another process has it open, ``OSError`` if the files cannot be read or written."""
        journal = cls(os.fspath(path), fsync=fsync, compact_min_records=compact_min_records)
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            journal._lock_fd = os.open(journal.path + ".lock", flags, 0o600)
            try:
                fcntl.flock(journal._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalError(journal.path, "in use by another process") from None
            return journal, journal._load()
        except BaseException:
            journal.close()
            raise

    def _load(self) -> dict[str, UnitRecord]:
        for stray in (self.path + ".tmp", self._log_path + ".tmp"):  # a compaction's leftovers
            if os.path.lexists(stray):
                os.unlink(stray)
        state: dict[str, UnitRecord] = {}
        if os.path.lexists(self.path):
            objs, _ = _parse(self.path, Path(self.path).read_bytes(), torn_tail_ok=False)
            match objs[:1]:
                case [{"op": "snapshot", "generation": int(gen), "records": int(count)}] if (
                    count == len(objs) - 1 and isinstance(objs[0].get("seq", 0), int)
                ):
                    self._generation, self.last_seq = gen, objs[0].get("seq", 0)
                case _:
                    raise JournalCorrupt(self.path, 1, "bad snapshot header or record count")
            _replay(self.path, state, objs, self.history)
            self._snapshot_units, self._snapshot_events = len(state), len(self.history)
        log = Path(self._log_path)
        data = log.read_bytes() if os.path.lexists(log) else b""
        objs, good = _parse(self._log_path, data, torn_tail_ok=True)
        match objs[:1]:
            case [{"op": "log", "generation": int(gen)}] if gen == self._generation:
                _replay(self._log_path, state, objs, self.history)
                self._log_records = len(objs) - 1
                self._log_fd = os.open(self._log_path, _APPEND)
                if good < len(data):  # a torn tail, never acknowledged: cut it off
                    os.ftruncate(self._log_fd, good)
                    self._sync(self._log_fd)
            case [{"op": "log", "generation": int(gen)}] if gen > self._generation:
                why = f"log generation {gen} is newer than the snapshot's ({self._generation})"
                raise JournalCorrupt(self._log_path, 1, why)
            case [] | [{"op": "log", "generation": int()}]:  # none, torn, or older: discard
                self._reset_log()
            case _:
                raise JournalCorrupt(self._log_path, 1, "bad log header")
        if self.history:
            self.last_seq = max(self.last_seq, self.history[-1].seq)
        return state

    def append(self, record: Record | Event) -> int:
        """Buffer ``record`` (encoded now, no I/O) and return its sequence number; it is durable
        once :attr:`durable` reaches that number."""
        line = encode(record)
        with self._lock:
            self._check_usable()
            self._pending.append(line)
            self._appended += 1
            return self._appended

    def flush(self) -> int:
        """Write every buffered record with one write and one fdatasync; return how many became
        durable. Blocking (use a worker thread). An OSError makes the journal unusable."""
        with self._io_lock:
            with self._lock:
                self._check_usable()
                batch, self._pending, last = self._pending, [], self._appended
            if not batch:
                return 0
            try:
                _write_all(self._log_fd, b"".join(batch))  # type: ignore[arg-type]
                self._sync(self._log_fd)  # type: ignore[arg-type]
            except BaseException as exc:
                self._unusable = f"unusable after a failed flush ({exc!r})"
                raise
            with self._lock:
                self._durable, self._log_records = last, self._log_records + len(batch)
                self._flushes += 1
            return len(batch)

    def should_compact(self) -> bool:
        """True when the log has more than ``compact_min_records`` records and more than twice
        the units and events of the last snapshot (so the files stay within about three times
        the state and the kept history)."""
        snapshot = self._snapshot_units + self._snapshot_events
        return self._log_records > max(self._compact_min, 2 * snapshot)

    def compact(
        self, state: Mapping[str, UnitRecord], through: int | None = None,
        events: Iterable[Event] = (), last_seq: int = 0,
    ) -> int:
        """Replace snapshot and log by a snapshot of ``state`` and the kept history ``events``
        (oldest first; ``last_seq``: the seq of the last event published, kept or not); return
        how many buffered records that made durable. Blocking (use a worker thread).

        ``state`` and ``events`` are the result of the records up to sequence number ``through``
        (default: all appended so far) and must not change during the call: capture
        ``dict(state)``, the kept events and ``journal.appended`` together, after the last flush (``durable <= through <= appended``,
        else ValueError). Later records stay buffered for the next flush. Any other failure makes
        the journal unusable; reopening then finds the old state or the new one, never a mix."""
        lines: list[bytes] = []  # encoded before taking the file lock: flushes need not wait
        for unit in sorted(state):
            stored = state[unit]
            lines.append(encode(StatusRecord(unit, stored.status, stored.reason, stored.held)))
            if stored.requirements:
                lines.append(encode(WantRecord(unit, tuple(sorted(stored.requirements.items())))))
        units = len(lines)
        lines.extend(encode(event) for event in events)
        kept = len(lines) - units
        with self._io_lock:
            with self._lock:
                self._check_usable()
                through = self._appended if through is None else through
                if not self._durable <= through <= self._appended:
                    raise ValueError(f"through={through} is outside [durable, appended]"
                                     f" = [{self._durable}, {self._appended}]")
            header = {"op": "snapshot", "generation": self._generation + 1, "records": len(lines),
                      "seq": last_seq}
            try:
                self._replace(self.path, b"".join([encode(header), *lines]))
                self._generation, self._snapshot_units = self._generation + 1, len(state)
                self._snapshot_events = kept
                with self._lock:
                    covered = through - self._durable
                    del self._pending[:covered]
                    self._durable = through
                self._reset_log()
            except BaseException as exc:
                self._unusable = f"unusable after a failed compaction ({exc!r})"
                raise
            return covered

    def _reset_log(self) -> None:
        self._replace(self._log_path, encode({"op": "log", "generation": self._generation}))
        old, self._log_fd = self._log_fd, os.open(self._log_path, _APPEND)
        if old is not None:
            os.close(old)
        self._log_records = 0

    def _replace(self, path: str, data: bytes) -> None:
        """Atomically make ``path`` hold ``data``: write a temp file, fsync, rename, fsync dir."""
        fd = os.open(path + ".tmp", _NEW_FILE, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            _write_all(fd, data)
            self._sync(fd)
        finally:
            os.close(fd)
        os.replace(path + ".tmp", path)
        if self._fsync:
            dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _sync(self, fd: int) -> None:
        if self._fsync:
            os.fdatasync(fd)

    def _check_usable(self) -> None:
        if self._unusable is not None:
            raise JournalError(self.path, self._unusable)

    @property
    def pending(self) -> int:
        """Records appended but not yet durable."""
        return len(self._pending)

    @property
    def appended(self) -> int:
        """Sequence number of the last appended record (0: none since open)."""
        return self._appended

    @property
    def durable(self) -> int:
        """Sequence number of the last durable record: replies for ``seq <= durable`` may go."""
        return self._durable

    def statistics(self) -> JournalStatistics:
        """Counters for tests and the stress suite."""
        with self._lock:
            return JournalStatistics(self._generation, self._appended, self._durable,
                                     len(self._pending), self._log_records,
                                     self._snapshot_units, self._flushes)

    def close(self) -> None:
        """Release the files and the lock; buffered records are dropped (never acknowledged), so
        :meth:`flush` first for a clean shutdown. Idempotent; later calls raise JournalError."""
        with self._io_lock:
            self._unusable = self._unusable or "closed"
            for fd in (self._log_fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._log_fd = self._lock_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


"""The etcd store's data layer: a workspace's keys, their JSON, and load / follow / commit.

What the etcd store (docs/DISTRIBUTED.md, issue 15) is built on, below the coordinator and its
actors: it knows the key layout and the records the core already uses
(:class:`~coordinator._journal.UnitRecord`), and turns the three things a coordinator does with
the store into etcd requests on :class:`~coordinator.store._etcd.EtcdClient`:

- :func:`load`: the workspace's state at one revision R (one linearizable range, paged);
- :func:`follow`: every change after R, one :class:`Change` per etcd revision, in order (the
  watch); a compacted R raises :class:`Relist`: load again, follow from the new revision;
- :func:`commit`: one txn that writes units' records if none of them, and (when edges are
  added) not the graph, changed since the state the caller decided on; else :class:`Conflict`;
- :func:`resolve`: whether the commit of a request id was applied, after its answer was lost;
- :func:`barrier` and :meth:`Follow.caught_up`: the store's current revision, and waiting until
  the followed changes have reached it (a read "no older than the call").

Keys, under ``/unitsync/WORKSPACE/`` (:class:`Layout`)::

    units/NAME   {"status":"started","reason":"","held":true,"requirements":{"git":"completed"},
                  "time":1764950000.123456}
                 (compact UTF-8 JSON; "held" only when true, "requirements" only when not
                 empty, "time" — when the record last changed — only when known)
    graph        bumped by every commit that adds an edge: its ``mod_revision`` is what the
                 cycle check compares, its etcd ``version`` counts the bumps; its value is the
                 graph revision the commit was decided on (for a human reading the store)
    holds/NAME   the holding coordinator's id, attached to that coordinator's lease
    members/ID   {"host":..,"pid":..,"version":..} of a running coordinator, on its lease
    requests/ID  what the commit with request id ID wrote ({"units":[..],"graph":..}), put by
                 that commit's txn on the caller's lease: :func:`resolve` reads it back after
                 an :class:`~coordinator.store._etcd_errors.OutcomeUnknown`
    progress/ID  written by :meth:`Follow.caught_up` (ID: the follower's member id) when the
                 watch must be shown past a revision: its own change comes back through it

Holds and members are written by ``_etcd_lease.py``; a hold goes into the same txn as the
unit's record (:func:`commit`'s ``extra``: a :class:`TxnPart`). Other keys under the prefix
(``members/ID``, ``requests/ID``, ``progress/ID``) are skipped by :func:`load`;
:func:`follow` yields an empty :class:`Change` for a revision that wrote only them. A stored value that is not a valid record raises :class:`StoreCorrupt` naming
its key, as the journal's replay raises ``JournalCorrupt`` naming its line: acknowledged state
is never dropped silently.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from .._errors import InvalidName
from .._journal import STORED_STATUSES, UnitRecord
from .._names import validate_name
from .._status import REQUIREMENTS, Status
from ._etcd import EtcdClient
from ._etcd_errors import Compacted, EtcdError, RequestTooLarge
from ._etcd_wire import (
    Compare,
    EventType,
    KeyValue,
    Op,
    RangeResult,
    WatchBatch,
    prefix_end,
)

__all__ = [
    "DEFAULT_PAGE",
    "Change",
    "Conflict",
    "Follow",
    "Layout",
    "Loaded",
    "Relist",
    "StoreCorrupt",
    "TxnPart",
    "barrier",
    "caught_up",
    "commit",
    "decode_unit",
    "encode_unit",
    "follow",
    "load",
    "resolve",
]

#: keys per range request of :func:`load` (etcd answers a big range in one message otherwise,
#: bounded only by ``--max-request-bytes`` on the way out and gRPC's limit on the way back)
DEFAULT_PAGE = 1000
#: attempts of :func:`load` when a compaction overtakes its paging (each restarts at "now")
_LOAD_ATTEMPTS = 3
#: seconds :func:`follow`'s exit spends deleting the progress key of a follower without lease
_CLEANUP_TIMEOUT = 1.0


class StoreCorrupt(EtcdError):
    """The value at ``key`` is not a valid record (``why`` says how); nothing was loaded."""

    def __init__(self, key: bytes, why: str) -> None:
        super().__init__(f"etcd key {key.decode(errors='replace')!r}: {why}")
        self.key = key
        self.why = why


class Conflict(EtcdError):
    """A :func:`commit` was not applied: a compared unit, or the graph, changed since the state
    it was decided on. ``revision`` is the store's revision when it was refused: catch up to it
    (follow until a :class:`Change` at or past it), then decide again."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"the state changed since it was read (now at revision {revision})")
        self.revision = revision


class Relist(EtcdError):
    """:func:`follow` cannot continue: the revisions after ``after`` were compacted away
    (``compact_revision``: the oldest kept). The caller loads again and follows from there;
    changes in between are folded into the new load, never replayed one by one."""

    def __init__(self, compact_revision: int | None) -> None:
        super().__init__(f"the store compacted the changes to follow (oldest kept: "
                         f"{compact_revision}): load again")
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class Layout:
    """The keys of one workspace: ``Layout("ci").unit("git") == b"/unitsync/ci/units/git"``.

    A workspace name is a non-empty string without ``/`` (it is one path segment of the key);
    a unit name is one that :func:`~coordinator._names.validate_name` accepts (it may contain
    ``/``: the unit's key is everything after ``units/``)."""

    workspace: str

    def __post_init__(self) -> None:
        if not isinstance(self.workspace, str) or not self.workspace or "/" in self.workspace:
            raise ValueError(
                f"a workspace name is a non-empty string without '/', not {self.workspace!r}"
            )

    @property
    def prefix(self) -> bytes:
        """Every key of the workspace starts with this."""
        return f"/unitsync/{self.workspace}/".encode()

    @property
    def end(self) -> bytes:
        """The ``range_end`` covering the whole workspace."""
        return prefix_end(self.prefix)

    @property
    def units(self) -> bytes:
        return self.prefix + b"units/"

    @property
    def holds(self) -> bytes:
        return self.prefix + b"holds/"

    @property
    def members(self) -> bytes:
        return self.prefix + b"members/"

    @property
    def graph(self) -> bytes:
        return self.prefix + b"graph"

    def unit(self, name: str) -> bytes:
        return self.units + name.encode()

    def hold(self, name: str) -> bytes:
        return self.holds + name.encode()

    def member(self, member_id: str) -> bytes:
        return self.members + member_id.encode()

    def request(self, request: str) -> bytes:
        """The key :func:`commit` puts for its request id, :func:`resolve` reads."""
        return self.prefix + b"requests/" + request.encode()

    def progress(self, member_id: str) -> bytes:
        """The key :meth:`Follow.caught_up` writes to move a watch past a revision."""
        return self.prefix + b"progress/" + member_id.encode()

    def name(self, key: bytes, under: bytes) -> str:
        """The unit name of ``key`` (which starts with ``under``: :attr:`units` or
        :attr:`holds`); :class:`StoreCorrupt` if it is not a valid name."""
        try:
            return validate_name(key[len(under):].decode())
        except (UnicodeDecodeError, InvalidName) as exc:
            raise StoreCorrupt(key, f"not a unit name: {exc}") from None


def encode_unit(record: UnitRecord) -> bytes:
    """The value of a ``units/NAME`` key: compact UTF-8 JSON, requirements sorted."""
    obj: dict[str, Any] = {"status": record.status.value, "reason": record.reason}
    if record.held:
        obj["held"] = True
    if record.requirements:
        obj["requirements"] = {dep: req.value for dep, req in sorted(record.requirements.items())}
    if record.time:
        obj["time"] = round(record.time, 6)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def decode_unit(key: bytes, value: bytes) -> UnitRecord:
    """The record stored at ``key``, checked as the journal's replay checks its lines: a stored
    status (not NOT_REGISTERED, not FINISHED), a string reason, a boolean ``held``,
    requirements that map valid names to STARTED, COMPLETED or FINISHED. Anything else raises
    :class:`StoreCorrupt` naming ``key``."""
    try:
        obj = json.loads(value)
    except ValueError as exc:
        raise StoreCorrupt(key, f"invalid JSON ({exc})") from None
    match obj:
        case {"status": str(status), "reason": str(reason)}:
            pass
        case _:
            raise StoreCorrupt(key, f"not a unit record: {value[:200]!r}")
    held, requirements = obj.get("held", False), obj.get("requirements", {})
    when = obj.get("time", 0.0)
    try:
        stored = Status(status)
        needs = {validate_name(dep): Status(req) for dep, req in requirements.items()}
    except (ValueError, TypeError, AttributeError, InvalidName) as exc:
        raise StoreCorrupt(key, f"bad value in {value[:200]!r}: {exc}") from None
    if stored not in STORED_STATUSES:
        raise StoreCorrupt(key, f"status {status!r} is not one a registered unit can have")
    if not isinstance(held, bool):
        raise StoreCorrupt(key, f"held must be true or false, not {held!r}")
    if not isinstance(when, int | float) or isinstance(when, bool) or when < 0:
        raise StoreCorrupt(key, f"time must be a number of seconds, not {when!r}")
    if unknown := set(obj) - {"status", "reason", "held", "requirements", "time"}:
        raise StoreCorrupt(key, f"unknown fields {sorted(unknown)}")
    if bad := [dep for dep, req in needs.items() if req not in REQUIREMENTS]:
        raise StoreCorrupt(key, f"requirement on {bad[0]!r} is not started, completed or finished")
    return UnitRecord(stored, reason, needs, held, float(when))


@dataclass(frozen=True, slots=True)
class Loaded:
    """A workspace at one revision: what :func:`load` read.

    ``revisions`` has each unit's ``mod_revision`` (what :func:`commit` compares), ``holds``
    each held unit's holder id, ``graph_revision`` the ``graph`` key's ``mod_revision`` (0:
    no edge was ever committed). Follow from ``revision``."""

    state: dict[str, UnitRecord]
    revision: int
    graph_revision: int
    revisions: dict[str, int] = field(default_factory=dict)
    holds: dict[str, str] = field(default_factory=dict)


async def load(client: EtcdClient, layout: Layout, *, page: int = DEFAULT_PAGE) -> Loaded:
    """The workspace's keys at one revision: a linearizable range (no older than the call) of
    ``page`` keys, then the next pages at the first page's revision, so the whole is one
    consistent snapshot however many keys there are. A compaction past that revision during
    the paging (a range at a compacted revision fails) restarts the load, at most 3 times."""
    if page < 1:
        raise ValueError(f"page must be at least 1, not {page}")
    for attempt in range(_LOAD_ATTEMPTS):
        try:
            return await _load_once(client, layout, page)
        except Compacted:
            if attempt == _LOAD_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def _load_once(client: EtcdClient, layout: Layout, page: int) -> Loaded:
    state: dict[str, UnitRecord] = {}
    revisions: dict[str, int] = {}
    holds: dict[str, str] = {}
    graph_revision = revision = 0
    start = layout.prefix
    while True:
        result = await client.range(start, layout.end, revision=revision, limit=page)
        revision = revision or result.revision  # the first page's: every next page reads at it
        for kv in result.kvs:
            if kv.key.startswith(layout.units):
                name = layout.name(kv.key, layout.units)
                state[name] = decode_unit(kv.key, kv.value)
                revisions[name] = kv.mod_revision
            elif kv.key.startswith(layout.holds):
                holds[layout.name(kv.key, layout.holds)] = _holder(kv)
            elif kv.key == layout.graph:
                graph_revision = kv.mod_revision
        if not result.more or not result.kvs:
            return Loaded(state, revision, graph_revision, revisions, holds)
        start = result.kvs[-1].key + b"\0"  # the next key after the last one read


def _holder(kv: KeyValue) -> str:
    try:
        return kv.value.decode()
    except UnicodeDecodeError:
        raise StoreCorrupt(kv.key, "a holder id that is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class Change:
    """What one etcd revision (one commit, one hold or release) changed in the workspace.

    ``units``: each written unit's new record, in key order (None: its key was deleted; every
    unit listed now has ``mod_revision == revision``); ``graph``: the commit added edges;
    ``holds``: each hold put (the holder id) or gone (None: released, or its lease expired).
    A Change with nothing in it (a progress notification, or a revision that only touched other
    keys of the workspace) says that every change up to ``revision`` has been delivered."""

    revision: int
    units: tuple[tuple[str, UnitRecord | None], ...] = ()
    graph: bool = False
    holds: tuple[tuple[str, str | None], ...] = ()


class Follow:
    """The changes after a revision, in revision order: ``async for change in changes``.

    Raises :class:`Relist` when they were compacted away, :class:`StoreCorrupt` for a value
    that is not a record, and the watch's :class:`~coordinator.store._etcd_errors.Unavailable`
    when no endpoint answered for its patience. Made by :func:`follow`.

    ``position`` is the revision of the last Change yielded (``after`` before the first):
    every change up to it has been yielded. :meth:`caught_up` waits, from another task,
    until it reaches a revision, such as :func:`barrier`'s."""

    def __init__(
        self,
        batches: AsyncIterator[WatchBatch],
        layout: Layout,
        client: EtcdClient,
        after: int,
        member_id: str,
        lease: int,
    ) -> None:
        self._batches = batches
        self._layout = layout
        self._client = client
        self._member_id = member_id
        self._lease = lease
        self._ready: list[Change] = []
        self.position = after
        self._moved = trio.Event()  # set (and replaced) each time position moves or we fail
        self._failure: BaseException | None = None
        self.nudged = False  #: a progress key was written (follow's exit deletes it)

    def __aiter__(self) -> Follow:
        return self

    async def __anext__(self) -> Change:
        try:
            while not self._ready:
                try:
                    batch = await self._batches.__anext__()
                except Compacted as exc:
                    raise Relist(exc.compact_revision) from exc
                self._ready = self._split(batch)
        except (EtcdError, StopAsyncIteration) as exc:
            self._failure = exc
            self._wake()
            raise
        change = self._ready.pop(0)
        self.position = max(self.position, change.revision)
        self._wake()
        return change

    def _wake(self) -> None:
        self._moved.set()
        self._moved = trio.Event()

    async def caught_up(self, revision: int) -> None:
        """Return once every Change up to ``revision`` has been yielded (by whichever task
        iterates this Follow; a consumer that applies each Change before its next checkpoint
        has applied them all by then).

        The watch delivers only revisions that changed the workspace, so with nothing written
        since, it could stay behind ``revision`` for ever (etcd 3.4's progress notifications
        come every 10 minutes, and the JSON gateway's watch is one request: no
        ``progress_request`` can be sent on it afterwards). So when the position is behind,
        this puts ``progress/MEMBER`` (on the follower's lease, if it has one; idempotent, so
        retried): that put is ordered after ``revision`` was read (a linearizable read or a
        commit's answer), so its Change comes back at a revision above ``revision``, after
        every change before it. One small write per wait, and only when behind.

        Raises the iteration's error (:class:`Relist`, ``Unavailable``...) if the Follow has
        stopped; bound the wait with ``trio.fail_after`` if the iterating task may stall."""
        if self.position >= revision:
            return
        if self._failure is None:
            await self._client.put(
                self._layout.progress(self._member_id), str(revision).encode(),
                lease=self._lease, retry=True,
            )
            self.nudged = True
        while self.position < revision:
            if self._failure is not None:
                if isinstance(self._failure, EtcdError):
                    raise self._failure
                raise EtcdError("the followed watch ended before reaching revision "
                                f"{revision}")
            await self._moved.wait()

    def _split(self, batch: WatchBatch) -> list[Change]:
        """One Change per revision of ``batch`` (a watch batch may hold several)."""
        if not batch.events:
            return [Change(batch.revision)]
        layout = self._layout
        by_revision: dict[int, tuple[list[Any], list[Any], list[bool]]] = {}
        for event in batch.events:
            kv = event.kv
            units, holds, graph = by_revision.setdefault(kv.mod_revision, ([], [], [False]))
            gone = event.type is EventType.DELETE
            if kv.key.startswith(layout.units):
                record = None if gone else decode_unit(kv.key, kv.value)
                units.append((layout.name(kv.key, layout.units), record))
            elif kv.key.startswith(layout.holds):
                holds.append((layout.name(kv.key, layout.holds), None if gone else _holder(kv)))
            elif kv.key == layout.graph:
                graph[0] = True
        return [
            Change(revision, tuple(units), graph[0], tuple(holds))
            for revision, (units, holds, graph) in sorted(by_revision.items())
        ]


@asynccontextmanager
async def follow(
    client: EtcdClient,
    layout: Layout,
    after: int,
    *,
    member_id: str | None = None,
    lease: int = 0,
) -> AsyncIterator[Follow]:
    """``async with follow(client, layout, loaded.revision) as changes: async for change in
    changes``: every change to the workspace after revision ``after``, once each, in order.

    One watch of the prefix from ``after + 1``, which resumes on another endpoint when its
    stream breaks (see ``_etcd.py``). If the revisions after ``after`` were compacted away,
    the iteration raises :class:`Relist`: :func:`load` again and follow from its revision
    (a coordinator's mirror replaces its state by the new load's).

    ``member_id`` names the ``progress/ID`` key :meth:`Follow.caught_up` writes (a coordinator
    passes its member id and its membership ``lease``, so the key goes with it); without one,
    a random id is used and the key, if written, is deleted when the block exits."""
    own = member_id is None
    member_id = uuid.uuid4().hex if member_id is None else member_id
    async with client.watch(layout.prefix, layout.end, start_revision=after + 1) as watch:
        changes = Follow(watch, layout, client, after, member_id, lease)
        try:
            yield changes
        finally:
            if own and changes.nudged and not lease:
                with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_TIMEOUT):
                    try:
                        await client.delete(layout.progress(member_id), retry=True)
                    except EtcdError:
                        pass  # a stray progress key: harmless (skipped by load, tiny)


async def caught_up(changes: Follow, revision: int) -> None:
    """:meth:`Follow.caught_up`: return once ``changes`` has yielded every Change up to
    ``revision``."""
    await changes.caught_up(revision)


async def barrier(client: EtcdClient, layout: Layout) -> int:
    """The store's current revision R, read linearizably (no older than the call): a
    count-only range of the workspace's prefix, whose header carries R. A read that must be
    no older than the call answers once its mirror has reached it::

        await changes.caught_up(await barrier(client, layout))

    R counts every write to the store (other workspaces' too), so the mirror may never see a
    Change at R itself: :meth:`Follow.caught_up` moves the watch past it. Retried on another
    endpoint (a read); ``Unavailable`` when none answers."""
    return (await client.range(layout.prefix, layout.end, count_only=True)).revision


@dataclass(frozen=True, slots=True)
class TxnPart:
    """More compares and operations for a :func:`commit`'s txn (a hold taken or released with
    the unit's record, ``_etcd_lease.py``): applied together with the records, or not at all."""

    compares: tuple[Compare, ...] = ()
    ops: tuple[Op, ...] = ()


async def commit(
    client: EtcdClient,
    layout: Layout,
    writes: Mapping[str, UnitRecord],
    *,
    unit_revisions: Mapping[str, int],
    graph_revision: int | None,
    extra: Sequence[TxnPart] = (),
    request: str | None = None,
    lease: int = 0,
) -> int:
    """Write ``writes`` (unit name -> its new record) in one txn, if nothing they were decided
    on changed; return the commit's revision.

    Compares, all in the same txn: each written unit's ``mod_revision`` with
    ``unit_revisions[name]`` (the revision the caller's copy came from; 0: the unit must not
    exist yet); with ``graph_revision`` given (the caller added edges, after a cycle check on
    its state at that graph revision), the ``graph`` key's ``mod_revision`` too, and the txn
    bumps ``graph``, so that two commits adding the two halves of a cycle cannot both succeed.
    ``extra``'s compares and operations join the same txn (the one commit path for holds too):
    any compare of theirs that fails is a :class:`Conflict` like the others.

    ``request`` (a fresh id per commit attempt, e.g. ``uuid.uuid4().hex``) makes a lost
    answer resolvable: the txn also requires ``requests/ID`` not to exist and puts it (what
    was written, on ``lease``: the caller's membership lease, so these keys go away by
    themselves; a lease that is gone fails the commit). **On**
    :class:`~coordinator.store._etcd_errors.OutcomeUnknown`, **never send the txn again**
    (it may have been applied: a repetition would be refused, or worse, without a request id,
    overwrite a concurrent writer): call :func:`resolve` with the same id, retrying it while
    the store is ``Unavailable``; it answers the commit's revision, or None: not applied, and
    now it never will be, so decide again (with a new id). A request id that was already used
    (or resolved) makes the commit a :class:`Conflict`.

    Raises :class:`Conflict` (catch up to its revision and decide again), ``ValueError`` for a
    written unit missing from ``unit_revisions``, :class:`RequestTooLarge` before sending when
    the txn would exceed etcd's operations per txn (``--max-txn-ops``, 128 by default; the
    caller splits the write, each part atomic), and the client's errors: a lost answer is
    :class:`~coordinator.store._etcd_errors.OutcomeUnknown` (never retried here)."""
    if not writes:
        raise ValueError("nothing to commit")
    if missing := sorted(set(writes) - set(unit_revisions)):
        raise ValueError(f"no revision to compare for {missing[:5]}")
    operations = (len(writes) + (graph_revision is not None) + (request is not None)
                  + sum(len(p.ops) for p in extra))
    limit = client._max_txn_ops
    if operations > limit:
        raise RequestTooLarge(
            f"a commit of {len(writes)} units"
            f"{' and the graph' if graph_revision is not None else ''}"
            f"{' and its holds' if extra else ''}"
            f"{' and its request id' if request is not None else ''} is {operations} txn "
            f"operations; etcd takes at most {limit} (--max-txn-ops): split it"
        )
    compares: list[Compare] = []
    puts: list[Op] = []
    for name in sorted(writes):
        key = layout.unit(name)
        compares.append(Compare.mod_revision(key, "==", unit_revisions[name]))
        puts.append(Op.put(key, encode_unit(writes[name])))
    if graph_revision is not None:
        compares.append(Compare.mod_revision(layout.graph, "==", graph_revision))
        puts.append(Op.put(layout.graph, str(graph_revision).encode()))
    for part in extra:
        compares.extend(part.compares)
        puts.extend(part.ops)
    if request is not None:
        key = layout.request(_request_id(request))
        summary = {"units": sorted(writes), "graph": graph_revision is not None}
        compares.append(Compare.create_revision(key, "==", 0))
        puts.append(Op.put(key, _compact(summary), lease=lease))
    result = await client.txn(compares, puts)
    if not result.succeeded:
        raise Conflict(result.revision)
    return result.revision


#: the value :func:`resolve` leaves at ``requests/ID`` of a commit that was not applied
_ABANDONED = b'{"abandoned":true}'


def _compact(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _request_id(request: str) -> str:
    if not isinstance(request, str) or not request or "/" in request:
        raise ValueError(f"a request id is a non-empty string without '/', not {request!r}")
    return request


async def resolve(client: EtcdClient, layout: Layout, request: str, *, lease: int = 0) -> int | None:
    """Whether the :func:`commit` made with ``request`` was applied: its revision (the
    ``mod_revision`` of ``requests/ID``), or None if it was not, and never will be.

    The rule for a commit whose answer was lost
    (:class:`~coordinator.store._etcd_errors.OutcomeUnknown`): call this with its request id,
    retrying while the store is ``Unavailable``; never re-send the txn. On None, the caller may
    decide again (on its caught-up state, with a new request id).

    A plain read could answer "not there" while the lost txn is still on its way (queued at
    a member, applied a moment later). So this is one txn, as linearizable as a read: if
    ``requests/ID`` does not exist it puts a tombstone there (on ``lease``, as the commit
    would have), which the late txn's own compare (``requests/ID`` must not exist) then
    refuses; if it exists, it reads it. Idempotent, hence retried on another endpoint: a
    tombstone left by an earlier attempt reads as None again.

    The answer is only as good as the key's life: ``requests/ID`` goes with its lease, so
    resolve before the membership is lost (a coordinator whose lease is gone loads again
    anyway: its in-flight commits then show in the new state, or not)."""
    key = layout.request(_request_id(request))
    result = await client.txn(
        [Compare.create_revision(key, "==", 0)],
        [Op.put(key, _ABANDONED, lease=lease)],
        [Op.range(key)],
        retry=True,
    )
    if result.succeeded:
        return None
    (found,) = result.responses
    assert isinstance(found, RangeResult)
    if not found.kvs or found.kvs[0].value == _ABANDONED:
        return None
    return found.kvs[0].mod_revision

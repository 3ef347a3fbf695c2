"""The etcd store's data layer: a workspace's keys, their JSON, and load / follow / commit.

What the etcd store (docs/DISTRIBUTED.md, issue 15) is built on, below the coordinator and its
actors: it knows the key layout and the records the core already uses
(:class:`~coordinator._journal.UnitRecord`), and turns the three things a coordinator does with
the store into etcd requests on :class:`~coordinator.store._etcd.EtcdClient`:

- :func:`load`: the workspace's state at one revision R (one linearizable range, paged);
- :func:`follow`: every change after R, one :class:`Change` per etcd revision, in order (the
  watch); a compacted R raises :class:`Relist`: load again, follow from the new revision;
- :func:`commit`: one txn that writes units' records if none of them, and (when edges are
  added) not the graph, changed since the state the caller decided on; else :class:`Conflict`.

Keys, under ``/unitsync/WORKSPACE/`` (:class:`Layout`)::

    units/NAME   {"status":"started","reason":"","held":true,"requirements":{"git":"completed"}}
                 (compact UTF-8 JSON; "held" only when true, "requirements" only when not empty)
    graph        bumped by every commit that adds an edge: its ``mod_revision`` is what the
                 cycle check compares, its etcd ``version`` counts the bumps; its value is the
                 graph revision the commit was decided on (for a human reading the store)
    holds/NAME   the holding coordinator's id, attached to that coordinator's lease
    members/ID   {"host":..,"pid":..,"version":..} of a running coordinator, on its lease

Holds and members are written by ``_etcd_lease.py``; a hold goes into the same txn as the
unit's record (:func:`commit`'s ``extra``: a :class:`TxnPart`). Other keys under the prefix
(``members/ID``) are skipped by :func:`load` and
:func:`follow`. A stored value that is not a valid record raises :class:`StoreCorrupt` naming
its key, as the journal's replay raises ``JournalCorrupt`` naming its line: acknowledged state
is never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from .._errors import InvalidName
from .._journal import STORED_STATUSES, UnitRecord
from .._names import validate_name
from .._status import REQUIREMENTS, Status
from ._etcd import EtcdClient
from ._etcd_errors import Compacted, EtcdError, RequestTooLarge
from ._etcd_wire import Compare, EventType, KeyValue, Op, WatchBatch, prefix_end

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
    "commit",
    "decode_unit",
    "encode_unit",
    "follow",
    "load",
]

#: keys per range request of :func:`load` (etcd answers a big range in one message otherwise,
#: bounded only by ``--max-request-bytes`` on the way out and gRPC's limit on the way back)
DEFAULT_PAGE = 1000
#: attempts of :func:`load` when a compaction overtakes its paging (each restarts at "now")
_LOAD_ATTEMPTS = 3


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
    try:
        stored = Status(status)
        needs = {validate_name(dep): Status(req) for dep, req in requirements.items()}
    except (ValueError, TypeError, AttributeError, InvalidName) as exc:
        raise StoreCorrupt(key, f"bad value in {value[:200]!r}: {exc}") from None
    if stored not in STORED_STATUSES:
        raise StoreCorrupt(key, f"status {status!r} is not one a registered unit can have")
    if not isinstance(held, bool):
        raise StoreCorrupt(key, f"held must be true or false, not {held!r}")
    if unknown := set(obj) - {"status", "reason", "held", "requirements"}:
        raise StoreCorrupt(key, f"unknown fields {sorted(unknown)}")
    if bad := [dep for dep, req in needs.items() if req not in REQUIREMENTS]:
        raise StoreCorrupt(key, f"requirement on {bad[0]!r} is not started, completed or finished")
    return UnitRecord(stored, reason, needs, held)


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
    when no endpoint answered for its patience. Made by :func:`follow`."""

    def __init__(self, batches: AsyncIterator[WatchBatch], layout: Layout) -> None:
        self._batches = batches
        self._layout = layout
        self._ready: list[Change] = []

    def __aiter__(self) -> Follow:
        return self

    async def __anext__(self) -> Change:
        while not self._ready:
            try:
                batch = await self._batches.__anext__()
            except Compacted as exc:
                raise Relist(exc.compact_revision) from exc
            self._ready = self._split(batch)
        return self._ready.pop(0)

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
async def follow(client: EtcdClient, layout: Layout, after: int) -> AsyncIterator[Follow]:
    """``async with follow(client, layout, loaded.revision) as changes: async for change in
    changes``: every change to the workspace after revision ``after``, once each, in order.

    One watch of the prefix from ``after + 1``, which resumes on another endpoint when its
    stream breaks (see ``_etcd.py``). If the revisions after ``after`` were compacted away,
    the iteration raises :class:`Relist`: :func:`load` again and follow from its revision
    (a coordinator's mirror replaces its state by the new load's)."""
    async with client.watch(layout.prefix, layout.end, start_revision=after + 1) as watch:
        yield Follow(watch, layout)


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

    Raises :class:`Conflict` (catch up to its revision and decide again), ``ValueError`` for a
    written unit missing from ``unit_revisions``, :class:`RequestTooLarge` before sending when
    the txn would exceed etcd's operations per txn (``--max-txn-ops``, 128 by default; the
    caller splits the write, each part atomic), and the client's errors: a lost answer is
    :class:`~coordinator.store._etcd_errors.OutcomeUnknown` (never retried here)."""
    if not writes:
        raise ValueError("nothing to commit")
    if missing := sorted(set(writes) - set(unit_revisions)):
        raise ValueError(f"no revision to compare for {missing[:5]}")
    operations = len(writes) + (graph_revision is not None) + sum(len(p.ops) for p in extra)
    limit = client._max_txn_ops
    if operations > limit:
        raise RequestTooLarge(
            f"a commit of {len(writes)} units"
            f"{' and the graph' if graph_revision is not None else ''}"
            f"{' and its holds' if extra else ''} is {operations} txn "
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
    result = await client.txn(compares, puts)
    if not result.succeeded:
        raise Conflict(result.revision)
    return result.revision

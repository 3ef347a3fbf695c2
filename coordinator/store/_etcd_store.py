"""The etcd store behind ``serve --store etcd://...`` and ``open_coordinator(store=...)``.

:class:`EtcdStore` is the core's :class:`~coordinator._shared.SharedStore` on the data layer
(``_etcd_state.py``) and the membership lease (``_etcd_lease.py``): it commits what the actors
decided, reads a unit back after a refused commit, and runs the **mirror** — the one task that
follows the workspace's changes and hands each to the registry, in revision order — which the
coordinator's reads wait on (:meth:`EtcdStore.synced`).

Every commit carries a request id (``requests/ID``, on the membership lease): a commit whose
answer was lost is resolved, never sent twice. The ids of commits already answered are deleted
by the next commits (a few per txn), so they do not pile up.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Final

import trio

from .._api import Event
from .._errors import CoordinatorClosed, StoreUnavailable
from .._journal import UnitRecord
from .._messages import RemoteChange
from .._shared import Numbering, StoreConflict, record_events
from .._status import Status
from ._address import StoreAddress, StoreLost, StoreUnreachable, parse_store
from ._etcd import EtcdClient
from ._etcd_errors import (
    EtcdError,
    NoQuorum,
    OutcomeUnknown,
    RequestTooLarge,
    StoreFull,
    Unavailable,
)
from ._etcd_lease import Membership, membership, orphaned
from ._etcd_state import (
    DEFAULT_PAGE,
    Change,
    Conflict,
    Follow,
    Layout,
    Loaded,
    Relist,
    TxnPart,
    barrier,
    commit,
    decode_unit,
    follow,
    load,
    resolve,
)
from ._etcd_wire import Op, prefix_end

if TYPE_CHECKING:
    from .._inbox import Inbox
    from .._messages import RegistryMessage

__all__ = ["EtcdStore", "StoreAddress", "StoreLost", "StoreUnreachable", "open_etcd_store",
           "parse_store"]

log = logging.getLogger("unitsync.store")

#: Answered request ids deleted per commit (each is one more operation of its txn).
CLEANUP_PER_COMMIT: Final = 4
#: Seconds a lost commit answer is tried to be resolved before the caller is told "unknown".
RESOLVE_SECONDS: Final = 10.0
#: Seconds a read waits for the mirror to reach the store's revision before it answers from
#: what the mirror has (the store unreachable: a stale answer rather than none).
SYNC_SECONDS: Final = 2.0
#: Seconds the workspace's history may take to read at start (then it starts without it).
PAST_SECONDS: Final = 30.0
#: Seconds a decision waits for the mirror to catch up (after a refused commit).
CATCH_UP_SECONDS: Final = 10.0
#: Seconds between attempts to follow the store again after the watch gave up.
REFOLLOW_SECONDS: Final = 1.0

FULL_FIX = ("the store is full (etcd's space quota): compact it (run etcd with "
            "--auto-compaction-mode=periodic --auto-compaction-retention=1h), then "
            "`etcdctl defrag` and `etcdctl alarm disarm`")


class EtcdStore:
    """One coordinator's view of a workspace in etcd; made by :func:`open_etcd_store`."""

    def __init__(
        self, client: EtcdClient, layout: Layout, member: Membership, holding: set[str]
    ) -> None:
        self._client = client
        self._layout = layout
        self.member = member
        self.member_id = member.member_id
        #: The revision of the last change the mirror handed to the registry.
        self.applied = 0
        self._moved = trio.Event()
        self._follow: Follow | None = None
        self._answered: deque[str] = deque()  # request ids whose keys the next commits delete
        #: Units whose hold this coordinator's lease carries (as far as its commits know):
        #: while there are some, the lease is left to expire instead of revoked on exit.
        self.holding = holding

    # --- commits ------------------------------------------------------------------------------

    async def commit_unit(
        self, name: str, record: UnitRecord, revision: int, *, hold: bool | None
    ) -> int:
        key = self._layout.hold(name)
        if hold:
            part = TxnPart((), (Op.put(key, self.member_id.encode(), lease=self.member.lease_id),))
        elif hold is False:
            part = TxnPart((), (Op.delete(key),))
        else:
            part = TxnPart()
        revision = await self._commit({name: record}, {name: revision}, None, part)
        if hold:
            self.holding.add(name)
        else:
            self.holding.discard(name)
        return revision

    async def commit_edges(
        self, writes: Mapping[str, UnitRecord], revisions: Mapping[str, int],
        graph_revision: int,
    ) -> int:
        return await self._commit(writes, revisions, graph_revision, TxnPart())

    async def _commit(
        self, writes: Mapping[str, UnitRecord], revisions: Mapping[str, int],
        graph_revision: int | None, part: TxnPart,
    ) -> int:
        request = uuid.uuid4().hex
        cleanup = [self._answered.popleft() for _ in range(min(CLEANUP_PER_COMMIT,
                                                               len(self._answered)))]
        deletes = TxnPart((), tuple(Op.delete(self._layout.request(r)) for r in cleanup))
        try:
            revision = await commit(
                self._client, self._layout, writes, unit_revisions=revisions,
                graph_revision=graph_revision, extra=(part, deletes), request=request,
                lease=self.member.lease_id,
            )
        except Conflict as conflict:
            self._answered.extendleft(cleanup)
            raise StoreConflict(conflict.revision) from None
        except (OutcomeUnknown, NoQuorum) as lost:
            self._answered.extendleft(cleanup)
            revision = await self._resolve(request, lost)
        except StoreFull:
            self._answered.extendleft(cleanup)
            raise StoreUnavailable(FULL_FIX) from None
        except RequestTooLarge as exc:
            self._answered.extendleft(cleanup)
            raise StoreUnavailable(str(exc)) from None
        except EtcdError as exc:  # Unavailable: sent to nobody; a server's refusal
            self._answered.extendleft(cleanup)
            raise StoreUnavailable(str(exc)) from None
        self._answered.append(request)
        return revision

    async def _resolve(self, request: str, lost: EtcdError) -> int:
        """The revision of the commit whose answer was lost, or StoreUnavailable: "no" when
        it was not applied (and now never will be), "unknown" when the store did not say."""
        with trio.move_on_after(RESOLVE_SECONDS):
            while True:
                try:
                    revision = await resolve(self._client, self._layout, request,
                                             lease=self.member.lease_id)
                except (Unavailable, NoQuorum, OutcomeUnknown):
                    await trio.sleep(0.2)
                    continue
                except EtcdError:
                    break
                if revision is None:
                    raise StoreUnavailable(str(lost)) from None
                self._answered.append(request)
                return revision
        raise StoreUnavailable(str(lost), "unknown") from None

    async def read_unit(self, name: str) -> tuple[UnitRecord | None, int]:
        key = self._layout.unit(name)
        try:
            result = await self._client.range(key)
        except EtcdError as exc:
            raise StoreUnavailable(str(exc)) from None
        if not result.kvs:
            return None, 0
        kv = result.kvs[0]
        return decode_unit(kv.key, kv.value), kv.mod_revision

    async def past_events(self, loaded: Loaded, clock: Callable[[], float]) -> list[Event]:
        """:func:`past_events` of this store's workspace up to what was ``loaded`` (before the
        coordinator starts)."""
        until = max(loaded.revisions.values(), default=0)
        failed: BaseException | None = None
        try:
            with trio.fail_after(PAST_SECONDS):
                return await past_events(self._client, self._layout, until, clock=clock)
        except* trio.TooSlowError:
            failed = TimeoutError(f"it took more than {PAST_SECONDS} s")
        except* EtcdError as group:  # (bare or wrapped by the watch's tasks)
            failed = group.exceptions[0]
        log.warning("reading the workspace's history failed (%s): starting without it", failed)
        return []

    # --- the mirror ---------------------------------------------------------------------------

    async def mirror(
        self, registry: Inbox[RegistryMessage], after: int,
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Follow the workspace from revision ``after`` and hand every change to the registry,
        in order, for ever: a compacted revision loads the workspace again (each unit's
        record, newer ones taken), a watch that gave up is followed again from where it was."""
        self.applied = after
        started = False
        while True:
            relist = failed = closed = False
            try:
                async with follow(self._client, self._layout, self.applied,
                                  member_id=self.member_id,
                                  lease=self.member.lease_id) as changes:
                    self._follow = changes
                    if not started:
                        started = True
                        task_status.started()
                    async for change in changes:
                        await self._hand_over(registry, change)
            # (the watch's own tasks wrap what ends it in an ExceptionGroup)
            except* CoordinatorClosed:  # the registry stopped: so do we
                closed = True
            except* Relist:
                relist = True
            except* EtcdError as group:
                failed = True
                log.warning("following the store failed (%s): again in %s s",
                            group.exceptions[0], REFOLLOW_SECONDS)
            if closed:
                return
            if relist:
                log.warning("the store compacted changes this coordinator had not seen: "
                            "loading the workspace again")
                try:
                    await self._relist(registry)
                except CoordinatorClosed:
                    return
            elif failed:
                self._wake()
                await trio.sleep(REFOLLOW_SECONDS)

    async def _hand_over(self, registry: Inbox[RegistryMessage], change: Change) -> None:
        units = tuple((name, record) for name, record in change.units if record is not None)
        gone = orphaned(change)
        if units or change.graph or gone:
            await registry.send(RemoteChange(change.revision, units, change.graph, gone))
        self._applied(change.revision)

    async def _relist(self, registry: Inbox[RegistryMessage]) -> None:
        while True:
            try:
                loaded = await load(self._client, self._layout)
                break
            except EtcdError as exc:
                log.warning("loading the workspace failed (%s): again in %s s", exc,
                            REFOLLOW_SECONDS)
                await trio.sleep(REFOLLOW_SECONDS)
        for name, record in sorted(loaded.state.items(),  # each at its own revision, in order
                                   key=lambda item: (loaded.revisions[item[0]], item[0])):
            await registry.send(RemoteChange(loaded.revisions[name], ((name, record),)))
        await registry.send(RemoteChange(loaded.graph_revision, graph=True, holds_gone=tuple(
            name for name, record in loaded.state.items()
            if record.held and record.status is Status.STARTED and name not in loaded.holds
        )))
        self._applied(loaded.revision)

    def _applied(self, revision: int) -> None:
        self.applied = max(self.applied, revision)
        self._wake()

    def _wake(self) -> None:
        self._moved.set()
        self._moved = trio.Event()

    async def wait_applied(self, revision: int) -> None:
        """(See ``SharedStore``.) ``StoreUnavailable`` after :data:`CATCH_UP_SECONDS`."""
        with trio.move_on_after(CATCH_UP_SECONDS):
            while self.applied < revision:
                changes = self._follow
                if changes is not None and changes.position < revision:
                    # moves a watch that has nothing to deliver past ``revision``
                    with trio.move_on_after(SYNC_SECONDS):
                        try:
                            await changes.caught_up(revision)
                        except EtcdError:
                            pass  # that watch ended: the mirror follows again, or re-lists
                if self.applied < revision:
                    await self._moved.wait()
            return
        raise StoreUnavailable(f"this coordinator's copy did not reach revision {revision} "
                               f"within {CATCH_UP_SECONDS} s")

    async def synced(self) -> None:
        with trio.move_on_after(SYNC_SECONDS):
            try:
                revision = await barrier(self._client, self._layout)
                await self.wait_applied(revision)
            except (EtcdError, StoreUnavailable) as exc:
                log.warning("reading the store's revision failed (%s): answering from this "
                            "coordinator's copy", exc)


async def past_events(
    client: EtcdClient, layout: Layout, until: int, *, clock: Callable[[], float],
) -> list[Event]:
    """The workspace's history up to revision ``until`` (the last revision that wrote a unit's
    record: the watch has nothing after it to deliver), as events numbered from 1: etcd keeps
    every revision since its last compaction, so the changes of the units' records are read
    back (one watch from the oldest kept revision) and each becomes the events a coordinator
    would have published — a status change, an edge added — stamped with the record's
    ``time``. A unit first seen after a compaction starts from "not registered"."""
    events: list[Event] = []
    records: dict[str, UnitRecord] = {}
    numbering = Numbering()
    after = 0
    if not until:
        return events

    def take(name: str, record: UnitRecord, revision: int) -> None:
        numbered = functools.partial(numbering.at, revision)
        events.extend(record_events(name, records.get(name), record, numbered, clock))
        records[name] = record

    while True:
        compacted: Relist | None = None
        try:
            async with follow(client, layout, after) as changes:
                async for change in changes:
                    if change.revision > until:
                        return events
                    for name, record in change.units:
                        if record is not None:
                            take(name, record, change.revision)
                    if change.revision >= until:
                        return events
        except* Relist as group:  # (the watch's tasks wrap it) start at the oldest kept
            compacted = group.exceptions[0]  # type: ignore[assignment]
        assert compacted is not None
        oldest = compacted.compact_revision
        if not oldest or oldest <= after:
            raise compacted
        # what came before the oldest revision kept is gone: each unit as it was then, one
        # event from "not registered" (at the time its record says), then what followed
        events.clear()
        records.clear()
        numbering = Numbering()
        for name, record, revision in await _state_at(client, layout, oldest):
            take(name, record, revision)
        if oldest >= until:
            return events
        after = oldest


async def _state_at(
    client: EtcdClient, layout: Layout, revision: int
) -> list[tuple[str, UnitRecord, int]]:
    """Every unit's record at ``revision`` and the revision it was written at, in that order."""
    found: list[tuple[int, str, UnitRecord]] = []
    start = layout.units
    while True:
        result = await client.range(start, prefix_end(layout.units), revision=revision,
                                    limit=DEFAULT_PAGE)
        for kv in result.kvs:
            found.append((kv.mod_revision, layout.name(kv.key, layout.units),
                          decode_unit(kv.key, kv.value)))
        if not result.more or not result.kvs:
            break
        start = result.kvs[-1].key + b"\0"
    return [(name, record, written)
            for written, name, record in sorted(found, key=lambda f: (f[0], f[1]))]


def default_member_id() -> str:
    """A coordinator's id in the store when none is given: host and process."""
    return f"{socket.gethostname()}-{os.getpid()}"


@asynccontextmanager
async def open_etcd_store(
    address: StoreAddress | str, *, member_id: str | None = None, ttl: float | None = None,
) -> AsyncIterator[tuple[EtcdStore, Loaded]]:
    """Connect, load the workspace and join it as ``member_id`` (a membership lease, revoked on
    exit unless it still carries holds: then a coordinator started again with the same id has
    the lease's TTL to take them back): the store and what it held.
    :class:`StoreUnreachable` if no endpoint answers."""
    if isinstance(address, str):
        address = parse_store(address)
    layout = Layout(address.workspace)
    async with EtcdClient(list(address.endpoints)) as client:
        try:
            loaded = await load(client, layout)
        except EtcdError as exc:
            raise StoreUnreachable(str(address), str(exc)) from None
        options = {} if ttl is None else {"ttl": ttl}
        joined = AsyncExitStack()
        holding: set[str] = set()
        try:
            member = await joined.enter_async_context(membership(
                client, layout, member_id or default_member_id(), keep=lambda: bool(holding),
                **options))
        except EtcdError as exc:
            raise StoreUnreachable(str(address), str(exc)) from None
        async with joined:
            yield EtcdStore(client, layout, member, holding), loaded

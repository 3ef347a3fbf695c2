"""A coordinator's membership lease and its holds on units, in etcd (docs/DISTRIBUTED.md,
"Holds and dying machines"; issue 15).

Each coordinator (``serve``) has one etcd lease for as long as it runs (:func:`membership`):
``members/ID`` says who it is, and each unit it holds has a ``holds/NAME`` key whose value is
its id, both attached to that lease. When the machine dies or is cut off, nobody refreshes the
lease, etcd deletes its keys once the TTL has run out, and every coordinator's mirror sees the
holds vanish (:func:`orphaned`); each then tries to fail the unit ``holder disconnected`` with
a txn comparing the unit's ``mod_revision`` (:func:`fail_orphan`): exactly one wins.

A hold is written in the same txn as the unit's record (:func:`hold_part` / :func:`release_part`
are :class:`~coordinator.store._etcd_state.TxnPart` s for
:func:`~coordinator.store._etcd_state.commit`: one commit path), so a unit is never seen started
by a holder without the hold that makes its holder's death visible, nor the other way round.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import trio

from .._journal import UnitRecord
from .._lease import HOLDER_GONE
from .._status import Status
from .._version import __version__
from ._etcd import EtcdClient
from ._etcd_errors import EtcdError, LeaseNotFound
from ._etcd_state import Change, Conflict, Layout, TxnPart, commit
from ._etcd_wire import Compare, Op

log = logging.getLogger("unitsync.store")

__all__ = [
    "DEFAULT_TTL",
    "MIN_TTL",
    "REVOKE_TIMEOUT",
    "Membership",
    "fail_orphan",
    "hold",
    "hold_part",
    "membership",
    "orphaned",
    "release",
    "release_part",
]

DEFAULT_TTL = 5.0  #: seconds a coordinator's lease lives without a refresh
MIN_TTL = 2  #: etcd grants no shorter lease
REVOKE_TIMEOUT = 2.0  #: seconds the exit of :func:`membership` spends revoking its lease


class Membership:
    """A coordinator's lease, alive while :func:`membership`'s block runs.

    ``lease_id`` is what holds attach to, ``member_id`` what they say. ``lost`` is set (and
    ``reason`` says why) when the store answers that the lease no longer exists (it expired:
    this machine was cut off for longer than ``ttl``, or it was revoked). From then on this
    coordinator's holds are gone too: its held units are someone else's to fail, and the caller
    must stop acting as their holder (and re-list). It is never reset. While no refresh
    succeeds for longer than ``ttl``, ``doubtful`` is set and refreshing goes on: a store
    without a quorum expires no lease, so only its answer tells."""

    __slots__ = (
        "_keepalive", "doubtful", "lease_id", "lost", "member_id", "reason", "refreshed", "ttl",
    )

    def __init__(self, member_id: str, lease_id: int, ttl: int) -> None:
        self.member_id = member_id
        self.lease_id = lease_id
        self.ttl = ttl  #: seconds, as granted
        self.lost = trio.Event()
        self.reason: str | None = None
        self.refreshed = 0  #: successful keepalives so far
        #: No refresh succeeded for longer than the TTL: the lease may be gone (or the store
        #: lost its quorum, which expires no lease); refreshing goes on.
        self.doubtful = False
        self._keepalive = trio.CancelScope()  # the refresh task's (a test stops it to play dead)

    def __repr__(self) -> str:
        state = f"lost: {self.reason}" if self.lost.is_set() else "alive"
        return f"<Membership {self.member_id!r} lease {self.lease_id:x} ({state})>"

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()

    async def _keep_alive(self, client: EtcdClient, interval: float) -> None:
        """Refresh the lease every ``interval`` seconds until cancelled or lost."""
        last_ok = trio.current_time()
        with self._keepalive:
            while True:
                await trio.sleep(interval)
                try:
                    await client.lease_keepalive(self.lease_id)
                except LeaseNotFound:
                    self._lose(f"the store says lease {self.lease_id:x} is gone (expired or "
                               "revoked): this coordinator's holds were deleted with it")
                    return
                except EtcdError as exc:
                    # past last_ok + ttl the lease may have expired (this machine cut off) or
                    # not (the store lost its quorum: then no lease expires, and the next
                    # leader extends them): keep refreshing, the answer tells which
                    silent = trio.current_time() - last_ok
                    if silent > self.ttl and not self.doubtful:
                        self.doubtful = True
                        log.warning("no lease refresh succeeded for %.1f s, more than its %s s "
                                    "TTL: this coordinator's holds may have expired (%s)",
                                    silent, self.ttl, exc)
                else:
                    last_ok = trio.current_time()
                    self.refreshed += 1
                    self.doubtful = False


def _member_value() -> bytes:
    """The value of ``members/ID``: who runs this coordinator, for a human or a status page."""
    info = {"host": socket.gethostname(), "pid": os.getpid(), "version": __version__}
    return json.dumps(info, separators=(",", ":")).encode()


async def _revoke(client: EtcdClient, lease_id: int, timeout: float) -> None:
    """Revoke ``lease_id`` (its keys go at once), shielded from the caller's cancellation and
    bounded by ``timeout``; if the store does not answer, the lease expires after its TTL."""
    with trio.CancelScope(shield=True), trio.move_on_after(timeout):
        try:
            await client.lease_revoke(lease_id)
        except EtcdError:
            pass  # unreachable: the TTL ends it instead, as for a dead machine


@asynccontextmanager
async def membership(
    client: EtcdClient,
    layout: Layout,
    member_id: str,
    *,
    ttl: float = DEFAULT_TTL,
    revoke_timeout: float = REVOKE_TIMEOUT,
    keep: Callable[[], bool] | None = None,
) -> AsyncIterator[Membership]:
    """``async with membership(etcd, layout, "host-1234") as me``: this coordinator's lease.

    Grants one lease of ``ttl`` seconds (rounded up; at least 2, etcd's minimum), puts
    ``members/ID`` (host, pid, version as JSON) on it, and refreshes it every ``ttl / 3``
    seconds in a background task; see :class:`Membership` for ``lost``. On the way out, even
    cancelled, the lease is revoked (at most ``revoke_timeout`` seconds), which deletes
    ``members/ID`` and every hold still on it: a clean exit does not wait out the TTL —
    unless ``keep()`` says so (holds are still on it): then it expires after its TTL, which
    is the time a restarted coordinator with the same id has to take those holds back."""
    if not isinstance(member_id, str) or not member_id or "/" in member_id:
        raise ValueError(f"a member id is a non-empty string without '/', not {member_id!r}")
    grant = await client.lease_grant(max(MIN_TTL, math.ceil(ttl)))
    member = Membership(member_id, grant.id, grant.ttl)
    try:
        await client.put(layout.member(member_id), _member_value(), lease=grant.id, retry=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(member._keep_alive, client, ttl / 3)
            try:
                yield member
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if keep is None or not keep():
            await _revoke(client, grant.id, revoke_timeout)


# -- holds


def hold_part(
    layout: Layout, unit: str, lease_id: int, member_id: str, *, previous: str | None = None
) -> TxnPart:
    """The compare and put that take the hold on ``unit``, for :func:`commit`'s ``extra``:
    ``holds/NAME`` = ``member_id`` on ``lease_id``, if nobody holds it (the key does not
    exist). ``previous``: taking a hold back after a restart while the old hold still exists
    (its old lease not yet expired): compare that it is still ``previous``'s instead; the put
    moves it to the new lease."""
    key = layout.hold(unit)
    if previous is None:
        check = Compare.create_revision(key, "==", 0)
    else:
        check = Compare.value(key, "==", previous.encode())
    return TxnPart((check,), (Op.put(key, member_id.encode(), lease=lease_id),))


def release_part(layout: Layout, unit: str, member_id: str) -> TxnPart:
    """The compare and delete that give up the hold on ``unit``, only if it is still
    ``member_id``'s (value compare): a hold lost and taken by someone else is left alone."""
    key = layout.hold(unit)
    return TxnPart((Compare.value(key, "==", member_id.encode()),), (Op.delete(key),))


async def hold(
    client: EtcdClient,
    layout: Layout,
    unit: str,
    record: UnitRecord,
    *,
    lease: int,
    member: str,
    unit_revision: int,
    previous: str | None = None,
) -> int:
    """Write ``unit``'s ``record`` (started, held) and take its hold in one txn; the revision.

    :class:`Conflict` if the unit changed since ``unit_revision`` or the hold is taken (or, with
    ``previous``, is no longer ``previous``'s): catch up and decide again."""
    if record.status is not Status.STARTED or not record.held:
        raise ValueError(f"a hold writes a started, held record, not {record}")
    return await commit(
        client, layout, {unit: record}, unit_revisions={unit: unit_revision}, graph_revision=None,
        extra=(hold_part(layout, unit, lease, member, previous=previous),),
    )


async def release(
    client: EtcdClient,
    layout: Layout,
    unit: str,
    member: str,
    *,
    record: UnitRecord | None = None,
    unit_revision: int | None = None,
) -> int:
    """Delete ``unit``'s hold if it is still ``member``'s; the revision. With ``record`` (and
    ``unit_revision``), the unit's new record (completed, failed) is written in the same txn,
    so the hold never vanishes before the outcome that ends it is stored.

    :class:`Conflict` if the hold is not ``member``'s (or, with a record, the unit changed)."""
    part = release_part(layout, unit, member)
    if record is not None:
        if unit_revision is None:
            raise ValueError("a release that writes the unit's record needs its unit_revision")
        return await commit(client, layout, {unit: record}, unit_revisions={unit: unit_revision},
                            graph_revision=None, extra=(part,))
    result = await client.txn(part.compares, part.ops)
    if not result.succeeded:
        raise Conflict(result.revision)
    return result.revision


# -- orphans


def orphaned(change: Change, state: Mapping[str, UnitRecord] | None = None) -> tuple[str, ...]:
    """The units whose hold vanished in ``change`` without their record changing with it (a
    release that stores the outcome writes both in one revision: not an orphan). With
    ``state`` (the mirror, with ``change`` applied), only those still started and held: the
    ones to :func:`fail_orphan`."""
    written = {name for name, _ in change.units}
    names = [name for name, holder in change.holds if holder is None and name not in written]
    if state is not None:
        names = [
            name for name in names
            if (record := state.get(name)) is not None
            and record.status is Status.STARTED and record.held
        ]
    return tuple(names)


async def fail_orphan(
    client: EtcdClient, layout: Layout, unit: str, record: UnitRecord, unit_revision: int
) -> bool:
    """Fail ``unit`` (whose ``record`` at ``unit_revision`` is the mirror's) with ``holder
    disconnected``, if it has not changed since and nobody holds it again; True if this call
    did it. Every coordinator that sees the orphan calls this: the compare of the unit's
    ``mod_revision`` lets exactly one win; the others get False and see the winner's change
    through their follow. A lost answer raises
    :class:`~coordinator.store._etcd_errors.OutcomeUnknown`: the follow tells."""
    failed = UnitRecord(Status.FAILED, HOLDER_GONE, record.requirements)
    nobody = TxnPart((Compare.create_revision(layout.hold(unit), "==", 0),))
    try:
        await commit(client, layout, {unit: failed}, unit_revisions={unit: unit_revision},
                     graph_revision=None, extra=(nobody,))
    except Conflict:
        return False
    return True

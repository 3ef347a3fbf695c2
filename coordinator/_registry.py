"""RegistryActor: routes requests to unit actors and guards the dependency graph."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import outcome
import trio

from ._errors import CycleError, Overloaded, StoreUnavailable
from ._events import EventHub
from ._graph import DependencyGraph
from ._inbox import POKE, Inbox
from ._messages import (
    MUTATIONS,
    NOT_REGISTERED,
    AddRequirements,
    Adopt,
    Apply,
    EdgesCommitted,
    Fail,
    Published,
    Ping,
    RegistryMessage,
    RegistrySnapshot,
    RemoteChange,
    SleepIdle,
    Snapshot,
    Subscribe,
    ToUnit,
    UnitRequest,
    Want,
    answer_closed,
)
from ._journal_writer import JournalWriter
from ._journal import UnitRecord
from ._lease import HOLD_GRACE, HOLDER_GONE
from ._reply import Reply
from ._reads import answer_absent
from ._settling import Settling
from ._shared import Numbering, SharedStore, StoreConflict, record_events
from ._status import Status
from ._unit import IDLE_SECONDS, UnitActor
from ._unit_state import ORPHAN, REMOTE

__all__ = ["MAX_UNITS", "REGISTRY_INBOX_SIZE", "RegistryActor"]

#: Requests buffered for the registry before callers wait.
REGISTRY_INBOX_SIZE: Final = 1024

#: Default limit on units (every name mentioned, registered or only depended on).
MAX_UNITS: Final = 100_000

#: Units per commit of an ``apply`` to a shared store: etcd takes at most 128 operations per
#: txn by default (``--max-txn-ops``), and a commit adds a few of its own. A bigger apply is
#: committed in parts, each atomic (the cycle check covers the whole).
COMMIT_PART: Final = 100


class RegistryActor:
    """Owns the name → actor routing table and the dependency graph.

    * Creates a :class:`~._unit.UnitActor` (in its own nursery) the first time a request needs
      one; requests that need no actor (``info`` of a unit nobody mentioned) are answered here.
    * Keeps the latest published state of every unit (units post it, like to their dependents),
      so that a new edge carries its dependency's current state and ``want`` costs one hop.
    * ``want``: runs the cycle check on the graph **before** linking, so a refused edge changes
      nothing; then tells the dependent its new requirements (with their states) and each
      dependency to push its changes to the dependent from now on.
    * It awaits only unit inboxes, and units never await the registry, so no cycle of waits exists.
    """

    __slots__ = (
        "_inbox", "_events", "_graph", "_inboxes", "_states", "_nursery", "_candidates",
        "_settling", "_max_units", "finished", "_writer", "_restored", "_hold_grace", "_store",
        "_records",
        "_graph_revision", "_committing", "_deferred", "_remote_holds", "_seen", "_numbering",
    )

    def __init__(
        self,
        inbox: Inbox[RegistryMessage],
        events: EventHub,
        *,
        max_units: int = MAX_UNITS,
        writer: JournalWriter | None = None,
        restored: dict[str, UnitRecord] | None = None,
        hold_grace: float = HOLD_GRACE,
        store: SharedStore | None = None,
        revisions: dict[str, int] | None = None,
        graph_revision: int = 0,
        remote_holds: frozenset[str] = frozenset(),
    ) -> None:
        self._inbox = inbox
        #: How long restored holds wait for their holders (see ``_lease.HOLD_GRACE``).
        self._hold_grace = hold_grace
        #: The journal's group commit (None: no journal), and the state it held at start.
        self._writer = writer
        self._restored = restored or {}
        #: Unit actors (every unit mentioned) at most; more are refused with ``Overloaded``.
        self._max_units = max_units
        #: Set once the registry and every unit actor have stopped (waiters answered).
        self.finished = trio.Event()
        self._events = events
        self._graph = DependencyGraph()
        self._inboxes: dict[str, Inbox[UnitRequest]] = {}
        self._states: dict[str, Published] = {}
        self._nursery: trio.Nursery | None = None
        #: Inboxes of awake unit actors without a waiter: what the idle sweep looks at (see
        #: ``_unit.IDLE_SECONDS``). Actors add and remove themselves.
        self._candidates: set[Inbox[UnitRequest]] = set()
        #: Posted states settled in the poster's turn (``_settling.py``): one queue for all units.
        self._settling = Settling()
        #: A store shared with other coordinators (``_shared.py``), or None. With one, the
        #: registry commits edges itself (one commit at a time: the others wait in
        #: ``_deferred``), deciding on ``_records`` — each unit's record and revision as the
        #: mirror last brought them — and the graph at ``_graph_revision``.
        self._store = store
        self._records: dict[str, tuple[UnitRecord, int]] = {
            name: (record, (revisions or {}).get(name, 0)) for name, record in self._restored.items()
        } if store is not None else {}
        self._graph_revision = graph_revision
        self._committing = False
        self._deferred: deque[Want | Apply] = deque()
        #: Units restored held by another coordinator (their holds end with its lease).
        self._remote_holds = remote_holds
        #: Each unit's record as the events published so far have it: with a shared store the
        #: events are made here, from the store's changes in revision order (``_shared.py``).
        self._seen: dict[str, UnitRecord] = dict(self._restored) if store is not None else {}
        self._numbering = Numbering()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled or until the inbox is closed; unit actors stop with it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._sweep, name="unitsync:idle-sweep")
            orphans = self._restore(self._restored)
            self._restored = {}
            if orphans:
                nursery.start_soon(self._expire_holds, orphans, name="unitsync:hold-grace")
            task_status.started()
            inbox = self._inbox
            try:
                async for message in inbox.receiver:
                    self._states.update(inbox.take_states(message))
                    if message is POKE:
                        continue
                    try:
                        await self._handle(message)  # type: ignore[arg-type]
                    except BaseException:
                        answer_closed(message)  # cancelled while handing it to a unit
                        raise
            finally:
                self._close()
                nursery.cancel_scope.cancel()
        self.finished.set()

    async def _handle(self, message: RegistryMessage) -> None:
        match message:
            case ToUnit(unit, request):
                inbox = self._inboxes.get(unit)
                if inbox is None:
                    # (with a shared store, a mutation is decided by an actor, which asks the
                    # store before it refuses: the unit may be there and not yet here)
                    if (self._store is None or not isinstance(request, MUTATIONS)) \
                            and answer_absent(unit, request):
                        return
                    if self._full(1, request.reply):  # type: ignore[union-attr]
                        return
                    inbox = self._spawn(unit)
                await inbox.send(request)
            case Want(unit, requirements, reply) if self._store is not None:
                self._commit_edges(message, ((unit, requirements),), reply)
            case Apply(units, reply) if self._store is not None:
                self._commit_edges(message, units, reply)
            case EdgesCommitted():
                await self._edges_committed(message)
            case RemoteChange():
                await self._remote_change(message)
            case Want(unit, requirements, reply):
                new = {unit, *(d for d, _ in requirements)}.difference(self._inboxes)
                if self._full(len(new), reply):
                    return
                try:
                    self._graph.add(unit, dict(requirements))
                except CycleError as exc:
                    reply.error(exc)
                    return
                await self._link(((unit, requirements),), _AllAnswered(1, reply).answer)
            case Apply(units, reply):
                names = {name for unit, reqs in units for name in (unit, *(d for d, _ in reqs))}
                if self._full(len(names.difference(self._inboxes)), reply):
                    return
                try:
                    self._graph.add_all([(unit, dict(reqs)) for unit, reqs in units])
                except CycleError as exc:
                    reply.error(exc)
                    return
                await self._link(units, _AllAnswered(len(units), reply).answer)
            case Snapshot(edges, reply):
                reply.ok(
                    RegistrySnapshot(
                        inboxes=dict(self._inboxes),
                        edges=self._graph.edges() if edges else [],
                    )
                )
            case Ping(reply):
                reply.ok(None)
            case SleepIdle(reply):
                for inbox in list(self._candidates):
                    inbox.check_idle()
                reply.ok(None)

    async def _link(
        self, units: tuple[tuple[str, tuple[tuple[str, Status], ...]], ...],
        answer: Callable[[outcome.Outcome[None]], object],
    ) -> None:
        """After the cycle check (a want's unit, or an apply's): each unit's actor takes its
        requirements (registering it), with the registry's copy of each dependency's state,
        and its answer goes to ``answer``; each dependency's actor learns its new dependent —
        in one message per actor: a declared unit's ``AddRequirements`` carries the
        ``Subscribe`` of its new dependents, a dependency not declared here gets its
        ``Subscribe``s alone. (``_states`` changes only between two messages of the registry,
        so both ends of an edge are given one state.)"""
        inboxes, states = self._inboxes, self._states
        for unit, _ in units:
            if unit not in inboxes:
                self._spawn(unit)
        given: list[tuple[tuple[str, Status, Published], ...]] = []
        dependents: dict[str, list[Subscribe]] = {}
        for unit, requirements in units:
            dependent = inboxes[unit]
            requires = tuple((d, req, states.get(d, NOT_REGISTERED)) for d, req in requirements)
            given.append(requires)
            for dependency, _, state in requires:
                dependents.setdefault(dependency, []).append(Subscribe(unit, dependent, state))
        for (unit, _), requires in zip(units, given):
            await inboxes[unit].hand(AddRequirements(
                requires, Reply(answer), tuple(dependents.pop(unit, ())),
            ))
        for dependency, subscribes in dependents.items():  # required, not declared
            inbox = inboxes.get(dependency) or self._spawn(dependency)
            for subscribe in subscribes:
                await inbox.hand(subscribe)

    # --- a shared store (``_shared.py``) ------------------------------------------------------

    def _commit_edges(
        self, message: Want | Apply,
        units: tuple[tuple[str, tuple[tuple[str, Status], ...]], ...], reply: Reply[None],
    ) -> None:
        """Want/Apply with a shared store: the cycle check on the graph as the mirror has it,
        then the units' new records committed (in a task: the registry goes on routing) with
        a compare on the graph's revision; the edges are linked once the store took them.

        One commit at a time; the wants that came meanwhile go together in the next one (up
        to :data:`COMMIT_PART` units), each checked against the graph with the edges of those
        before it in the batch: a cycle refuses only the want that closes it."""
        if self._committing:
            self._deferred.append(message)
            return
        batch: list[tuple[Want | Apply, frozenset[str]]] = []
        undos: list[Any] = []
        writes: dict[str, UnitRecord] = {}
        revisions: dict[str, int] = {}
        now = self._events.now()
        size = 0
        while True:
            wanted = _edge_units(message)
            if batch and size + len(wanted) > COMMIT_PART:
                self._deferred.appendleft(message)  # the next commit takes it
                break
            names = {name for unit, reqs in wanted for name in (unit, *(d for d, _ in reqs))}
            if not self._full(len(names.difference(self._inboxes)), message.reply):
                try:
                    undos.append(self._graph.add_all_undoable(
                        [(unit, dict(reqs)) for unit, reqs in wanted]))
                except CycleError as exc:
                    message.reply.error(exc)
                else:
                    needs = set()
                    for unit, reqs in wanted:
                        record, revision = self._records.get(unit, (None, 0))
                        base = writes.get(unit) or record or UnitRecord(Status.PENDING)
                        merged = {**base.requirements, **dict(reqs)}
                        if record is not None and merged == record.requirements:
                            continue  # the store has these edges already
                        writes[unit] = UnitRecord(base.status, base.reason, merged, base.held,
                                                  now)
                        revisions[unit] = revision
                        needs.add(unit)
                    if needs:
                        batch.append((message, frozenset(needs)))
                        size += len(wanted)
                    else:
                        message.reply.ok(None)
            if not self._deferred:
                break
            message = self._deferred.popleft()
        for undo in reversed(undos):  # the edges go in once the store has taken them
            self._graph.undo(undo)
        if not batch:
            return
        self._committing = True
        assert self._nursery is not None
        self._nursery.start_soon(self._commit_task, tuple(batch), writes, revisions,
                                 self._graph_revision, name="unitsync:commit-edges")

    async def _commit_task(
        self, batch: tuple[tuple[Want | Apply, frozenset[str]], ...],
        writes: dict[str, UnitRecord], revisions: dict[str, int], graph_revision: int,
    ) -> None:
        """Commit ``writes``, in parts of at most :data:`COMMIT_PART` units (a txn has at most
        128 operations in etcd's default set-up), each atomic and comparing the graph's
        revision with the one before it; report what was committed to the registry."""
        store = self._store
        assert store is not None
        committed: dict[str, UnitRecord] = {}
        revision = graph_revision
        names = list(writes)
        try:
            try:
                for start in range(0, len(names), COMMIT_PART):
                    part = {u: writes[u] for u in names[start:start + COMMIT_PART]}
                    revision = await store.commit_edges(
                        part, {u: revisions[u] for u in part}, revision)
                    committed.update(part)
            except StoreConflict as conflict:  # decide again on the state the mirror brings
                await store.wait_applied(conflict.revision)
                result = EdgesCommitted(batch, committed, revision, retry=True)
            except StoreUnavailable as error:
                result = EdgesCommitted(batch, committed, revision, error=error)
            else:
                result = EdgesCommitted(batch, committed, revision)
            await self._inbox.send(result)
        except BaseException:
            for message, _ in batch:
                answer_closed(message)
            raise

    async def _edges_committed(self, done: EdgesCommitted) -> None:
        """What the commit task did: the committed records taken (linked, the actors told),
        then the callers answered — or their messages decided again (the parts committed are
        in the store now: only the rest is written), or refused."""
        self._committing = False
        finished = done.error is None and not done.retry
        answers: dict[str, list[Callable[[outcome.Outcome[None]], object]]] = {}
        if finished:
            for message, needs in done.batch:
                each = _AllAnswered(len(needs), message.reply)
                for unit in needs:
                    answers.setdefault(unit, []).append(each.answer)
        for unit, record in done.writes.items():
            await self._take(unit, record, done.revision,
                             Reply(functools.partial(_answer_all, answers.get(unit, []))))
        if done.writes:
            self._graph_revision = max(self._graph_revision, done.revision)
        if done.error is not None:
            for message, needs in done.batch:
                error = done.error
                applied = len(needs.intersection(done.writes))
                if applied and isinstance(error, StoreUnavailable):  # an apply's first parts
                    error = StoreUnavailable(
                        f"{error.why}; {applied} of its units were applied before", "unknown")
                message.reply.error(error)
        elif done.retry:
            self._deferred.extendleft(message for message, _ in reversed(done.batch))
        if self._deferred and not self._committing:
            await self._handle(self._deferred.popleft())

    async def _remote_change(self, change: RemoteChange) -> None:
        """The mirror's: what one store revision changed (another coordinator's commit, or the
        echo of ours), routed to the actors; a hold that vanished with its holder's lease
        fails its unit (every coordinator tries, the store's compare lets one win)."""
        events = self._events
        for unit, record in change.units:
            numbered = functools.partial(self._numbering.at, change.revision)
            for event in record_events(unit, self._seen.get(unit), record, numbered, events.now):
                events.emit(event)
            self._seen[unit] = record
            await self._take(unit, record, change.revision, None)
        if change.graph:
            self._graph_revision = max(self._graph_revision, change.revision)
        for unit in change.holds_gone:
            inbox = self._inboxes.get(unit)
            if inbox is not None:
                await inbox.send(Fail(HOLDER_GONE, Reply(_ignore), holder=REMOTE))

    async def _take(
        self, unit: str, record: UnitRecord, revision: int, reply: Reply[None] | None
    ) -> None:
        """The store has ``record`` for ``unit`` at ``revision``: new edges into the graph
        (the committer checked them against the graph at the compared revision), the actor
        told (with the states of the dependencies it newly requires), which subscribes it."""
        known = self._records.get(unit)
        if known is None or known[1] < revision:
            self._records[unit] = (record, revision)
        dependent = self._inboxes.get(unit) or self._spawn(unit)
        had = self._graph.dependencies(unit)
        new = {d: r for d, r in record.requirements.items() if had.get(d) is not r}
        if new:
            self._graph.add(unit, new)
        states = self._states
        await dependent.send(Adopt(
            record, revision, tuple((d, r, states.get(d, NOT_REGISTERED)) for d, r in new.items()),
            reply,
        ))
        for dependency in new:
            if dependency not in had:
                inbox = self._inboxes.get(dependency) or self._spawn(dependency)
                await inbox.send(Subscribe(unit, dependent))

    def lookup(self, unit: str) -> Inbox[UnitRequest] | None:
        """The inbox of ``unit``'s actor, None if the unit was never mentioned. (Entries are
        only ever added, so any thread may look; see ``LocalCoordinator``.)"""
        return self._inboxes.get(unit)

    async def _sweep(self) -> None:
        """Every :data:`IDLE_SECONDS`, ask each awake unit actor without a waiter that handled
        nothing since the last sweep to sleep. O(candidates) per sweep: actors holding waiters
        (thousands of parked ``ready`` calls) cost nothing here."""
        while True:
            await trio.sleep(IDLE_SECONDS)
            for inbox in list(self._candidates):
                if inbox.touched:
                    inbox.touched = False
                else:
                    inbox.check_idle()

    async def _expire_holds(self, units: list[str]) -> None:
        """Once the grace period is over, fail each hold restored from the journal that no
        holder has taken over (``Fail(holder=ORPHAN)`` does nothing to one that was, or whose
        unit changed since)."""
        await trio.sleep(self._hold_grace)
        for unit in units:
            await self._inboxes[unit].send(
                Fail(HOLDER_GONE, Reply(_ignore), holder=ORPHAN)
            )

    def _full(self, new_units: int, reply: Reply[Any]) -> bool:
        """Refuse (``Overloaded``, nothing changed) a request that would make more than
        ``max_units`` unit actors."""
        if new_units and len(self._inboxes) + new_units > self._max_units:
            reply.error(Overloaded(
                f"{len(self._inboxes)} units exist and {new_units} more would pass the limit "
                f"of {self._max_units}"
            ))
            return True
        return False

    def _spawn(self, unit: str) -> Inbox[UnitRequest]:
        """A new unit actor, asleep: the message about to be sent starts its task."""
        return self._spawn_actor(unit).inbox

    def _spawn_actor(self, unit: str) -> UnitActor:
        assert self._nursery is not None
        actor = UnitActor(
            unit, self._inbox, self._events, self._nursery, self._candidates,  # type: ignore[arg-type]
            self._settling, self._writer, self._store,
        )
        self._inboxes[unit] = actor.inbox
        self._graph.add_node(unit)
        return actor

    def _restore(self, units: dict[str, UnitRecord]) -> list[str]:
        """Before the first message: rebuild the units, edges and derived states a journal
        held. Synchronous; the actors stay asleep; nothing is journaled or published again.
        A cycle in the stored edges means a damaged journal (:class:`CycleError` propagates).
        Returns the held units (their holders get a grace period to come back)."""
        actors: dict[str, UnitActor] = {}

        def actor(name: str) -> UnitActor:
            if name not in actors:
                actors[name] = self._spawn_actor(name)
            return actors[name]

        for name in sorted(units):
            actor(name).restore(units[name])
            if self._store is not None:
                actors[name].stored, actors[name].revision = self._records[name]
                if name in self._remote_holds:
                    actors[name].state.holder = REMOTE
            for dependency in units[name].requirements:
                actor(dependency)
            if units[name].requirements:
                self._graph.add(name, dict(units[name].requirements))
        # dependencies before dependents (iterative: chains may be 100,000 long)
        linked: set[str] = set()
        for root in sorted(actors):
            stack = [(root, False)]
            while stack:
                name, deps_done = stack.pop()
                if name in linked:
                    continue
                requirements = units[name].requirements if name in units else {}
                if not deps_done:
                    stack.append((name, True))
                    stack.extend((dep, False) for dep in requirements if dep not in linked)
                    continue
                for dependency in requirements:
                    actors[name].restore_link(actors[dependency])
                self._states[name] = actors[name].state.publish_now()
                linked.add(name)
        return sorted(name for name, unit in actors.items() if unit.state.orphaned)

    def _close(self) -> None:
        """Answer what is still queued with CoordinatorClosed and refuse anything more; sleeping
        unit actors refuse too (awake ones close as their tasks are cancelled)."""
        self._inbox.drain_and_close(answer_closed)
        while self._deferred:  # want/apply waiting for a shared store's commit
            answer_closed(self._deferred.popleft())
        for inbox in self._inboxes.values():
            if inbox.asleep:
                inbox.close()


def _ignore(_result: object) -> None:
    """The answer of a request nobody waits for."""


def _answer_all(
    answers: list[Callable[[outcome.Outcome[None]], object]], result: outcome.Outcome[None]
) -> None:
    """One unit's edges taken: every want of the batch that needed them hears it."""
    for answer in answers:
        answer(result)


def _edge_units(message: Want | Apply) -> tuple[tuple[str, tuple[tuple[str, Status], ...]], ...]:
    """The units and requirements of a want or an apply."""
    if isinstance(message, Want):
        return ((message.unit, message.requirements),)
    return message.units


class _AllAnswered:
    """Answers ``reply`` once ``count`` answers came in: ok if all were, else the first error."""

    __slots__ = ("_left", "_reply", "_error")

    def __init__(self, count: int, reply: Reply[None]) -> None:
        self._left, self._reply = count, reply
        self._error: BaseException | None = None
        if not count:
            reply.ok(None)

    def answer(self, result: outcome.Outcome[None]) -> None:
        if isinstance(result, outcome.Error) and self._error is None:
            self._error = result.error
        self._left -= 1
        if not self._left:
            if self._error is None:
                self._reply.ok(None)
            else:
                self._reply.error(self._error)

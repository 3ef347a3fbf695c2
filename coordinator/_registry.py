"""RegistryActor: routes requests to unit actors and guards the dependency graph."""

from __future__ import annotations

from typing import Final

import trio

from ._errors import CycleError
from ._events import EventHub
from ._graph import DependencyGraph
from ._inbox import UNIT_INBOX_SIZE, Inbox
from ._messages import (
    AddRequirements,
    Ping,
    RegistryMessage,
    RegistrySnapshot,
    Snapshot,
    Subscribe,
    ToUnit,
    Want,
    answer_closed,
)
from ._unit import UnitActor, answer_absent

__all__ = ["REGISTRY_INBOX_SIZE", "RegistryActor"]

#: Requests buffered for the registry before callers wait.
REGISTRY_INBOX_SIZE: Final = 1024


class RegistryActor:
    """Owns the name → actor routing table and the dependency graph.

    * Creates a :class:`~._unit.UnitActor` (in its own nursery) the first time a request needs
      one; requests that need no actor (``info`` of a unit nobody mentioned) are answered here.
    * ``want``: runs the cycle check on the graph **before** linking, so a refused edge changes
      nothing; then tells the dependent its new requirements and each dependency to push its state
      to the dependent.
    * It awaits only unit inboxes, and units never await the registry, so no cycle of waits exists.
    """

    __slots__ = ("_receive", "_events", "_graph", "_inboxes", "_nursery")

    def __init__(self, receive: trio.MemoryReceiveChannel[RegistryMessage], events: EventHub) -> None:
        self._receive = receive
        self._events = events
        self._graph = DependencyGraph()
        self._inboxes: dict[str, Inbox] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled or until every sender is closed; unit actors stop with it."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                async for message in self._receive:
                    try:
                        await self._handle(message)
                    except BaseException:
                        answer_closed(message)  # cancelled while handing it to a unit
                        raise
            finally:
                self._close()
                nursery.cancel_scope.cancel()

    async def _handle(self, message: RegistryMessage) -> None:
        match message:
            case ToUnit(unit, request):
                inbox = self._inboxes.get(unit)
                if inbox is None:
                    if answer_absent(unit, request):
                        return
                    inbox = self._spawn(unit)
                await inbox.send(request)
            case Want(unit, requirements, reply):
                try:
                    self._graph.add(unit, dict(requirements))
                except CycleError as exc:
                    reply.error(exc)
                    return
                dependent = self._inboxes.get(unit) or self._spawn(unit)
                await dependent.send(AddRequirements(requirements, reply))
                for dependency, _ in requirements:
                    inbox = self._inboxes.get(dependency) or self._spawn(dependency)
                    await inbox.send(Subscribe(unit, dependent))
            case Snapshot(edges, reply):
                reply.ok(
                    RegistrySnapshot(
                        inboxes=dict(self._inboxes),
                        edges=self._graph.edges() if edges else [],
                    )
                )
            case Ping(reply):
                reply.ok(None)

    def _spawn(self, unit: str) -> Inbox:
        assert self._nursery is not None
        inbox = Inbox(UNIT_INBOX_SIZE)
        self._inboxes[unit] = inbox
        self._graph.add_node(unit)
        self._nursery.start_soon(UnitActor(unit, inbox, self._events).run, name=f"unit:{unit}")
        return inbox

    def _close(self) -> None:
        """Answer what is still queued with CoordinatorClosed and refuse anything more."""
        while True:
            try:
                answer_closed(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        self._receive.close()

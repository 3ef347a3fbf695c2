"""A watch of an etcd key range that survives its endpoint: :class:`Watch` and its stream.

:meth:`EtcdClient.watch <coordinator.store._etcd.EtcdClient.watch>` opens it; this module keeps
a stream open on some endpoint, resumes it elsewhere from the last delivered revision + 1 when
it breaks, and finds a stream gone silent with a heartbeat read on its member (the module
docstring of ``_etcd.py`` says why that strategy).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import trio

from ._etcd_errors import (
    Compacted,
    EtcdError,
    NoQuorum,
    ServerError,
    Unavailable,
    error_from_reply,
)
from ._etcd_wire import JSON_HEADERS, WatchBatch, dumps, int64, loads, parse_event, why

if TYPE_CHECKING:
    from ._etcd import EtcdClient

__all__ = ["Watch", "WatchStatistics", "WatchStream"]

_GO_ON = object()  # a watch message that is neither a batch nor an end (the stream's creation)


class _Streak:
    """A run of failed attempts to keep a stream: how many, since when."""

    def __init__(self) -> None:
        self.attempts = 0
        self.since = 0.0

    def failed(self) -> float:
        """Count one more; the seconds since the run's first."""
        if self.attempts == 0:
            self.since = trio.current_time()
        self.attempts += 1
        return trio.current_time() - self.since

    def reset(self) -> None:
        self.attempts = 0


@dataclass(frozen=True, slots=True)
class WatchStatistics:
    endpoint: str | None  #: the endpoint the stream is on (None before the first one)
    next_revision: int  #: where the stream resumes from: the last delivered revision + 1
    resumes: int  #: streams opened again after a break
    buffered: int  #: batches waiting for the reader


class Watch:
    """The batches of one watch, in revision order: ``async for batch in watch``.

    Raises :class:`Compacted` (re-list, watch again) or :class:`Unavailable` (no endpoint for
    ``patience`` seconds), then ends. Made by :meth:`EtcdClient.watch`, which owns its stream.
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[WatchBatch | EtcdError], start: int) -> None:
        self._receive = receive
        self._endpoint: str | None = None
        self._next_revision = start
        self._resumes = 0

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchBatch:
        try:
            item = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        if isinstance(item, EtcdError):
            raise item
        return item

    @property
    def endpoint(self) -> str | None:
        return self._endpoint

    def statistics(self) -> WatchStatistics:
        return WatchStatistics(
            endpoint=self._endpoint,
            next_revision=self._next_revision,
            resumes=self._resumes,
            buffered=self._receive.statistics().current_buffer_used,
        )


class WatchStream:
    """The task behind one :class:`Watch`: its stream, heartbeat and resumptions."""

    def __init__(
        self,
        etcd: EtcdClient,
        watch: Watch,
        send: trio.MemorySendChannel[WatchBatch | EtcdError],
        request: dict[str, Any],
        *,
        heartbeat: float,
        patience: float,
    ) -> None:
        self._etcd = etcd
        self._watch = watch
        self._send = send
        self._request = request
        self._heartbeat = heartbeat
        self._patience = patience

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep a stream open somewhere, from ``watch``'s next revision; deliver what it reads."""
        watch, send, request = self._watch, self._send, self._request
        heartbeat, patience = self._heartbeat, self._patience
        started = False
        failures: deque[str] = deque(maxlen=len(self._etcd._endpoints))
        # the current run of failed attempts; a stream that delivers or passes a heartbeat
        # ends it (a stream merely created on a member without quorum does not: it would be
        # re-created forever)
        streak = _Streak()

        def created(endpoint: str) -> None:
            nonlocal started
            if watch._endpoint is not None:
                watch._resumes += 1
            watch._endpoint = endpoint
            if not started:
                started = True
                task_status.started()

        async with send:
            index = self._etcd._preferred
            while True:
                endpoint = self._etcd._endpoints[index]
                outcome = await self._watch_once(
                    endpoint, watch, send, request, heartbeat, created, streak.reset
                )
                if outcome is None:
                    return  # the reader went away
                if isinstance(outcome, str):
                    failures.append(f"{endpoint}: {outcome}")
                    self._etcd._failed(endpoint)
                    if streak.failed() < patience:
                        index = (index + 1) % len(self._etcd._endpoints)
                        if streak.attempts % len(self._etcd._endpoints) == 0:  # a round failed
                            await trio.sleep(min(0.05 * streak.attempts, 1.0))
                        continue
                    outcome = Unavailable(self._etcd._endpoints, "; ".join(failures))
                if not started:
                    started = True
                    task_status.started()
                try:
                    await send.send(outcome)
                except trio.BrokenResourceError:
                    pass
                return

    async def _watch_once(
        self,
        endpoint: str,
        watch: Watch,
        send: trio.MemorySendChannel[WatchBatch | EtcdError],
        request: dict[str, Any],
        heartbeat: float,
        created: Callable[[str], None],
        alive: Callable[[], None],
    ) -> str | EtcdError | None:
        """One stream on ``endpoint``: why it broke (resume elsewhere), a final error, or None
        (the reader went away). ``created`` is called when etcd confirms the stream, ``alive``
        when it delivers or passes a heartbeat."""
        stale: list[str] = []
        outcome: str | EtcdError | None = None
        async with trio.open_nursery() as nursery:

            async def beat() -> None:
                probe = {"key": request["key"], "count_only": True}
                while True:
                    await trio.sleep(heartbeat)
                    try:
                        await self._etcd._post("kv/range", probe, retry=False, endpoint=endpoint)
                    except EtcdError as exc:
                        stale.append(f"heartbeat read failed: {exc}")
                        nursery.cancel_scope.cancel()
                        return
                    alive()

            nursery.start_soon(beat)
            body = {"create_request": {**request, "start_revision": str(watch._next_revision)}}
            try:
                outcome = await self._read_stream(endpoint, body, watch, send, created, alive)
            except (httpx.TransportError, ValueError) as exc:
                outcome = f"stream broke: {why(exc)}"
            nursery.cancel_scope.cancel()
        return stale[0] if stale else outcome

    async def _read_stream(
        self,
        endpoint: str,
        body: dict[str, Any],
        watch: Watch,
        send: trio.MemorySendChannel[WatchBatch | EtcdError],
        created: Callable[[str], None],
        alive: Callable[[], None],
    ) -> str | EtcdError | None:
        # httpx reads a stream through a chain of async generators, which must not be left
        # suspended (Trio warns when the garbage collector finds them): the loop is never left
        # early, and nothing in it is cancelled but httpx's own reads. To stop, it cancels
        # `finished` and reads on until the cancellation lands inside httpx and closes the
        # chain; the send to the reader is shielded (closing the reader's end breaks it).
        timeout = httpx.Timeout(self._etcd._timeout, read=None)  # a quiet stream is fine: see beat()
        outcome: str | EtcdError | None = "the stream ended"
        with trio.CancelScope() as finished:
            async with self._etcd._client().stream(
                "POST", f"{endpoint}/v3/watch", content=dumps(body), headers=JSON_HEADERS, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    error = error_from_reply(endpoint, response.status_code, loads(response.content))
                    return str(error) if isinstance(error, NoQuorum) else error
                async for line in response.aiter_lines():
                    if finished.cancel_called or not line.strip():
                        continue
                    try:
                        ending = self._read_message(endpoint, json.loads(line), created)
                    except (ValueError, KeyError, TypeError, AttributeError) as exc:
                        ending = f"unreadable answer: {why(exc)}"
                    if isinstance(ending, WatchBatch):
                        try:
                            with trio.CancelScope(shield=True):
                                await send.send(ending)
                        except trio.BrokenResourceError:
                            outcome = None
                            finished.cancel()
                            continue
                        events = ending.events
                        last = events[-1].kv.mod_revision if events else ending.revision
                        # a progress notification (no events) vouches for all up to its revision
                        watch._next_revision = max(watch._next_revision, last + 1)
                        alive()
                    elif ending is not _GO_ON:
                        outcome = ending
                        finished.cancel()
        return outcome

    @staticmethod
    def _read_message(
        endpoint: str, message: dict[str, Any], created: Callable[[str], None]
    ) -> WatchBatch | str | EtcdError | object:
        """What one line of a watch stream means: a batch to deliver, ``_GO_ON``, or an end."""
        if "error" in message:
            error = error_from_reply(endpoint, 200, message)
            return str(error) if isinstance(error, NoQuorum) else error
        result = message.get("result", {})
        if result.get("canceled"):
            compact = int64(result.get("compact_revision"))
            if compact:
                return Compacted(compact)
            reason = result.get("cancel_reason") or "watch cancelled by the server"
            return ServerError(endpoint, 200, 0, reason)
        if result.get("created"):
            created(endpoint)
            return _GO_ON
        events = tuple(parse_event(event) for event in result.get("events", ()))
        revision = int64(result.get("header", {}).get("revision"))
        return WatchBatch(events=events, revision=revision)

    # -- transport

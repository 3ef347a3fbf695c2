"""A small Trio-native client for etcd v3, through etcd's JSON gateway (``/v3/...``) with httpx.

Why this way: httpx runs on Trio natively (through anyio), so the client lives in the
coordinator's own nursery; etcd's gRPC client libraries are asyncio (``aetcd``) and bring ~19 MB
of grpc. The gateway was measured before the design at 1-2 ms p50 per request on loopback,
about twice gRPC's latency, which is well inside the goals (../shared/DISTRIBUTED.md).

httpx is the ``etcd`` extra (``pip install 'unitsync[etcd]'``), not a core dependency: the
default store is the local journal, one machine needs none of httpx, httpcore, h11 and anyio,
and this module is imported only when an etcd store is asked for. The ``test`` extra includes
``etcd``, so the suite and CI always have it.

Endpoints and retries. Each request goes to the preferred endpoint and moves to the next
on a failure; the preferred one moves with it. Timeouts are short (0.5 s by default): a request
that a follower forwarded to a dead leader hangs until the server gives up after 7 s, and
trying the next member is quicker. What is retried is what is safe:

- a request that was never sent (connection refused, connect timeout) goes to the next endpoint;
- reads (``range``), lease keepalives, grants and revokes also retry when the answer was lost
  or the member had no quorum (a repeated grant leaks a lease that expires after its TTL);
- writes (``put``, ``delete``, ``txn``, ``compact``) do not, by default (``retry=False``): a lost
  answer raises :class:`OutcomeUnknown`. A caller resolves it by reading back: its txn compares
  revisions (compare-and-swap) and also writes a request id of its own, so after the
  failure one read says whether the txn was applied; blind repetition could apply it twice or
  overwrite a concurrent writer. ``retry=True`` is for writes that are idempotent for the caller.

Watches. ``async with client.watch(...) as watch: async for batch in watch`` reads one
streaming POST. When the stream breaks, it is opened again on the next endpoint from the
last delivered revision + 1, so nothing is missed or repeated; a compacted start revision raises
:class:`Compacted` (re-list, then watch again). The gateway sends no pings and etcd 3.4's
progress notifications come every 10 minutes unless the server is told otherwise
(``--experimental-watch-progress-notify-interval``), so a half-open stream, or a member cut off
from its cluster that keeps the stream open but silent, is found by a heartbeat: every
``heartbeat`` seconds a linearizable count-only read of the watched key on the *same* endpoint
(about 1 ms); if it fails (timeout, refused, no quorum) the stream is abandoned and resumed
elsewhere. The stream's own socket has TCP keepalive (dead after ~5 s of silence from the
peer's kernel). Progress notifications, when the server sends them, are delivered as empty
batches (everything up to their revision has been seen).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

import httpx
import trio

from .._nursery import open_service_nursery
from ._etcd_errors import (
    EtcdError,
    LeaseNotFound,
    NoQuorum,
    OutcomeUnknown,
    RequestTooLarge,
    Unavailable,
    error_from_reply,
)
from ._etcd_watch import Watch, WatchStatistics, WatchStream
from ._etcd_wire import (
    JSON_HEADERS,
    Compare,
    DeleteResult,
    LeaseGrant,
    Op,
    PutResult,
    RangeResult,
    TxnResult,
    WatchBatch,
    b64,
    dumps,
    int64,
    loads,
    op_size,
    parse_delete,
    parse_put,
    parse_range,
    parse_txn,
    why,
)

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_PATIENCE",
    "DEFAULT_TIMEOUT",
    "MAX_REQUEST_BYTES",
    "MAX_TXN_OPS",
    "WATCH_BUFFER",
    "EtcdClient",
    "EtcdStatistics",
    "Watch",
    "WatchStatistics",
]

DEFAULT_TIMEOUT = 0.5  #: seconds for one request to one endpoint (connect, send, each read)
DEFAULT_HEARTBEAT = 1.0  #: seconds between a watch's liveness reads
DEFAULT_PATIENCE = 10.0  #: seconds a watch keeps trying endpoints before raising Unavailable
WATCH_BUFFER = 16  #: batches a watch holds for a slow reader; then the stream waits (TCP pushes back)
MAX_TXN_OPS = 128  #: etcd's default --max-txn-ops (per branch)
MAX_REQUEST_BYTES = 1536 * 1024  #: etcd's default --max-request-bytes
MAX_CONNECTIONS = 100  #: per client; every open watch holds one
#: TCP keepalive on every connection: idle 2 s, then 3 probes 1 s apart
_KEEPALIVE = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)] + [
    (socket.IPPROTO_TCP, getattr(socket, name), value)
    for name, value in (("TCP_KEEPIDLE", 2), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
]


@dataclass(frozen=True, slots=True)
class EtcdStatistics:
    endpoints: tuple[str, ...]
    preferred: str  #: where the next request goes first
    failovers: int  #: times the preferred endpoint moved on after a failure
    watches: int  #: open watches

class EtcdClient:
    """A client of one etcd cluster: ``async with EtcdClient(["http://h1:2379", ...]) as etcd``.

    Owns one ``httpx.AsyncClient`` (a pool of at most ``MAX_CONNECTIONS``), closed on exit.
    ``timeout`` bounds each step of one request to one endpoint. ``max_txn_ops`` and
    ``max_request_bytes`` are the server's limits, checked before sending.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_txn_ops: int = MAX_TXN_OPS,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        if isinstance(endpoints, str) or not endpoints:
            raise ValueError(f"endpoints must be a non-empty list of URLs, not {endpoints!r}")
        self._endpoints = tuple(_normalize(endpoint) for endpoint in endpoints)
        self._timeout = timeout
        self._max_txn_ops = max_txn_ops
        self._max_request_bytes = max_request_bytes
        self._preferred = 0
        self._failovers = 0
        self._watches = 0
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        # trust_env=False: an HTTP(S)_PROXY meant for the internet must not carry etcd traffic
        transport = httpx.AsyncHTTPTransport(
            retries=0, socket_options=_KEEPALIVE,
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
        )
        self._http = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(self._timeout), trust_env=False
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def statistics(self) -> EtcdStatistics:
        return EtcdStatistics(
            endpoints=self._endpoints,
            preferred=self._endpoints[self._preferred],
            failovers=self._failovers,
            watches=self._watches,
        )

    # -- key-value

    async def range(
        self,
        key: bytes,
        range_end: bytes | None = None,
        *,
        revision: int = 0,
        serializable: bool = False,
        limit: int = 0,
        count_only: bool = False,
    ) -> RangeResult:
        """The keys in ``[key, range_end)`` (``key`` alone without ``range_end``) at ``revision``
        (0: now). Linearizable unless ``serializable`` (then the member's own, maybe stale,
        copy: it answers without a quorum). Retried on the next endpoint."""
        body: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if revision:
            body["revision"] = str(revision)
        if serializable:
            body["serializable"] = True
        if limit:
            body["limit"] = str(limit)
        if count_only:
            body["count_only"] = True
        return parse_range(await self._post("kv/range", body, retry=True))

    async def put(
        self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False, retry: bool = False
    ) -> PutResult:
        """Set ``key``; attached to ``lease`` if given (the key goes when the lease does)."""
        op = Op.put(key, value, lease=lease, prev_kv=prev_kv)
        self._check_size([op])
        return parse_put(await self._post("kv/put", op.to_json(), retry=retry))

    async def delete(
        self, key: bytes, range_end: bytes | None = None, *, prev_kv: bool = False, retry: bool = False
    ) -> DeleteResult:
        op = Op.delete(key, range_end, prev_kv=prev_kv)
        return parse_delete(await self._post("kv/deleterange", op.to_json(), retry=retry))

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
        *,
        retry: bool = False,
    ) -> TxnResult:
        """Atomically: if every compare holds, run ``success``, else ``failure``. Raises
        :class:`RequestTooLarge` before sending if a branch has more than ``max_txn_ops``
        operations or the request would exceed ``max_request_bytes``."""
        for name, branch in (("success", success), ("failure", failure)):
            if len(branch) > self._max_txn_ops:
                raise RequestTooLarge(
                    f"the txn's {name} branch has {len(branch)} operations; etcd takes at most "
                    f"{self._max_txn_ops} per branch (--max-txn-ops): split it"
                )
        self._check_size([*compares, *success, *failure])
        body = {
            "compare": [compare.to_json() for compare in compares],
            "success": [op.to_request() for op in success],
            "failure": [op.to_request() for op in failure],
        }
        return parse_txn(await self._post("kv/txn", body, retry=retry))

    async def compact(self, revision: int) -> None:
        """Forget the history before ``revision`` (a watch or range before it: :class:`Compacted`)."""
        await self._post("kv/compaction", {"revision": str(revision)}, retry=False)

    # -- leases

    async def lease_grant(self, ttl: int) -> LeaseGrant:
        """A new lease of ``ttl`` seconds (etcd grants at least 2)."""
        answer = await self._post("lease/grant", {"TTL": str(ttl)}, retry=True)
        return LeaseGrant(id=int64(answer.get("ID")), ttl=int64(answer.get("TTL")))

    async def lease_keepalive(self, lease_id: int) -> int:
        """Refresh the lease once; its TTL again. Raises :class:`LeaseNotFound` if it is gone."""
        answer = await self._post("lease/keepalive", {"ID": str(lease_id)}, retry=True)
        ttl = int64(answer.get("result", {}).get("TTL"))
        if ttl <= 0:
            raise LeaseNotFound(self._endpoints[self._preferred], 200, 5, f"lease {lease_id:x} expired")
        return ttl

    async def lease_revoke(self, lease_id: int) -> bool:
        """End the lease now, deleting its keys; False if it was already gone."""
        try:
            await self._post("lease/revoke", {"ID": str(lease_id)}, retry=True)
        except LeaseNotFound:
            return False
        return True

    # -- watch

    @asynccontextmanager
    async def watch(
        self,
        key: bytes,
        range_end: bytes | None = None,
        *,
        start_revision: int,
        prev_kv: bool = False,
        heartbeat: float = DEFAULT_HEARTBEAT,
        patience: float = DEFAULT_PATIENCE,
        buffer: int = WATCH_BUFFER,
    ) -> AsyncIterator[Watch]:
        """Watch ``[key, range_end)`` from ``start_revision`` (a range's revision + 1 sees every
        change after it). Returns once the first stream is established (or has failed: the
        error then comes from the first ``anext``). The stream and its heartbeat run in a
        nursery of their own, closed when the block exits."""
        request: dict[str, Any] = {"key": b64(key), "progress_notify": True}
        if range_end is not None:
            request["range_end"] = b64(range_end)
        if prev_kv:
            request["prev_kv"] = True
        send, receive = trio.open_memory_channel[WatchBatch | EtcdError](buffer)
        watch = Watch(receive, start_revision)
        self._watches += 1
        try:
            async with open_service_nursery() as nursery:
                stream = WatchStream(
                    self, watch, send, request, heartbeat=heartbeat, patience=patience
                )
                await nursery.start(stream.run)
                try:
                    yield watch
                finally:
                    receive.close()  # first: a stream blocked sending to the reader stops
        finally:
            self._watches -= 1
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("use the EtcdClient as `async with EtcdClient(...) as etcd`")
        return self._http

    async def _post(
        self, path: str, body: dict[str, Any], *, retry: bool, endpoint: str | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to ``/v3/path``: on ``endpoint`` only, or on each endpoint in turn from
        the preferred one, under the retry rules of the module docstring."""
        http = self._client()
        content = dumps(body)
        if endpoint is None:
            order = self._endpoints[self._preferred:] + self._endpoints[: self._preferred]
        else:
            order = (endpoint,)
        failures: list[str] = []
        for target in order:
            try:
                response = await http.post(f"{target}/v3/{path}", content=content, headers=JSON_HEADERS)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                failures.append(f"{target}: {why(exc)}")  # not sent: safe anywhere
            except httpx.TransportError as exc:
                if not retry:
                    self._failed(target)
                    raise OutcomeUnknown(target, why(exc)) from None
                failures.append(f"{target}: {why(exc)}")
            else:
                answer = loads(response.content)
                if response.status_code == 200 and isinstance(answer, dict) and "error" not in answer:
                    return answer
                error = error_from_reply(target, response.status_code, answer)
                if not (retry and isinstance(error, NoQuorum)):
                    raise error
                failures.append(f"{target}: {error.message}")
            self._failed(target)
        raise Unavailable(order, "; ".join(failures))

    def _check_size(self, items: Sequence[Op | Compare]) -> None:
        size = sum(op_size(item) for item in items)
        if size > self._max_request_bytes:
            raise RequestTooLarge(
                f"the request is about {size} bytes; etcd takes at most {self._max_request_bytes} "
                f"(--max-request-bytes): store less per key or split the write"
            )

    def _failed(self, endpoint: str) -> None:
        """``endpoint`` failed: if it was the preferred one, prefer the next."""
        if self._endpoints[self._preferred] == endpoint and len(self._endpoints) > 1:
            self._preferred = (self._preferred + 1) % len(self._endpoints)
            self._failovers += 1


def _normalize(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if "://" in endpoint else f"http://{endpoint}"

"""The errors of the etcd client: one root, subclasses that carry data.

etcd's JSON gateway answers an error as ``{"error": ..., "message": ..., "code": <gRPC code>}``
(a stream wraps it as ``{"error": {"grpc_code": ..., "message": ...}}``); :func:`error_from_reply`
is the one place that reads that text and picks the class, so callers match on types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "Compacted",
    "EtcdError",
    "LeaseNotFound",
    "NoQuorum",
    "OutcomeUnknown",
    "RequestTooLarge",
    "ServerError",
    "StoreFull",
    "Unavailable",
    "error_from_reply",
]

#: gRPC status codes etcd uses for "this member cannot serve the request now"
_GRPC_UNAVAILABLE, _GRPC_DEADLINE_EXCEEDED = 14, 4
#: how etcd words a request over its limits (the last from gRPC itself, past the size + 512 KiB)
_TOO_LARGE = (
    "too many operations in txn request",
    "request is too large",
    "received message larger than max",
)


class EtcdError(Exception):
    """Root of every error the etcd client raises on purpose."""


class Unavailable(EtcdError):
    """No endpoint answered in time (refused, timed out, or, for a read, answered ``NoQuorum``).

    A write raises this only when it was not sent to anyone (connections refused), so it was
    not applied; a write whose answer was lost raises :class:`OutcomeUnknown` instead.
    """

    def __init__(self, endpoints: Sequence[str], why: str) -> None:
        super().__init__(f"no etcd endpoint answered ({', '.join(endpoints)}): {why}")
        self.endpoints = tuple(endpoints)
        self.why = why


class OutcomeUnknown(EtcdError):
    """A write was sent but its answer was lost (timeout, connection cut): it may or may not
    have been applied. Not retried blindly: the caller reads back what it wrote (a request id
    stored by the same compare-and-swap txn) to learn which."""

    def __init__(self, endpoint: str, why: str) -> None:
        super().__init__(f"the answer of {endpoint} was lost, the write may have been applied: {why}")
        self.endpoint = endpoint
        self.why = why


class RequestTooLarge(EtcdError):
    """A request over etcd's limits (``--max-txn-ops``, 128 operations per txn branch by default;
    ``--max-request-bytes``, 1.5 MiB): refused before sending, or by the server."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Compacted(EtcdError):
    """The revision asked for has been compacted away: re-list (a range at the current revision)
    and watch again from there. ``compact_revision`` is the oldest revision still kept (a watch
    learns it; a range's error does not say it, so it is ``None`` there)."""

    def __init__(self, compact_revision: int | None) -> None:
        super().__init__(f"revision compacted (oldest kept: {compact_revision})")
        self.compact_revision = compact_revision


class ServerError(EtcdError):
    """etcd answered with an error: ``status`` (HTTP), ``code`` (gRPC) and etcd's ``message``."""

    def __init__(self, endpoint: str, status: int, code: int, message: str) -> None:
        super().__init__(f"{endpoint}: {message} (HTTP {status}, gRPC code {code})")
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.message = message


class NoQuorum(ServerError):
    """The member answered but could not get its cluster's agreement in time (no leader,
    leader changed, request timed out). Reads move to another endpoint; for a write this is
    like :class:`OutcomeUnknown`: a proposal that timed out may still be committed."""


class LeaseNotFound(ServerError):
    """The lease does not exist (expired, revoked, or never granted)."""


class StoreFull(ServerError):
    """etcd's space quota is exhausted (``mvcc: database space exceeded``): it refuses writes
    until old revisions are compacted (``--auto-compaction-*``), the database defragmented
    (``etcdctl defrag``) and the alarm disarmed (``etcdctl alarm disarm``)."""


def error_from_reply(endpoint: str, status: int, body: Any) -> EtcdError:
    """The error for etcd's error answer ``body`` (parsed JSON, or anything else)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # a streamed error (watch, keepalive)
        code, message = error.get("grpc_code", 0), error.get("message", "")
    elif isinstance(body, dict):
        code, message = body.get("code", 0), body.get("message") or str(error or body)
    else:
        code, message = 0, repr(body)[:200]
    code = int(code) if isinstance(code, int | str) and str(code).isdigit() else 0
    if any(text in message for text in _TOO_LARGE):
        return RequestTooLarge(f"{endpoint} refused the request: {message}")
    if "required revision has been compacted" in message:
        return Compacted(None)
    if "requested lease not found" in message:
        return LeaseNotFound(endpoint, status, code, message)
    if "database space exceeded" in message:
        return StoreFull(endpoint, status, code, message)
    if code in (_GRPC_UNAVAILABLE, _GRPC_DEADLINE_EXCEEDED) or status in (503, 504):
        return NoQuorum(endpoint, status, code, message)
    return ServerError(endpoint, status, code, message)

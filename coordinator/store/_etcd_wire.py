"""What the etcd client sends and returns, and its JSON form on etcd's gateway.

Keys and values are ``bytes`` everywhere in the API; base64 exists only in this module's
encoders and decoders, and so do the gateway's ways (64-bit integers as strings, fields at
their default value left out: ``succeeded`` false, an event's ``type`` PUT, an empty value).
Results are frozen dataclasses; :class:`Compare` and :class:`Op` are built with their
class methods (``Compare.mod_revision(key, "==", rev)``, ``Op.put(key, value)``).
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "JSON_HEADERS",
    "Compare",
    "CompareOp",
    "DeleteResult",
    "Event",
    "EventType",
    "KeyValue",
    "LeaseGrant",
    "Op",
    "PutResult",
    "RangeResult",
    "TxnResult",
    "WatchBatch",
    "b64",
    "dumps",
    "int64",
    "loads",
    "op_size",
    "parse_delete",
    "parse_event",
    "parse_kv",
    "parse_put",
    "parse_range",
    "parse_response",
    "parse_txn",
    "prefix_end",
    "why",
]

CompareOp = Literal["==", "!=", ">", "<"]
_RESULTS: dict[str, str] = {"==": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}
#: a generous estimate of the protobuf bytes an operation or compare adds besides its keys
#: and values (tags, lengths, integers), for the request-size check before sending
_OVERHEAD = 32


JSON_HEADERS = {"content-type": "application/json"}


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def loads(content: bytes) -> Any:
    """A gateway answer: its JSON, or its text if it is not JSON (a proxy's error page)."""
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")


def why(exc: BaseException) -> str:
    """A transport failure, in a line."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def int64(value: Any) -> int:
    """A gateway int64 (a string, or absent when 0)."""
    return int(value) if value else 0


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range or watch cover every key starting with ``prefix``
    (``b"\\0"`` for an empty prefix: every key)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\0"
    return stripped[:-1] + bytes([stripped[-1] + 1])


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int  #: 1 at creation, +1 at each put; a deleted key's event has 0
    lease: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: tuple[KeyValue, ...]
    revision: int  #: the store's revision the range was read at
    count: int  #: keys in the range (more than ``len(kvs)`` with a limit)
    more: bool


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    deleted: int
    prev_kvs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool  #: every compare held: the success branch ran
    revision: int
    responses: tuple[RangeResult | PutResult | DeleteResult, ...]  #: one per op of the branch


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    id: int
    ttl: int  #: seconds, as granted (etcd's minimum is 2: a 1 s request gets 2)


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    kv: KeyValue  #: a DELETE's kv has the key and the deleting ``mod_revision`` only
    prev_kv: KeyValue | None  #: with ``watch(..., prev_kv=True)``


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events of one or more whole revisions, in revision order; no events means a progress
    notification: every event up to ``revision`` has been delivered."""

    events: tuple[Event, ...]
    revision: int  #: the store's revision when etcd sent the batch


@dataclass(frozen=True, slots=True, kw_only=True)
class Compare:
    """One condition of a txn; build with the class methods. ``range_end`` compares every key
    in ``[key, range_end)`` (all must hold)."""

    key: bytes
    target: Literal["MOD", "CREATE", "VERSION", "VALUE"]
    op: CompareOp
    operand: int | bytes
    range_end: bytes | None = None

    @classmethod
    def mod_revision(
        cls, key: bytes, op: CompareOp, revision: int, *, range_end: bytes | None = None
    ) -> Compare:
        """The revision of the key's last change (0: the key does not exist)."""
        return cls(key=key, target="MOD", op=op, operand=revision, range_end=range_end)

    @classmethod
    def create_revision(
        cls, key: bytes, op: CompareOp, revision: int, *, range_end: bytes | None = None
    ) -> Compare:
        """The revision the key was created at (``== 0``: the key does not exist)."""
        return cls(key=key, target="CREATE", op=op, operand=revision, range_end=range_end)

    @classmethod
    def version(
        cls, key: bytes, op: CompareOp, version: int, *, range_end: bytes | None = None
    ) -> Compare:
        return cls(key=key, target="VERSION", op=op, operand=version, range_end=range_end)

    @classmethod
    def value(
        cls, key: bytes, op: CompareOp, value: bytes, *, range_end: bytes | None = None
    ) -> Compare:
        return cls(key=key, target="VALUE", op=op, operand=value, range_end=range_end)

    def to_json(self) -> dict[str, Any]:
        field = {"MOD": "mod_revision", "CREATE": "create_revision", "VERSION": "version",
                 "VALUE": "value"}[self.target]
        operand = b64(self.operand) if isinstance(self.operand, bytes) else str(self.operand)
        body = {"key": b64(self.key), "target": self.target, "result": _RESULTS[self.op],
                field: operand}
        if self.range_end is not None:
            body["range_end"] = b64(self.range_end)
        return body

    def size(self) -> int:
        operand = len(self.operand) if isinstance(self.operand, bytes) else 0
        return len(self.key) + len(self.range_end or b"") + operand + _OVERHEAD


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One operation of a txn branch; build with :meth:`put`, :meth:`delete`, :meth:`range`."""

    kind: Literal["put", "delete", "range"]
    key: bytes
    value: bytes = b""
    range_end: bytes | None = None
    lease: int = 0
    prev_kv: bool = False
    limit: int = 0

    @classmethod
    def put(cls, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False) -> Op:
        return cls(kind="put", key=key, value=value, lease=lease, prev_kv=prev_kv)

    @classmethod
    def delete(cls, key: bytes, range_end: bytes | None = None, *, prev_kv: bool = False) -> Op:
        return cls(kind="delete", key=key, range_end=range_end, prev_kv=prev_kv)

    @classmethod
    def range(cls, key: bytes, range_end: bytes | None = None, *, limit: int = 0) -> Op:
        return cls(kind="range", key=key, range_end=range_end, limit=limit)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key)}
        if self.range_end is not None:
            body["range_end"] = b64(self.range_end)
        if self.kind == "put":
            body["value"] = b64(self.value)
            if self.lease:
                body["lease"] = str(self.lease)
        if self.prev_kv:
            body["prev_kv"] = True
        if self.limit:
            body["limit"] = str(self.limit)
        return body

    def to_request(self) -> dict[str, Any]:
        """The op as a txn's ``RequestOp``."""
        name = {"put": "request_put", "delete": "request_delete_range",
                "range": "request_range"}[self.kind]
        return {name: self.to_json()}


def op_size(item: Op | Compare) -> int:
    """The protobuf bytes ``item`` adds to a request, about (for the size check)."""
    if isinstance(item, Compare):
        return item.size()
    return len(item.key) + len(item.value) + len(item.range_end or b"") + _OVERHEAD


def parse_kv(kv: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=base64.b64decode(kv.get("key", "")),
        value=base64.b64decode(kv.get("value", "")),
        create_revision=int64(kv.get("create_revision")),
        mod_revision=int64(kv.get("mod_revision")),
        version=int64(kv.get("version")),
        lease=int64(kv.get("lease")),
    )


def _revision(body: dict[str, Any]) -> int:
    return int64(body.get("header", {}).get("revision"))


def parse_range(body: dict[str, Any]) -> RangeResult:
    return RangeResult(
        kvs=tuple(parse_kv(kv) for kv in body.get("kvs", ())),
        revision=_revision(body),
        count=int64(body.get("count")),
        more=bool(body.get("more", False)),
    )


def parse_put(body: dict[str, Any]) -> PutResult:
    prev = body.get("prev_kv")
    return PutResult(revision=_revision(body), prev_kv=parse_kv(prev) if prev else None)


def parse_delete(body: dict[str, Any]) -> DeleteResult:
    return DeleteResult(
        revision=_revision(body),
        deleted=int64(body.get("deleted")),
        prev_kvs=tuple(parse_kv(kv) for kv in body.get("prev_kvs", ())),
    )


def parse_response(op: dict[str, Any]) -> RangeResult | PutResult | DeleteResult:
    """One of a txn's ``responses`` (a ``ResponseOp``)."""
    if "response_range" in op:
        return parse_range(op["response_range"])
    if "response_put" in op:
        return parse_put(op["response_put"])
    return parse_delete(op.get("response_delete_range", {}))


def parse_txn(body: dict[str, Any]) -> TxnResult:
    return TxnResult(
        succeeded=bool(body.get("succeeded", False)),
        revision=_revision(body),
        responses=tuple(parse_response(op) for op in body.get("responses", ())),
    )


def parse_event(event: dict[str, Any]) -> Event:
    prev = event.get("prev_kv")
    return Event(
        type=EventType(event.get("type", "PUT")),
        kv=parse_kv(event.get("kv", {})),
        prev_kv=parse_kv(prev) if prev else None,
    )

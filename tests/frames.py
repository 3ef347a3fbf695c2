"""Hand-built Cap'n Proto RPC frames, and a raw exchange of them with a server.

Frames are Cap'n Proto's stream framing: ``(segment count - 1)`` as uint32 LE, each segment's
size in words as uint32 LE, padding to 8 bytes, then the segments. The messages are ``rpc.capnp``
``Message`` structs, built here with pycapnp at import (only their bytes are kept):
:data:`FRAMES` holds real client conversations (the fuzzer of test_fuzz.py mutates them, the
stall tests of test_stall.py cut them short), :func:`exchange` sends bytes on a fresh
connection and reports how the server reacted, :func:`messages` reads what it sent back.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import capnp
import trio

from coordinator.rpc._schema import schema

from .waits import WAIT

S = schema()

#: One zero word: the smallest segment.
ONE_WORD = b"\0" * 8


def frame(segments: Sequence[bytes], *, sizes: Sequence[int] | None = None) -> bytes:
    """A stream frame of ``segments`` (each a multiple of 8 bytes); ``sizes`` (in words)
    overrides what the segment table claims."""
    claimed = list(sizes) if sizes is not None else [len(s) // 8 for s in segments]
    header = struct.pack(f"<I{len(claimed)}I", len(claimed) - 1, *claimed)
    header += b"\0" * (-len(header) % 8)
    return header + b"".join(segments)


def split_frames(data: bytes) -> list[bytes]:
    """Whole frames in ``data`` (a trailing partial frame is dropped)."""
    frames, at = [], 0
    while at + 8 <= len(data):
        n = struct.unpack_from("<I", data, at)[0] + 1
        header = 4 + 4 * n + (-(4 + 4 * n) % 8)
        if n > 512 or at + header > len(data):
            break
        end = at + header + 8 * sum(struct.unpack_from(f"<{n}I", data, at + 4))
        if end > len(data):
            break
        frames.append(data[at:end])
        at = end
    return frames


_KINDS = ["unimplemented", "abort", "call", "return", "finish", "resolve", "release",
          "obsoleteSave", "bootstrap", "obsoleteDelete", "provide", "accept", "join",
          "disembargo"]


def _struct_at(segment: bytes, at: int) -> tuple[int, int] | None:
    """The (data word, data size in words) of the struct the pointer in word ``at`` points to;
    None if it is no in-segment struct pointer."""
    if not 0 <= at < len(segment) // 8:
        return None
    word = struct.unpack_from("<Q", segment, 8 * at)[0]
    if word & 3 != 0 or word == 0:
        return None
    offset = (word & 0xFFFFFFFF) >> 2
    offset -= (1 << 30) if offset & (1 << 29) else 0
    return at + 1 + offset, (word >> 32) & 0xFFFF


def messages(data: bytes) -> list[tuple[str, int | None]]:
    """The RPC messages of the whole single-segment frames in ``data`` (what the server sends):
    each one's kind, and for a Return its answer id."""
    found: list[tuple[str, int | None]] = []
    for f in split_frames(data):
        n = struct.unpack_from("<I", f, 0)[0] + 1
        segment = f[4 + 4 * n + (-(4 + 4 * n) % 8):]
        root = _struct_at(segment, 0)
        if root is None or 8 * root[0] + 2 > len(segment):
            found.append(("?", None))
            continue
        which = struct.unpack_from("<H", segment, 8 * root[0])[0]
        kind = _KINDS[which] if which < len(_KINDS) else f"?{which}"
        answer = None
        if kind == "return":
            returned = _struct_at(segment, root[0] + root[1])  # the union's pointer: the first
            if returned is not None and 8 * returned[0] + 4 <= len(segment):
                answer = struct.unpack_from("<I", segment, 8 * returned[0])[0]
        found.append((kind, answer))
    return found


def describe(replies: bytes) -> str:
    """What the server sent back, for the report: the kinds of its messages and any text in
    them (an Abort's reason, an exception's description)."""
    kinds = "+".join(kind for kind, _ in messages(replies)) or "nothing"
    texts = [t.decode() for t in re.findall(rb"[ -~]{12,}", replies)]
    return kinds + (f" {texts[:2]!r}" if texts else "")


def whole_frames(data: bytes) -> bool:
    """``data`` is a sequence of whole frames of at most 512 segments: what comes after it is
    read as a frame of its own."""
    return sum(map(len, split_frames(data))) == len(data)


def _load_rpc_schema() -> Any:
    directory = os.path.dirname(capnp.__file__)
    return capnp.load(os.path.join(directory, "rpc.capnp"), imports=[os.path.dirname(directory)])


def _build_frames() -> dict[str, bytes]:
    """Real client requests, as bytes: conversations that begin with a Bootstrap (question 0)
    and pipeline calls on promised answers, so each one works on a fresh connection without
    waiting for a reply. The fuzzer mutates them. Fuzzed units are named ``fz*``: nothing a
    mutation can plausibly reach touches the seeded ``seed-*`` units."""
    rpc = _load_rpc_schema()
    coordinator_id, unit_id = S.Coordinator.schema.node.id, S.Unit.schema.node.id

    def message(fill: Callable[[Any], None]) -> bytes:
        built = rpc.Message.new_message()
        fill(built)
        return bytes(built.to_bytes())

    def bootstrap(question: int) -> bytes:
        return message(lambda built: setattr(built.init("bootstrap"), "questionId", question))

    def call(
        question: int, target: int, interface: Any, method: str,
        fill: Callable[[Any], None] | None = None, *, pointer: int | None = None,
    ) -> bytes:
        """Call ``method`` on the promised answer ``target`` (or its result's pointer field)."""
        iface = {"Coordinator": (S.Coordinator, coordinator_id), "Unit": (S.Unit, unit_id)}
        iface_schema, iface_id = iface[interface]
        param_type = iface_schema.schema.methods[method].param_type
        params = capnp._MallocMessageBuilder().init_root(param_type)
        if fill is not None:
            fill(params)

        def build(built: Any) -> None:
            c = built.init("call")
            c.questionId = question
            promised = c.target.init("promisedAnswer")
            promised.questionId = target
            if pointer is not None:
                promised.init("transform", 1)[0].getPointerField = pointer
            c.interfaceId = iface_id
            c.methodId = _ordinal(iface_schema, method)
            c.params.content = params.as_reader()

        return message(build)

    def finish(question: int) -> bytes:
        def build(built: Any) -> None:
            built.init("finish").questionId = question
        return message(build)

    def name(value: str) -> Callable[[Any], None]:
        return lambda p: setattr(p, "name", value)

    def want(deps: list[str], requires: str) -> Callable[[Any], None]:
        def fill(p: Any) -> None:
            slots = p.init("dependencies", len(deps))
            for i, dep in enumerate(deps):
                slots[i] = dep
            p.requires = requires
        return fill

    def watch(question: int) -> bytes:
        """``watch(watcher)`` with our export 0 as the watcher: the capability pointer is
        patched in (a plain message builder cannot make one)."""
        built = rpc.Message.new_message()
        c = built.init("call")
        c.questionId = question
        c.target.init("promisedAnswer").questionId = 0
        c.interfaceId, c.methodId = coordinator_id, _ordinal(S.Coordinator, "watch")
        c.params.content = capnp._MallocMessageBuilder().init_root(
            S.Coordinator.schema.methods["watch"].param_type).as_reader()
        c.params.init("capTable", 1)[0].senderHosted = 0
        data = bytearray(built.to_bytes())
        segment = memoryview(data)[8:]  # one segment: an 8-byte segment table
        message = _struct_at(segment, 0)
        call_ = _struct_at(segment, message[0] + message[1])
        payload = _struct_at(segment, call_[0] + call_[1] + 1)  # Call.params: pointer 1
        content = _struct_at(segment, payload[0] + payload[1])
        struct.pack_into("<Q", segment, 8 * (content[0] + content[1]), 3)  # capability 0
        return bytes(data)

    boot = bootstrap(0)
    unit = functools.partial(call, target=0, interface="Coordinator")
    on_unit = functools.partial(call, interface="Unit", pointer=0)
    return {
        "ping": boot + unit(1, method="ping"),
        "list-graph": boot + unit(1, method="list") + unit(2, method="graph") + finish(1),
        "unit-info-want-ready": (
            boot + unit(1, method="unit", fill=name("fz"))
            + on_unit(2, 1, method="info")
            + on_unit(3, 1, method="want", fill=want(["fz-dep", "fz-other"], "started"))
            + on_unit(4, 1, method="ready")  # parks: cancelled when the connection goes
            + on_unit(5, 1, method="reached", fill=lambda p: setattr(p, "status", "completed"))
        ),
        "register-start-fail": (
            boot + unit(1, method="unit", fill=name("fz-b"))
            + on_unit(2, 1, method="register") + on_unit(3, 1, method="start")
            + on_unit(4, 1, method="fail", fill=lambda p: setattr(p, "reason", "fuzz"))
            + finish(2)
        ),
        "watch": (  # the server calls our watcher, which never answers
            boot + watch(1) + unit(2, method="unit", fill=name("fz-w"))
            + on_unit(3, 2, method="start") + on_unit(4, 2, method="complete")
        ),
        "hold": (  # a lease dropped with the connection: fz-h fails
            boot + unit(1, method="unit", fill=name("fz-h")) + on_unit(2, 1, method="hold")
        ),
        "sync": bootstrap(SYNC_ANSWER - 1) + call(SYNC_ANSWER, SYNC_ANSWER - 1, "Coordinator",
                                                  "ping"),
    }


def _ordinal(iface: Any, method: str) -> int:
    """A method's ordinal: its index in the interface's methods, which are in ordinal order."""
    return [m.name for m in iface.schema.node.interface.methods].index(method)


#: Appended to a payload of whole frames: a fresh bootstrap and a ping on it (question 901).
#: Its Return shows the server has read, and dispatched, everything sent before it.
SYNC_ANSWER = 901
FRAMES = _build_frames()
SYNC = FRAMES.pop("sync")


@dataclass
class Reaction:
    replies: bytes
    how: str  # "closed" (EOF), "reset", "open" (still open when we stopped waiting)
    seconds: float
    answered: bool  # what ``exchange`` waited for came
    stuck: bool = False  # it did not come within ``wait``, and the connection stayed open

    def __str__(self) -> str:
        return f"{self.how} after {self.seconds * 1e3:.1f} ms, sent back {describe(self.replies)}"


async def exchange(
    path: Path,
    payload: bytes,
    *,
    answer: int | None = None,
    until: Callable[[list[tuple[str, int | None]]], bool] | None = None,
    then_close: bool = True,
    wait: float = WAIT,
) -> Reaction:
    """On a fresh connection, send ``payload``; then read until the Return of question
    ``answer`` comes (the server has read everything before it), or until ``until`` holds for
    the messages received (``stuck`` if neither happens within ``wait``). With ``then_close``,
    shut our sending side (the server sees EOF). Then read until the server closes the
    connection, or ``wait`` passes (``how`` stays "open": after EOF, a hang)."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    started = time.perf_counter()
    replies = bytearray()
    how, answered, stuck = "open", False, False

    async def receive() -> bool:
        nonlocal how
        try:
            chunk = await sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
            how = "reset"
        else:
            how = how if chunk else "closed"
        replies.extend(chunk)
        return bool(chunk)

    try:
        with trio.fail_after(WAIT):
            await sock.connect(str(path))
        try:
            with trio.fail_after(WAIT):
                await send_all(sock, payload)
        except (BrokenPipeError, ConnectionResetError):
            how = "reset"
        if answer is not None:
            until = lambda found: ("return", answer) in found  # noqa: E731
        if how == "open" and until is not None:
            with trio.move_on_after(wait) as waited:
                while not (answered := until(messages(replies))):
                    if not await receive():
                        break
            stuck = waited.cancelled_caught
        if how == "open" and then_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if how == "open":
            with trio.move_on_after(wait):
                while await receive():
                    pass
    finally:
        sock.close()
    return Reaction(bytes(replies), how, time.perf_counter() - started, answered, stuck)


async def send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = await sock.send(view[:65536])
        view = view[sent:]

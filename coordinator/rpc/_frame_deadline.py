"""A server connection's byte stream, with a deadline for frames left incomplete.

A client that sends part of a Cap'n Proto frame and then stalls would otherwise hold its
connection (and up to the reader's traversal limit of buffered bytes) for ever. An idle client is
fine — one parked in ``ready()`` may be silent for hours — so this is no idle timeout: the clock
runs only while a frame is *incomplete*, from its first byte until its last.

How: pycapnp's ``AsyncIoStream`` reads the socket through an asyncio ``BufferedProtocol`` of its
own (``_PyAsyncIoStreamProtocol``): the transport asks it for a buffer (``get_buffer``, KJ's read
buffer) and tells it how many bytes landed (``buffer_updated``). :class:`FrameDeadline`
subclasses it and, before handing each chunk on, follows the stream framing — ``(segment count -
1)`` as uint32 LE, the segment sizes in words as uint32 LE, padding to 8 bytes, then the segments
— over the bytes it has just been given: no copy, no extra buffer, no task, on the KJ thread, in
the transport's read callback. What that costs per call is in stress/README.md ("Measured
history"); ``frame_timeout=0`` leaves only the :class:`LeanStream`.

When a chunk ends inside a frame, the frame's start time is noted and one ``call_later`` timer
is armed (if none is). When it fires it looks at the frame incomplete *now*: none (the
connection is between frames) — nothing to do; one that began less than ``frame_timeout`` ago —
wait for the rest of its time; else the connection is aborted (not closed: a client that does
not read could hold a graceful close), exactly as if the client had disconnected, so its waiters
and leases are cleaned up by the usual paths and its slot under ``max_connections`` is freed.
Frames pycapnp refuses anyway (512 segments or more, sizes over the traversal limit) are refused
by pycapnp first; past 512 segments the framing is no longer followed and the deadline keeps
running.

The same protocol is lean (:class:`LeanStream`, also without a deadline, and the clients'):
pycapnp's own pauses and resumes the socket's reader around every read, two ``epoll_ctl`` and
asyncio's selector bookkeeping per message, and sends a message's segment table and segment in
two ``send`` calls; this one keeps the reader registered and sends a message at once
(stress/README.md, "Fan-out and the bridge").

This relies on pycapnp 2.2's protocol class and ``AsyncIoStream._post_init`` (what its own
``create_unix_connection`` does), hence ``pycapnp<2.3`` in pyproject.toml; tests/test_stall.py
exercises both.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

import capnp
from capnp.lib.capnp import _PyAsyncIoStreamProtocol

__all__ = ["DEFAULT_FRAME_TIMEOUT", "FrameDeadline", "LeanStream", "open_stream"]

log = logging.getLogger("unitsync.server")

#: Seconds the rest of a started frame may take to arrive before the connection is closed.
DEFAULT_FRAME_TIMEOUT = 10.0

#: A segment count (minus one) from which we stop following the framing: KJ has refused the
#: frame already (it refuses 512 segments or more) and the connection is going.
_MAX_SEGMENTS = 512

_ONE_SEGMENT = struct.Struct("<II")  # segment count - 1, size of the first segment in words
_WORD32 = struct.Struct("<I")

_base_connection_made = _PyAsyncIoStreamProtocol.connection_made
_base_get_buffer = _PyAsyncIoStreamProtocol.get_buffer
_base_buffer_updated = _PyAsyncIoStreamProtocol.buffer_updated
_base_connection_lost = _PyAsyncIoStreamProtocol.connection_lost


class _LeanTransport:
    """The transport as pycapnp's protocol sees it (:class:`LeanStream`): reads paused lazily,
    a message's pieces sent at once.

    Reads: pycapnp pauses the transport after every read KJ asked for and resumes it for the
    next — and KJ's RPC asks for the next at once, so a connection is paused and resumed once or
    twice per message, each an ``epoll_ctl`` and asyncio's selector bookkeeping. Here a pause
    only notes that KJ wants no data; the socket stays registered. Should data arrive
    meanwhile, :meth:`unwanted` pauses for real, and pycapnp keeps that chunk in its overflow
    buffer for the next read (its own path for transports that deliver data while paused): at
    most one chunk is read ahead, as before.

    Writes: pycapnp writes a message as its pieces, the segment table and each segment, one
    ``transport.write`` (one ``send``) each; the peer then often reads it in two chunks too.
    Here the segment table, the first piece, says how many segments follow: they are kept
    until the last has come and the message goes out in one ``send``, still inside pycapnp's
    write (deferring it to a later turn of the loop let the other thread take the GIL first: a
    one-waiter wake-up's p99 grew from ~1.3 to 2-4 ms). A piece that is no segment table where
    one is due is sent as it is. A close or an end of writing sends what is pending first; an
    abort drops it. KJ thread only."""

    __slots__ = ("_transport", "_wanted", "_paused", "_pending", "_segments", "is_closing",
                 "can_write_eof", "get_extra_info")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._wanted = False  # KJ has a read pending
        self._paused = False  # paused for real
        self._pending: list[bytes] = []  # the pieces of a message, written, not yet sent
        self._segments = 0  # its segments still to come
        self.is_closing = transport.is_closing
        self.can_write_eof = transport.can_write_eof
        self.get_extra_info = transport.get_extra_info

    # --- reading ------------------------------------------------------------------------------

    def pause_reading(self) -> None:
        self._wanted = False

    def resume_reading(self) -> None:
        self._wanted = True
        if self._paused:
            self._paused = False
            self._transport.resume_reading()

    def unwanted(self) -> None:
        """Data is arriving while KJ wants none: stop reading until it does."""
        if not self._wanted and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    # --- writing ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._segments:  # a segment of the message begun
            self._pending.append(data)
            self._segments -= 1
            if not self._segments:
                self._send()
            return
        size = len(data)
        if size >= 8:
            segments = _WORD32.unpack_from(data)[0] + 1
            if size == (segments * 4 + 11) & ~7:  # 4 + 4 * segments, padded to 8: a table
                self._pending.append(data)
                self._segments = segments
                return
        self._transport.write(data)

    def _send(self) -> None:
        pending = self._pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            self._segments = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_eof(self) -> None:
        self._send()
        self._transport.write_eof()

    def close(self) -> None:
        self._send()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()


class LeanStream(_PyAsyncIoStreamProtocol):  # type: ignore[misc]
    """pycapnp's stream protocol over a :class:`_LeanTransport`: the socket's reader is not
    paused and resumed around every read, and a message goes out in one ``send``. KJ thread
    only."""

    __slots__ = ("_gate",)

    def __init__(self) -> None:
        super().__init__()
        self._gate: _LeanTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self._gate = _LeanTransport(transport)
        _base_connection_made(self, self._gate)

    def get_buffer(self, size_hint: int) -> Any:
        gate = self._gate
        if gate is not None:
            gate.unwanted()  # does nothing while KJ has a read pending
        return _base_get_buffer(self, size_hint)


class FrameDeadline(LeanStream):
    """pycapnp's stream protocol, closing the connection when a frame stays incomplete for
    ``timeout`` seconds (see the module docstring); a :class:`LeanStream`. KJ thread
    only."""

    __slots__ = ("_view", "_left", "_head", "_since", "_timer", "_timeout", "_loop", "_lost")

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._view: Any = None  # the buffer the transport is reading into
        self._left = 0  # bytes of the current frame's segments not received yet
        self._head = b""  # the start of a segment table split across chunks
        self._since: float | None = None  # loop time the incomplete frame began; None: between
        self._timer: asyncio.TimerHandle | None = None
        self._lost = False  # the framing could not be followed (an absurd segment count)

    def get_buffer(self, size_hint: int) -> Any:
        view = self._view = LeanStream.get_buffer(self, size_hint)
        return view

    def buffer_updated(self, size: int) -> None:
        view, self._view = self._view, None  # KJ's buffer: valid until handed on below
        if self._lost:
            pass
        elif self._left == size:  # exactly the rest of a frame: a body read after its header
            # (the common case: pycapnp's client writes a message's segment table and its
            # segment separately, so most calls arrive as two chunks)
            self._left = 0
            self._since = None
        else:
            self._follow(view, size)
        _base_buffer_updated(self, size)

    def _follow(self, view: Any, size: int) -> None:
        """Advance the framing over ``view[:size]``; note whether it ends inside a frame."""
        at, left, head, began = 0, self._left, self._head, False
        while True:
            if left:  # inside a frame's segments
                if left > size - at:
                    left -= size - at
                    break
                at += left
                left = 0
            if at == size:
                break
            if not head:  # a frame begins at ``at``
                began = True
                if size - at >= 8:
                    count_1, first = _ONE_SEGMENT.unpack_from(view, at)
                    if count_1 == 0:  # one segment: nearly every RPC message
                        at += 8
                        left = first << 3
                        continue
                    table = (count_1 * 4 + 15) & ~7  # 4 + 4 * count, padded to 8
                    if count_1 < _MAX_SEGMENTS and size - at >= table:
                        left = sum(struct.unpack_from(f"<{count_1 + 1}I", view, at + 4)) << 3
                        at += table
                        continue
            # the segment table is split across chunks: collect it in ``head``
            if len(head) < 4:
                take = min(4 - len(head), size - at)
                head += bytes(view[at:at + take])
                at += take
                if len(head) < 4:
                    break
            count_1 = _WORD32.unpack_from(head)[0]
            if count_1 >= _MAX_SEGMENTS:  # pycapnp refuses it; the deadline keeps running
                self._lost = True
                break
            table = (count_1 * 4 + 15) & ~7
            take = min(table - len(head), size - at)
            head += bytes(view[at:at + take])
            at += take
            if len(head) < table:
                break
            left = sum(struct.unpack_from(f"<{count_1 + 1}I", head, 4)) << 3
            head = b""
        self._left, self._head = left, head
        if left or head or self._lost:
            if began or self._since is None:
                self._since = self._loop.time()
            if self._timer is None:
                self._timer = self._loop.call_later(self._timeout, self._expire)
        else:
            self._since = None

    def _expire(self) -> None:
        self._timer = None
        since = self._since
        if since is None or self.transport is None:
            return
        rest = since + self._timeout - self._loop.time()
        if rest > 0:
            self._timer = self._loop.call_later(rest, self._expire)
            return
        missing = f"{self._left} bytes of it" if self._left else "the rest of its segment table"
        if self._lost:
            missing = "a frame pycapnp could not read"
        log.warning(
            "closed a connection stalled mid-frame: %s not received within %g s (frame_timeout)",
            missing, self._timeout,
        )
        self.transport.abort()  # not close(): that would wait to flush to a client not reading

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._view = None
        _base_connection_lost(self, exc)


async def open_stream(sock: socket.socket, *, frame_timeout: float) -> Any:
    """pycapnp's ``AsyncIoStream`` over the accepted socket ``sock``, with a
    :class:`FrameDeadline` of ``frame_timeout`` seconds (``0``: none, only :class:`LeanStream`).
    KJ thread; the caller closes the stream."""
    loop = asyncio.get_running_loop()
    stream = capnp.AsyncIoStream()
    _transport, protocol = await loop.create_unix_connection(
        (lambda: FrameDeadline(frame_timeout)) if frame_timeout else LeanStream, sock=sock
    )
    stream._post_init(protocol)
    return stream

"""``LeanStream``'s transport (``coordinator/rpc/_frame_deadline.py``): what pycapnp's protocol
sees of the socket — reads paused lazily, a message's pieces sent in one write. Pure: a fake
transport records the calls. (Every RPC test runs over it too.)"""

from __future__ import annotations

import struct

from coordinator.rpc._frame_deadline import _LeanTransport


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def pause_reading(self) -> None:
        self.calls.append(("pause", None))

    def resume_reading(self) -> None:
        self.calls.append(("resume", None))

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.calls.append(("eof", None))

    def close(self) -> None:
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.calls.append(("abort", None))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def table(*sizes_in_words: int) -> bytes:
    """A segment table: (count - 1), each size, padded to 8 bytes."""
    raw = struct.pack(f"<{len(sizes_in_words) + 1}I", len(sizes_in_words) - 1, *sizes_in_words)
    return raw + b"\0" * (-len(raw) % 8)


def test_a_message_goes_out_in_one_write_when_its_last_segment_is_written() -> None:
    fake = FakeTransport()
    lean = _LeanTransport(fake)  # type: ignore[arg-type]
    one = [table(1), b"A" * 8]
    three = [table(1, 2, 1), b"B" * 8, b"C" * 16, b"D" * 8]
    for piece in one[:-1]:
        lean.write(piece)
    assert fake.calls == []  # the table alone is held
    lean.write(one[-1])
    for piece in three:
        lean.write(piece)
    assert fake.calls == [("write", b"".join(one)), ("write", b"".join(three))]


def test_a_piece_that_is_no_segment_table_is_written_as_it_is() -> None:
    fake = FakeTransport()
    lean = _LeanTransport(fake)  # type: ignore[arg-type]
    lean.write(b"short")
    lean.write(b"\x05\0\0\0" + b"\0" * 12)  # says 6 segments: a table would be 32 bytes
    assert fake.calls == [("write", b"short"), ("write", b"\x05\0\0\0" + b"\0" * 12)]


def test_close_sends_what_is_pending_and_abort_drops_it() -> None:
    fake = FakeTransport()
    lean = _LeanTransport(fake)  # type: ignore[arg-type]
    lean.write(table(1, 1))
    lean.write(b"A" * 8)
    lean.close()
    assert fake.calls == [("write", table(1, 1) + b"A" * 8), ("close", None)]
    fake = FakeTransport()
    lean = _LeanTransport(fake)  # type: ignore[arg-type]
    lean.write(table(1))
    lean.abort()
    assert fake.calls == [("abort", None)]


def test_reads_are_paused_for_real_only_when_data_comes_unasked() -> None:
    fake = FakeTransport()
    lean = _LeanTransport(fake)  # type: ignore[arg-type]
    lean.resume_reading()  # KJ asks for data
    lean.unwanted()  # data arriving now is wanted: nothing to do
    lean.pause_reading()  # KJ has its data: only noted
    assert fake.calls == []
    lean.unwanted()  # data arriving with no read pending: pause for real, once
    lean.unwanted()
    assert fake.calls == [("pause", None)]
    lean.resume_reading()  # the next read: resume for real
    lean.resume_reading()
    assert fake.calls == [("pause", None), ("resume", None)]

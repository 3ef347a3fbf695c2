"""A client stalled mid-frame is cut after ``ServerLimits.frame_timeout`` (issue 6).

Only an *incomplete* frame is timed — from its first byte to its last — so a client idle between
frames (parked in ``ready()`` for hours) is never cut, and a slow client is served as long as
each frame arrives within the deadline. The cut is a disconnect like any other: the client's
parked calls go, its leases fail, its connection no longer counts against ``max_connections``.

Each test runs a real ``serve(coord, path, limits=...)`` (or the real ``unitsync serve``) and
talks to it over real Unix sockets with hand-built frames (see :mod:`tests.frames`). The
deadline is short here (:data:`FRAME_TIMEOUT`); the waits that make up a test's run time are
the deadlines being measured.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from coordinator import DependencyFailed, LocalCoordinator, Status, UnitInfo, __version__, connect
from coordinator import serve
from coordinator._lease import HOLDER_GONE
from coordinator.rpc._server import ServerLimits

from .cli_support import env_for, read_all, start_serve
from .waits import WAIT
from .frames import FRAMES, ONE_WORD, SYNC, SYNC_ANSWER, exchange, frame, messages, split_frames
from .rpc_support import park, until

#: The server logs no error while clients stall (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("no_errors_logged")

#: The deadline under test: short, so the suite stays fast.
FRAME_TIMEOUT = 0.5

#: How much later than the deadline a cut may come. Generous on purpose (a cut comes within
#: milliseconds of the deadline on an idle machine, a loaded runner can delay the KJ thread by
#: seconds): it only has to tell a deadline that fires from one that never does or that fires
#: at the default frame_timeout (10 s) instead of the one given.
LATE = WAIT - FRAME_TIMEOUT

#: What the server logs, once per connection it cuts.
CUT_LOG = "closed a connection stalled mid-frame"

#: Where a client can stall: every place in a frame's header and body.
STALLS = {
    "inside the segment count": FRAMES["ping"][:3],
    "inside the segment table": FRAMES["ping"][:6],
    "inside a segment": FRAMES["unit-info-want-ready"][:40],
    "inside the last segment, after a whole frame": FRAMES["ping"][:-5],
    "inside a 3-segment table": frame([ONE_WORD] * 3)[:10],
    "after a header claiming the reader's limit": frame(
        [ONE_WORD], sizes=[ServerLimits().traversal_limit_words - 1]),
}


@asynccontextmanager
async def serving(
    coord: LocalCoordinator, path: Path, **limits: float
) -> AsyncIterator[Path]:
    """``serve(coord, path)`` with ``frame_timeout=FRAME_TIMEOUT`` and ``limits``."""
    limits.setdefault("frame_timeout", FRAME_TIMEOUT)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            functools.partial(serve, coord, path, limits=ServerLimits(**limits)))  # type: ignore[arg-type]
        yield bound
        nursery.cancel_scope.cancel()


async def stall(path: Path, payload: bytes) -> tuple[trio.socket.SocketType, float]:
    """A connection that has sent ``payload`` and then nothing; and when it began sending
    (``time.monotonic()``, the clock of the server's deadline: before the server can have read
    a byte)."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    with trio.fail_after(WAIT):
        await sock.connect(str(path))
        sent = time.monotonic()
        await sock.send(payload)
    return sock, sent


async def until_closed(sock: trio.socket.SocketType) -> bytes:
    """Everything the server sends until it closes the connection (the caller bounds it)."""
    replies = bytearray()
    try:
        while chunk := await sock.recv(65536):
            replies += chunk
    except ConnectionResetError:
        pass
    return bytes(replies)


def cuts_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(CUT_LOG)]


def test_the_framing_is_followed_across_any_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline's view of the stream: fed runs of frames of 1 to 40 segments, cut into
    chunks of every size from 1 byte to several frames, :class:`FrameDeadline` says "inside a
    frame" after a chunk exactly when the bytes so far do not end on a frame boundary, and its
    deadline clock runs exactly then. (No socket: pycapnp's part is stubbed out.)"""
    from coordinator.rpc import _frame_deadline

    monkeypatch.setattr(_frame_deadline, "_base_buffer_updated", lambda protocol, size: None)
    rng = random.Random(6)

    def a_frame() -> bytes:
        sizes = [rng.choice([0, 1, 2, 5, 100]) for _ in range(rng.choice([1, 1, 1, 2, 3, 7, 40]))]
        return frame([bytes([rng.randrange(256)]) * (8 * size) for size in sizes])

    async def follow() -> int:
        checked = 0
        for _ in range(1000):
            frames = [a_frame() for _ in range(rng.randrange(1, 6))]
            data = b"".join(frames)
            boundaries = {sum(map(len, frames[:i])) for i in range(len(frames) + 1)}
            protocol = _frame_deadline.FrameDeadline(FRAME_TIMEOUT)
            at = 0
            while at < len(data):
                chunk = data[at:at + rng.choice([1, 2, 3, 5, 8, 13, 64, 1000])]
                protocol._view = memoryview(bytearray(chunk + b"\xee" * 8))  # as get_buffer does
                protocol.buffer_updated(len(chunk))
                at += len(chunk)
                inside = bool(protocol._left or protocol._head)
                assert inside == (at not in boundaries), (frames, at)
                assert (protocol._since is not None) == inside
                checked += 1
            if protocol._timer is not None:
                protocol._timer.cancel()
        return checked

    print(f"\n{asyncio.run(follow())} chunks checked")


async def test_a_client_stalled_mid_frame_is_cut_after_frame_timeout(
    server: LocalCoordinator, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients stalled at each place in a frame (all at once) are each cut no sooner than
    ``frame_timeout`` after they started sending, and not much later; one warning each; other
    clients are served meanwhile and after."""
    cut_after: dict[str, float] = {}
    async with serving(server, sock_dir / "s.sock") as path:

        async def one(where: str, payload: bytes) -> None:
            sock, sent = await stall(path, payload)
            with sock, trio.fail_after(FRAME_TIMEOUT + LATE):
                await until_closed(sock)
            cut_after[where] = time.monotonic() - sent

        async with trio.open_nursery() as nursery:
            for where, payload in STALLS.items():
                nursery.start_soon(one, where, payload)
            with trio.fail_after(WAIT):
                async with connect(path) as client:
                    assert await client.ping() == __version__
        with trio.fail_after(WAIT):
            async with connect(path) as client:
                assert await client.ping() == __version__
    print("\n" + "\n".join(f"cut after {s * 1e3:.0f} ms: {w}" for w, s in cut_after.items()))
    assert len(cut_after) == len(STALLS)
    assert all(FRAME_TIMEOUT <= s < FRAME_TIMEOUT + LATE for s in cut_after.values()), cut_after
    assert len(cuts_logged(caplog)) == len(STALLS), cuts_logged(caplog)


async def test_a_cut_client_leaves_no_waiter_and_its_lease_fails(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """A client parked in ``ready()`` and ``reached()`` on one connection, and one holding
    ``fz-h`` on another, both then stalling mid-frame: after the cut, as after any disconnect,
    no waiter is left and ``fz-h`` fails with "holder disconnected"."""
    async with serving(server, sock_dir / "s.sock") as path:
        waiter, _ = await stall(path, FRAMES["unit-info-want-ready"] + FRAMES["ping"][:20])
        holder, _ = await stall(path, FRAMES["hold"] + FRAMES["ping"][:20])
        with waiter, holder, trio.fail_after(WAIT):
            await server.unit("fz-h").reached(Status.STARTED)
            await until(server, lambda s: s.ready_waiters == 1 and s.reached_waiters == 1)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(until_closed, waiter)
                nursery.start_soon(until_closed, holder)
            with pytest.raises(DependencyFailed) as failed:
                await server.unit("fz-h").reached(Status.COMPLETED)
            await until(server, lambda s: s.ready_waiters == 0 and s.reached_waiters == 0)
    assert failed.value.reason == HOLDER_GONE
    assert (await server.unit("fz-h").info()).status is Status.FAILED


async def test_a_client_idle_between_frames_is_never_cut(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """Idle for twice ``frame_timeout`` between frames — a raw client after a whole
    conversation, a ``connect()`` client parked in ``ready()`` — neither is cut: the raw one
    is still answered, the parked one gets its answer when the dependency completes."""
    idle = 2 * FRAME_TIMEOUT
    results: list[object] = []
    async with serving(server, sock_dir / "s.sock") as path, connect(path) as client:
        sock, _ = await stall(path, FRAMES["ping"])
        with sock:
            replies = bytearray()
            with trio.fail_after(WAIT):
                while ("return", 1) not in messages(replies):
                    replies += await sock.recv(65536)
                await client.unit("st-app").want("st-dep")
            async with trio.open_nursery() as nursery:
                with trio.fail_after(WAIT):
                    await nursery.start(park, client.unit("st-app"), results)
                with trio.move_on_after(idle) as still_open:  # the wait being measured
                    replies += await until_closed(sock)
                assert still_open.cancelled_caught, f"raw client cut: {messages(replies)}"
                with trio.fail_after(WAIT):
                    await sock.send(SYNC)
                    while ("return", SYNC_ANSWER) not in messages(replies):
                        replies += await sock.recv(65536)
                    await client.unit("st-dep").start()
                    await client.unit("st-dep").complete()
    assert __version__.encode() in replies
    assert len(results) == 1 and isinstance(results[0], UnitInfo) and results[0].ready, results


async def test_a_client_dribbling_each_frame_within_the_deadline_is_served(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """A client sends four frames one byte at a time, each over half of ``frame_timeout``: the
    conversation takes twice the deadline, but each frame arrives within it, so it is served."""
    frames = split_frames(FRAMES["ping"] + SYNC)
    per_frame = FRAME_TIMEOUT / 2
    async with serving(server, sock_dir / "s.sock") as path:
        sock, began = await stall(path, b"")
        replies = bytearray()
        with sock, trio.fail_after(WAIT + len(frames) * per_frame):
            for data in frames:
                start = trio.current_time()
                for i in range(len(data)):  # on a schedule: a late byte does not delay the rest
                    await trio.sleep_until(start + i * per_frame / (len(data) - 1))
                    await sock.send(data[i:i + 1])
            while ("return", SYNC_ANSWER) not in messages(replies):
                chunk = await sock.recv(65536)
                assert chunk, f"cut after {time.monotonic() - began:.2f} s: {messages(replies)}"
                replies += chunk
    took = time.monotonic() - began
    print(f"\n{sum(map(len, frames))} bytes one at a time in {len(frames)} frames, {took:.2f} s")
    assert ("return", 1) in messages(replies) and __version__.encode() in replies
    assert took > FRAME_TIMEOUT


async def test_a_frame_dribbled_slower_than_the_deadline_is_cut(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """The deadline runs from a frame's first byte, not from its latest: a client that sends
    a whole Bootstrap, then a frame one byte at a time over twice ``frame_timeout``, is cut
    ``frame_timeout`` after that frame's first byte, before its end."""
    bootstrap, call = split_frames(FRAMES["ping"])
    spacing = 2 * FRAME_TIMEOUT / len(call)
    async with serving(server, sock_dir / "s.sock") as path:
        sock, _ = await stall(path, bootstrap)
        sent = 0
        with sock, trio.fail_after(WAIT):
            began = time.monotonic()
            try:
                for i in range(len(call)):
                    await trio.sleep_until(trio.current_time() + (spacing if i else 0))
                    await sock.send(call[i:i + 1])
                    sent += 1
                await until_closed(sock)
            except (BrokenPipeError, ConnectionResetError):
                pass
            cut = time.monotonic() - began
    print(f"\ncut after {cut:.2f} s, {sent} of the frame's {len(call)} bytes sent")
    assert sent < len(call)
    assert FRAME_TIMEOUT <= cut < FRAME_TIMEOUT + LATE


async def test_cut_clients_no_longer_count_against_max_connections(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """With ``max_connections=2``, two clients stalled mid-frame keep a third out
    (``unitsync.overloaded``) — until the deadline cuts them; then the third is served."""
    async with serving(server, sock_dir / "s.sock", max_connections=2) as path:
        stalled = [await stall(path, STALLS["inside a segment"]) for _ in range(2)]
        with stalled[0][0], stalled[1][0]:
            refused = await exchange(path, FRAMES["ping"], answer=1)
            assert b"unitsync.overloaded: " in refused.replies, str(refused)
            assert b"too many connections" in refused.replies, str(refused)
            with trio.fail_after(FRAME_TIMEOUT + LATE):
                async with trio.open_nursery() as nursery:
                    for sock, _ in stalled:
                        nursery.start_soon(until_closed, sock)
        cut = time.monotonic() - max(sent for _, sent in stalled)
        # the server drops a cut connection from its count a few loop turns after closing it:
        # a client that comes in between is refused, and comes back
        attempts = 0
        with trio.fail_after(WAIT):
            while True:
                attempts += 1
                reaction = await exchange(path, FRAMES["ping"], answer=1)
                if b"unitsync.overloaded" not in reaction.replies:
                    break
    print(f"\nstalled clients cut after {cut:.2f} s; the next client got in at attempt {attempts}")
    assert FRAME_TIMEOUT <= cut
    assert reaction.answered and __version__.encode() in reaction.replies, str(reaction)


async def test_frame_timeout_0_leaves_a_stalled_client_alone(
    server: LocalCoordinator, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``frame_timeout=0``: no deadline, a client stalled mid-frame stays connected (here for
    twice :data:`FRAME_TIMEOUT`) and still counts against ``max_connections``."""
    async with serving(server, sock_dir / "s.sock", frame_timeout=0, max_connections=1) as path:
        sock, _ = await stall(path, STALLS["inside a segment"])
        with sock:
            with trio.move_on_after(2 * FRAME_TIMEOUT) as still_open:  # the wait being measured
                await until_closed(sock)
            assert still_open.cancelled_caught
            refused = await exchange(path, FRAMES["ping"], answer=1)
    assert b"unitsync.overloaded" in refused.replies, str(refused)
    assert not cuts_logged(caplog)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_frame_timeout_must_be_0_or_seconds(bad: float) -> None:
    with pytest.raises(ValueError, match="frame_timeout must be 0"):
        ServerLimits(frame_timeout=bad)


async def test_unitsync_serve_frame_timeout(sock_dir: Path) -> None:
    """``unitsync serve --frame-timeout 500ms`` cuts a stalled client after half a second and
    says so in one line on stderr."""
    path = sock_dir / "unitsync.sock"
    with trio.fail_after(WAIT * 2):
        process = await start_serve(path, env_for(path), "--frame-timeout", "500ms", "--no-state")
    try:
        sock, sent = await stall(path, STALLS["inside the segment table"])
        with sock, trio.fail_after(0.5 + LATE):
            await until_closed(sock)
        cut = time.monotonic() - sent
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(WAIT):
            stderr = await read_all(process.stderr)
            assert await process.wait() == 0
    finally:
        process.kill()
    print(f"\ncut after {cut:.2f} s; stderr: {stderr!r}")
    assert 0.5 <= cut
    assert [line for line in stderr.splitlines() if CUT_LOG in line] == [
        f"{CUT_LOG}: the rest of its segment table not received within 0.5 s (frame_timeout)"
    ], stderr

"""The coordinator over Cap'n Proto RPC: what only a real socket, real connections and real
client processes can show (pipelining, E-order, dead clients, many clients, shutdown, leases,
the socket file). The semantics themselves are in test_semantics.py, run locally and over RPC.

Clients here are of three kinds: ``connect()`` (the Trio client, in this process); a plain
pycapnp client on a KJ thread of its own (:func:`raw_client`: only the schema, as a client in
another language would do it); and client *processes* (``tests/rpc_clients/*.py``), which the
tests kill.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import capnp
import pytest
import trio
import trio.testing

from coordinator import (
    CoordinatorClosed,
    CoordinatorUnreachable,
    DependencyFailed,
    InvalidName,
    Lagged,
    LocalCoordinator,
    Overloaded,
    Status,
    UnitInfo,
    UnitsyncError,
    __version__,
    connect,
    open_coordinator,
    serve,
)
from coordinator.rpc._error_codec import error_from_wire
from coordinator.rpc import _client
from coordinator.rpc._convert import read_info
from coordinator.rpc._schema import schema
from coordinator.rpc._server import CoordinatorServer
from coordinator.rpc._watch_server import REMOTE_WATCH_BUFFER
from coordinator.rpc._socket import AddressInUse, connect_socket

from .rpc_support import park, raw_client, serving, until
from .waits import WAIT, settle

S = schema()
CLIENTS = Path(__file__).parent / "rpc_clients"
ROOT = Path(__file__).parent.parent
HOLDER_GONE = "holder disconnected"


# --- helpers --------------------------------------------------------------------------------


async def assert_git_wakes_claude(client: Any, server: LocalCoordinator | None = None) -> None:
    """claude (which wants git) parked in ``ready()`` over ``client`` is woken when git
    completes: the connection and the unit still work. With ``server``, the waiter is seen
    parked there (and only it)."""
    results: list[object] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(park, client.unit("claude"), results)
        if server is not None:
            assert (await server.statistics()).ready_waiters == 1
        await client.unit("git").start()
        await client.unit("git").complete()
    (info,) = results
    assert isinstance(info, UnitInfo) and info.ready


class Lines:
    """Lines of a child process's stdout."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise EOFError(f"the process closed its stdout after {self._buffer!r}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


async def start_client(nursery: trio.Nursery, script: str, *args: str) -> trio.Process:
    """Start ``tests/rpc_clients/<script>`` (stdout piped) as a task of ``nursery``."""
    command = [sys.executable, str(CLIENTS / script), *args]
    return await nursery.start(
        functools.partial(
            trio.run_process, command, stdout=subprocess.PIPE, check=False, cwd=ROOT
        )
    )


# --- 1. promise pipelining ------------------------------------------------------------------


async def test_pipelined_calls_are_sent_before_unit_returns(
    server: LocalCoordinator, sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``coord.unit("claude").unit.ready()`` over plain pycapnp: the Unit capability is used
    before ``unit()`` has answered. The server holds ``unit()`` at a gate; the client sends
    ``unit()``, ``ready()`` and ``info()`` on its promised result, then ``ping()`` — answered
    while ``unit()`` is still held, so ``ready()``/``info()``, sent before it on the same
    connection, were already at the server: no round trip was spent waiting for ``unit()``.
    Then the gate opens and the pipelined calls resolve, ``ready()`` only when its dependency
    completes."""
    token = trio.lowlevel.current_trio_token()
    gates: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
    unit_called = trio.Event()
    original = CoordinatorServer.unit_context

    async def gated_unit(self: Any, context: Any) -> None:
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[None] = loop.create_future()
        gates.append((context.params.name, loop, gate))
        token.run_sync_soon(unit_called.set)
        await gate
        await original(self, context)

    monkeypatch.setattr(CoordinatorServer, "unit_context", gated_unit)

    async def send(state: dict[str, Any]) -> str:  # KJ thread
        cap = state["coord"].unit("claude").unit  # a promised capability: unit() is not awaited
        state["ready"] = cap.ready()
        state["info"] = cap.info()  # after ready() on the same capability: E-order
        return str((await state["coord"].ping()).version)  # sent after them; not gated

    async def answer(state: dict[str, Any], key: str) -> UnitInfo:
        return read_info((await state.pop(key)).info)

    with trio.fail_after(WAIT):
        await server.unit("claude").want("git")
        async with serving(server, sock_dir / "unitsync.sock") as path, raw_client(path) as run:
            assert await run(send) == __version__
            await unit_called.wait()
            # ping() came back while unit() is held: ready() and info() are at the server,
            # queued on unit()'s answer, and nothing has reached the unit yet
            assert [(name, gate.done()) for name, _, gate in gates] == [("claude", False)]
            assert (await server.statistics()).ready_waiters == 0
            _, loop, gate = gates[0]
            loop.call_soon_threadsafe(gate.set_result, None)

            info = await run(functools.partial(answer, key="info"))
            assert (info.name, info.status, info.ready) == ("claude", Status.PENDING, False)
            # info() was answered after ready(): ready() is parked, one waiter
            assert (await server.statistics()).ready_waiters == 1

            await server.unit("git").start()
            await server.unit("git").complete()
            ready = await run(functools.partial(answer, key="ready"))
            assert (ready.name, ready.ready) == ("claude", True)
            assert [(d.depends_on, d.current, d.satisfied) for d in ready.dependencies] == [
                ("git", Status.COMPLETED, True)
            ]
            # one unit() call carried both pipelined calls
            assert len(gates) == 1
            assert (await server.statistics()).ready_waiters == 0


async def test_pipelined_call_on_a_refused_unit_gets_its_error(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """A client that skips validation (one in another language) pipelines on an invalid name:
    the call made on the promised capability fails with ``unit()``'s own error, and nothing is
    created."""

    async def send(state: dict[str, Any]) -> str:
        try:
            await state["coord"].unit("bad\nname").unit.ready()
        except capnp.KjException as exc:
            return str(exc.description)
        return "answered"

    with trio.fail_after(WAIT):
        async with serving(server, sock_dir / "unitsync.sock") as path, raw_client(path) as run:
            text = await run(send)
    error = error_from_wire(text)
    assert isinstance(error, InvalidName) and error.name == "bad\nname", text
    assert (await server.statistics()).actors == 0


# --- 2. E-order -----------------------------------------------------------------------------


def expected_transitions(calls: int) -> list[tuple[Status, Status, str]]:
    """The (old, new, reason) of every call eorder.py makes, applied in order."""
    transitions = []
    status = Status.NOT_REGISTERED
    for k in range(calls):
        new, reason = {
            0: (Status.STARTED, ""), 1: (Status.COMPLETED, ""), 2: (Status.STARTED, ""),
            3: (Status.FAILED, str(k)),
        }[k % 4]
        transitions.append((status, new, reason))
        status = new
    return transitions


async def test_e_order_of_pipelined_calls_on_one_capability(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """20 batches of 100 calls, each batch sent whole before any answer is awaited, on one
    (promised) Unit capability from a plain pycapnp client process: every call succeeds and the
    unit goes through exactly the transitions of the calls in the order they were sent."""
    batches, size = 20, 100
    async with serving(server, sock_dir / "unitsync.sock") as path:
        async with server.watch(buffer=batches * size + 16) as events:
            with trio.fail_after(4 * WAIT):
                script = str(CLIENTS / "eorder.py")
                done = await trio.run_process(
                    [sys.executable, script, str(path), "x", str(batches), str(size)],
                    capture_stdout=True, cwd=ROOT,
                )
            reports = [json.loads(line) for line in done.stdout.decode().splitlines()]
            assert [r["batch"] for r in reports] == list(range(batches))
            for r in reports:
                assert r["errors"] == [], f"batch {r['batch']}: calls failed (out of order?)"
                last = (r["batch"] + 1) * size - 1  # the batch's last call: fail(str(last))
                assert (r["status"], r["reason"]) == ("failed", str(last))
            with trio.fail_after(WAIT):
                seen = [await anext(events) for _ in range(batches * size)]
    assert {e.unit for e in seen} == {"x"}
    assert [(e.old, e.new, e.reason) for e in seen] == expected_transitions(batches * size)
    assert [e.seq for e in seen] == list(range(seen[0].seq, seen[0].seq + batches * size))
    print(f"\nE-order: {batches}x{size} pipelined calls, batch times (ms): "
          + " ".join(f"{r['seconds'] * 1e3:.1f}" for r in reports))


# --- 3. a cancelled ready() -----------------------------------------------------------------


async def test_cancelled_remote_ready_leaves_no_waiter(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    async with serving(server, sock_dir / "unitsync.sock") as path, connect(path) as client:
        with trio.fail_after(WAIT):
            await client.unit("claude").want("git")
            claude = client.unit("claude")

            # cancelled while parked
            results: list[object] = []
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    await nursery.start(park, claude, results)
                assert (await server.statistics()).ready_waiters == 10
                nursery.cancel_scope.cancel()
            await settle(client, "claude")
            assert results == []
            assert (await server.statistics()).ready_waiters == 0

            # cancelled at once, before the server has parked it (or even received it)
            for _ in range(10):
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await claude.ready()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(claude.ready)
                    await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()
            await settle(client, "claude")
            assert (await server.statistics()).ready_waiters == 0

            # the unit still works, over the same connection
            await assert_git_wakes_claude(client)


# --- 4. a client process killed while parked ------------------------------------------------


async def test_killed_client_process_leaves_no_waiter(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    async with serving(server, sock_dir / "unitsync.sock") as path:
        await server.unit("claude").want("git")
        async with trio.open_nursery() as nursery:
            process = await start_client(nursery, "park.py", str(path), "claude")
            lines = Lines(process.stdout)
            with trio.fail_after(WAIT):
                assert await lines.next() == "connected"
                assert await lines.next() == "parked"
                await until(server, lambda s: s.ready_waiters == 1)  # another process: poll
            process.send_signal(signal.SIGKILL)
        assert process.returncode == -signal.SIGKILL
        with trio.fail_after(WAIT):
            await until(server, lambda s: s.ready_waiters == 0)  # the server saw the disconnect
            assert (await server.unit("claude").info()).status is Status.PENDING
            async with connect(path) as client:
                assert await client.ping() == __version__
                await assert_git_wakes_claude(client, server)


# --- 5. many clients ------------------------------------------------------------------------


async def test_200_clients_parked_on_one_dependency_all_resolve(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    n = 200
    results: dict[int, list[object]] = {i: [] for i in range(n)}
    all_parked, all_resolved = trio.Event(), trio.Event()
    parked = resolved = 0

    async def client(path: Path, i: int) -> None:
        nonlocal parked, resolved
        async with connect(path) as coord:
            async with trio.open_nursery() as nursery:
                await nursery.start(park, coord.unit(f"u{i}"), results[i])
                parked += 1
                if parked == n:
                    all_parked.set()
            resolved += 1  # ready() has returned
            if resolved == n:
                all_resolved.set()

    with trio.fail_after(4 * WAIT):
        for i in range(n):
            await server.unit(f"u{i}").want("dep")
        async with serving(server, sock_dir / "unitsync.sock") as path:
            async with trio.open_nursery() as nursery:
                t0 = time.perf_counter()
                for i in range(n):
                    nursery.start_soon(client, path, i)
                await all_parked.wait()
                t1 = time.perf_counter()
                assert (await server.statistics()).ready_waiters == n
                await server.unit("dep").start()
                await server.unit("dep").complete()
                await all_resolved.wait()
                t2 = time.perf_counter()
            t3 = time.perf_counter()
        assert (await server.statistics()).ready_waiters == 0
    for i in range(n):
        (info,) = results[i]
        assert isinstance(info, UnitInfo), info
        assert (info.name, info.ready, info.status) == (f"u{i}", True, Status.PENDING)
        assert [(d.depends_on, d.current) for d in info.dependencies] == [("dep", Status.COMPLETED)]
    print(f"\n{n} clients: connect + park {t1 - t0:.3f} s; 'dep' completed -> all {n} "
          f"resolved {(t2 - t1) * 1e3:.0f} ms; disconnect {(t3 - t2) * 1e3:.0f} ms")


async def test_many_connections_do_not_exhaust_trio_threads(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """As many ``connect()`` as Trio lends worker threads by default (40), in one program that
    also serves: they connect, and the program can still run a thread (``trio.open_file``,
    ``getaddrinfo`` and ``to_thread`` users need one). Each KJ thread has a limiter of its own;
    were it to take a token of Trio's default limiter for its lifetime, the 40th would wait
    forever — ``connect(timeout=)`` does not bound that."""
    tokens = trio.to_thread.current_default_thread_limiter().total_tokens
    connected = 0

    async def client(path: Path, *, task_status: trio.TaskStatus[None]) -> None:
        async with connect(path):
            task_status.started()
            await trio.sleep_forever()

    async with serving(server, sock_dir / "unitsync.sock") as path:
        with trio.move_on_after(1.0) as hung:  # each takes milliseconds
            async with trio.open_nursery() as nursery:
                for _ in range(tokens):
                    await nursery.start(client, path)
                    connected += 1
                assert await trio.to_thread.run_sync(lambda: 42) == 42
                nursery.cancel_scope.cancel()
        assert not hung.cancelled_caught, f"hung after {connected} of {tokens} clients connected"


# --- 6. shutdown ----------------------------------------------------------------------------


async def test_shutdown_with_200_parked_waiters_is_prompt(sock_dir: Path) -> None:
    n = 200
    path = sock_dir / "unitsync.sock"
    server_scope = trio.CancelScope()
    server_done = trio.Event()
    results: dict[int, list[object]] = {i: [] for i in range(n)}
    all_parked = trio.Event()
    parked = 0

    async def run_server(*, task_status: trio.TaskStatus[LocalCoordinator]) -> None:
        with server_scope:
            async with open_coordinator() as coord, trio.open_nursery() as nursery:
                await nursery.start(serve, coord, path)
                task_status.started(coord)
                await trio.sleep_forever()
        server_done.set()

    async def client(i: int) -> None:
        nonlocal parked
        async with connect(path) as coord:
            async with trio.open_nursery() as nursery:
                await nursery.start(park, coord.unit(f"w{i}"), results[i])
                parked += 1
                if parked == n:
                    all_parked.set()
            # after the server went away, any further call says so too
            with pytest.raises(CoordinatorClosed):
                await coord.ping()

    with trio.fail_after(4 * WAIT):
        async with trio.open_nursery() as nursery:
            coord = await nursery.start(run_server)
            for i in range(n):
                await coord.unit(f"w{i}").want("never")
            for i in range(n):
                nursery.start_soon(client, i)
            await all_parked.wait()
            assert (await coord.statistics()).ready_waiters == n
            assert path.exists()
            t0 = time.perf_counter()
            server_scope.cancel()
            await server_done.wait()
            elapsed = time.perf_counter() - t0
            assert not path.exists()
    # prompt: the server waits for no client, and for its own last answers to leave at most 1 s
    # (rpc/_server.py, _stop_after_coordinator). The bound is generous for a loaded runner: it
    # only has to catch a shutdown that waits on the clients or on a timeout of theirs (the
    # fail_after above stops one that hangs)
    assert elapsed < WAIT / 2, f"shutting down took {elapsed:.3f} s"
    closed = [type(r[0]).__name__ for r in results.values() if len(r) == 1]
    assert closed == ["CoordinatorClosed"] * n
    print(f"\nshutdown with {n} parked waiters on {n} connections: {elapsed * 1e3:.0f} ms")


# --- 7. watch -------------------------------------------------------------------------------


async def test_remote_watch_in_order_and_slow_watcher_cut_off(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    async with serving(server, sock_dir / "unitsync.sock") as path:
        async with connect(path) as watcher, connect(path) as other:
            with trio.fail_after(WAIT):
                async with watcher.watch() as events, watcher.watch(buffer=4) as slow:
                    for i in range(50):
                        await other.unit(f"u{i}").want("git")
                    await other.unit("git").start()
                    await other.unit("git").complete()
                    seen = [await anext(events) for _ in range(102)]
                    assert [(e.unit, e.old, e.new, e.depends_on) for e in seen] == [
                        *(event for i in range(50) for event in (
                            (f"u{i}", Status.NOT_REGISTERED, Status.PENDING, ""),
                            (f"u{i}", Status.PENDING, Status.PENDING, "git"),  # the edge
                        )),
                        ("git", Status.NOT_REGISTERED, Status.STARTED, ""),
                        ("git", Status.STARTED, Status.COMPLETED, ""),
                    ]
                    assert [e.seq for e in seen] == list(range(seen[0].seq, seen[0].seq + 102))

                    # the slow one read nothing: it keeps what fitted its buffer, then Lagged
                    got = [await anext(slow) for _ in range(4)]
                    assert got == seen[:4]
                    with pytest.raises(Lagged) as caught:
                        await anext(slow)
                    assert (caught.value.seq, caught.value.buffer) == (seen[3].seq, 4)

                    # everyone else is served all along
                    assert await other.ping() == __version__
                    await other.unit("late").register()
                    assert (await anext(events)).unit == "late"
                    await settle(watcher)
                    assert (await server.statistics()).watchers == 1  # the slow one's stream ended
                await settle(watcher)
                assert (await server.statistics()).watchers == 0


class _GatedWatcher(S.Watcher.Server):  # type: ignore[name-defined,misc]
    """A raw watcher that does not read: each ``event`` call waits at ``gate`` (a client whose
    process is stuck), so the server's stream to it backs up."""

    def __init__(
        self, gate: asyncio.Future[None], received: list[object], ended: asyncio.Future[None]
    ) -> None:
        self._gate = gate
        self._received = received
        self._ended = ended

    async def event(self, event: Any, _context: Any, **kwargs: Any) -> None:
        seq, reason = int(event.seq), str(event.reason)
        await asyncio.shield(self._gate)
        self._received.append(seq if seq else reason)
        if not seq and not self._ended.done():
            self._ended.set_result(None)


async def stuck_raw_watcher(
    server: LocalCoordinator, path: Path, n: int
) -> tuple[int, list[object]]:
    """Subscribe a :class:`_GatedWatcher` over plain pycapnp, publish ``n`` events (paced by a
    ``connect()`` watcher that reads them all and must not be cut off), check the stuck watcher
    was cut off while everyone else was served, then let it read. Returns the first event's seq
    and what the stuck watcher received: event seqs, then the end's reason text."""

    async def subscribe(state: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        state["gate"], state["ended"] = loop.create_future(), loop.create_future()
        state["received"] = []
        watcher = _GatedWatcher(state["gate"], state["received"], state["ended"])
        state["subscription"] = (await state["coord"].watch(watcher)).subscription

    async def open_gate_and_collect(state: dict[str, Any]) -> list[object]:
        state["gate"].set_result(None)
        await state["ended"]
        return list(state["received"])

    async with raw_client(path) as run, connect(path) as other:
        with trio.fail_after(WAIT):
            await run(subscribe)
            async with other.watch(buffer=n + 16) as fast:
                first = (await server.statistics()).events + 1
                chunk = 256  # paced by the reader that keeps up: its server queue stays short
                for start in range(0, n, chunk):
                    for i in range(start, start + chunk):
                        await server.unit(f"u{i}").register()
                    got = [(await anext(fast)).seq for _ in range(chunk)]
                    assert got == list(range(first + start, first + start + chunk))
                # the server's readers have handed every event to its KJ thread; a round trip
                # through that thread comes after them, and after the cut-off they cause
                await trio.testing.wait_all_tasks_blocked()
                await settle(other)
                assert (await server.statistics()).watchers == 1  # only `fast` is left
                assert await other.ping() == __version__
            return first, await run(open_gate_and_collect)


async def test_server_cuts_off_a_remote_watcher_that_stops_reading(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """The server queues at most REMOTE_WATCH_BUFFER events for a remote watcher: one that does
    not read (its ``event`` calls never return) is cut off with ``unitsync.lagged`` while the
    coordinator goes on serving everyone else, and the watchers that keep up get everything."""
    # it is cut off with about REMOTE_WATCH_BUFFER + 1 events (1,025) in: 3 buffers' worth leave
    # a buffer's worth of margin below the bound asserted
    n = 3 * REMOTE_WATCH_BUFFER
    async with serving(server, sock_dir / "unitsync.sock") as path:
        first, received = await stuck_raw_watcher(server, path, n)
    *seqs, end = received
    print(f"\nthe stuck watcher got {len(seqs)} of {n} events, then: {str(end).splitlines()[0]!r}")
    # what the stuck watcher got: a prefix of the stream, in order, then the end
    assert seqs == list(range(first, first + len(seqs)))
    assert len(seqs) < n - REMOTE_WATCH_BUFFER
    assert isinstance(end, str) and end.startswith("unitsync.lagged: ")
    error = error_from_wire(end)
    assert error is not None and error.code == Lagged.code


async def test_remote_lagged_names_the_last_event_the_watcher_was_given(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """``Lagged.seq`` is "the sequence number of the last event it was given". The server's
    cut-off empties its queue (up to 1024 events never sent) but reports the last event it
    *queued*: a wire client that resumes after ``seq`` silently misses the dropped events."""
    async with serving(server, sock_dir / "unitsync.sock") as path:
        _, received = await stuck_raw_watcher(server, path, 2 * REMOTE_WATCH_BUFFER)
    *seqs, end = received
    found = re.search(r"after event (\d+)", str(end))
    assert found is not None, end
    assert int(found.group(1)) == seqs[-1]


async def test_server_cut_off_reaches_a_connect_watcher_as_lagged(
    server: LocalCoordinator, sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``connect()`` watcher whose process stalls (here: its KJ thread blocks in the first
    ``event`` call) is cut off by the server. Its iterator must raise ``Lagged`` — the
    coordinator is fine. The server sends the reason's first line only (no ``unitsync-data``
    line), ``error_from_wire`` cannot rebuild ``Lagged`` from it, and ``RemoteCoordinator.watch``
    turns anything else into ``CoordinatorClosed``."""
    release = threading.Event()
    original = _client._Watcher.event

    async def stalled(self: Any, event: Any, _context: Any, **kwargs: Any) -> None:
        release.wait(WAIT)  # the whole client connection stalls, as in a stopped process
        await original(self, event, _context, **kwargs)

    monkeypatch.setattr(_client._Watcher, "event", stalled)
    n = 2 * REMOTE_WATCH_BUFFER
    async with serving(server, sock_dir / "unitsync.sock") as path:
        async with connect(path) as stuck, connect(path) as other:
            try:
                with trio.fail_after(WAIT):
                    async with stuck.watch(buffer=n + 16) as events:
                        for i in range(n):
                            await server.unit(f"u{i}").register()
                        await trio.testing.wait_all_tasks_blocked()
                        await settle(other)  # as in stuck_raw_watcher: after the cut-off
                        assert (await server.statistics()).watchers == 0
                        assert await other.ping() == __version__
                        release.set()
                        got: list[int] = []
                        ended: UnitsyncError | None = None
                        try:
                            async for event in events:
                                got.append(event.seq)
                        except (Lagged, CoordinatorClosed) as exc:
                            ended = exc
            finally:
                release.set()
    assert got and isinstance(ended, Lagged), (got, repr(ended))
    assert ended.seq == got[-1]


# --- 8. leases ------------------------------------------------------------------------------


class _Abandon(Exception):
    pass


async def test_lease_abandoned_fails_unit_and_wakes_dependents(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    async with serving(server, sock_dir / "unitsync.sock") as path:
        async with connect(path) as holder, connect(path) as waiter:
            with trio.fail_after(WAIT):
                await waiter.unit("claude").want("git")
                results: list[object] = []
                async with trio.open_nursery() as nursery:
                    await nursery.start(park, waiter.unit("claude"), results)
                    with pytest.raises(_Abandon):
                        async with holder.unit("git").hold():
                            assert (await server.unit("git").info()).status is Status.STARTED
                            raise _Abandon
                # the parked dependent was answered, without anyone calling anything
                (error,) = results
                assert isinstance(error, DependencyFailed)
                assert (error.unit, error.reason, error.path) == (
                    "git", HOLDER_GONE, ("claude", "git"),
                )
                git = await server.unit("git").info()
                assert (git.status, git.reason) == (Status.FAILED, HOLDER_GONE)

                # a cancelled holder counts as gone too
                with trio.CancelScope() as scope:
                    async with holder.unit("git").hold():
                        scope.cancel()
                        await trio.sleep_forever()
                results.clear()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(park, waiter.unit("claude"), results)
                (error,) = results
                assert isinstance(error, DependencyFailed) and error.reason == HOLDER_GONE


async def test_lease_completed_through_it_completes(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    async with serving(server, sock_dir / "unitsync.sock") as path:
        async with connect(path) as holder, connect(path) as waiter:
            with trio.fail_after(WAIT):
                await waiter.unit("claude").want("git")
                results: list[object] = []
                async with trio.open_nursery() as nursery:
                    await nursery.start(park, waiter.unit("claude"), results)
                    async with holder.unit("git").hold() as lease:
                        await lease.complete()
                        assert lease.released
                (info,) = results
                assert isinstance(info, UnitInfo) and info.ready
                # dropping the lease after complete() changes nothing (the drop travels on the
                # holder's connection: a round trip on it comes after)
                await settle(holder, "git")
                git = await server.unit("git").info()
                assert (git.status, git.reason) == (Status.COMPLETED, "")

                # and fail() through the lease is the holder's reason, not "holder disconnected"
                async with holder.unit("git").hold() as lease:
                    await lease.fail("tests failed")
                await settle(holder, "git")
                git = await server.unit("git").info()
                assert (git.status, git.reason) == (Status.FAILED, "tests failed")


async def test_lease_of_killed_client_process_fails_unit(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    async with serving(server, sock_dir / "unitsync.sock") as path:
        await server.unit("claude").want("git")
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                process = await start_client(nursery, "hold.py", str(path), "git")
                assert await Lines(process.stdout).next() == "held"
                assert (await server.unit("git").info()).status is Status.STARTED
                async with connect(path) as waiter:
                    results: list[object] = []
                    async with trio.open_nursery() as waiting:
                        await waiting.start(park, waiter.unit("claude"), results)
                        process.send_signal(signal.SIGKILL)
            (error,) = results
            assert isinstance(error, DependencyFailed)
            assert (error.unit, error.reason) == ("git", HOLDER_GONE)
            assert (await server.unit("git").info()).reason == HOLDER_GONE


# --- 9. the socket file ---------------------------------------------------------------------


async def test_second_serve_on_live_socket_raises_address_in_use(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    path = sock_dir / "unitsync" / "unitsync.sock"
    with trio.fail_after(WAIT):
        async with serving(server, path) as bound:
            assert bound == path
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
            assert stat.S_IMODE(os.lstat(path.parent).st_mode) == 0o700
            inode = os.lstat(path).st_ino
            async with open_coordinator() as other, trio.open_nursery() as nursery:
                with pytest.raises(AddressInUse) as caught:
                    await nursery.start(serve, other, path)
            assert caught.value.path == str(path)
            # the live server keeps its socket and answers
            assert os.lstat(path).st_ino == inode
            async with connect(path) as client:
                assert await client.ping() == __version__
        assert not os.path.lexists(path)  # removed on the way out


async def test_stale_socket_file_is_replaced(server: LocalCoordinator, sock_dir: Path) -> None:
    path = sock_dir / "unitsync.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays; nothing listens (a server that was killed)
    os.chmod(path, 0o644)
    with trio.fail_after(WAIT):
        async with serving(server, path):
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600  # ours, not the stale one
            async with connect(path) as client:
                assert await client.ping() == __version__
        assert not os.path.lexists(path)


async def test_serve_refuses_to_replace_a_file_that_is_not_a_socket(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    path = sock_dir / "unitsync.sock"
    path.write_text("precious")
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            with pytest.raises(UnitsyncError, match="not a socket"):
                await nursery.start(serve, server, path)
    assert path.read_text() == "precious"


# --- 10. nothing there ----------------------------------------------------------------------


async def test_connect_to_missing_socket_is_unreachable(sock_dir: Path) -> None:
    path = sock_dir / "missing.sock"
    with trio.fail_after(WAIT):
        with pytest.raises(CoordinatorUnreachable) as caught:
            async with connect(path):
                pytest.fail("connected to nothing")
    assert caught.value.path == str(path)


async def test_connect_to_stale_socket_is_unreachable(sock_dir: Path) -> None:
    path = sock_dir / "unitsync.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with trio.fail_after(WAIT):
        with pytest.raises(CoordinatorUnreachable):
            async with connect(path):
                pytest.fail("connected to nothing")


def test_connect_retries_while_the_listen_backlog_is_full(sock_dir: Path) -> None:
    """A Unix connect to a full backlog fails with EAGAIN at once; connect_socket retries until
    there is room (here: the listener accepts one connection a moment later), or times out."""
    path = sock_dir / "full.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    queued: list[socket.socket] = []
    try:
        listener.bind(str(path))
        listener.listen(0)
        while True:  # fill the backlog
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            try:
                client.connect(str(path))
            except BlockingIOError:
                client.close()
                break
            queued.append(client)
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            connect_socket(path, timeout=0.2)
        # gave up after its own 0.2 s, not the default 5 s (generous: a loaded runner may be slow)
        assert 0.15 <= time.monotonic() - began < 4.0

        room = threading.Timer(0.05, lambda: listener.accept()[0].close())
        room.start()
        try:
            connect_socket(path, timeout=WAIT).close()
        finally:
            room.join(WAIT)
    finally:
        for client in queued:
            client.close()
        listener.close()


@pytest.mark.parametrize("gives_up", ["before the start applies", "after the start applied"])
async def test_a_hold_given_up_before_its_lease_exists_fails_the_unit(
    server: LocalCoordinator, gives_up: str
) -> None:
    """The window churn found: the start takes effect, the caller gives up before the Lease
    capability exists — nobody holds the unit, so it must fail as a dropped lease does."""
    from coordinator.rpc._unit_server import _PendingHold

    with trio.fail_after(WAIT):
        answers: list[object] = []
        pending = _PendingHold(server, "git", False)
        pending.start(answers.append)
        if gives_up == "after the start applied":
            await trio.testing.wait_all_tasks_blocked()
            assert len(answers) == 1 and (await server.unit("git").info()).status is Status.STARTED
        pending.abandon()
        await settle(server, "git")
        info = await server.unit("git").info()
        assert (info.status, info.reason) == (Status.FAILED, "holder disconnected")


async def test_a_hold_that_completes_normally_stays_started(server: LocalCoordinator) -> None:
    from coordinator.rpc._unit_server import _PendingHold

    with trio.fail_after(WAIT):
        answers: list[object] = []
        _PendingHold(server, "git", False).start(answers.append)
        await settle(server, "git")
        assert len(answers) == 1
        assert (await server.unit("git").info()).status is Status.STARTED


async def test_published_info_never_answers_ahead_of_a_pipelined_change(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """``info`` is answered on the KJ thread from the actor's published snapshot — except when
    an earlier call of the same capability is still in Trio (E-order), or a change reached the
    unit (or a dependency's state was posted to it) since the snapshot. Each round primes the
    snapshot, then pipelines a change and reads on the same capabilities without waiting."""
    with trio.fail_after(WAIT):
        async with serving(server, sock_dir / "s.sock") as path, raw_client(path) as run:

            async def rounds(state: dict[str, Any]) -> list[tuple[str, ...]]:
                coord = state["coord"]
                git, claude = coord.unit("git").unit, coord.unit("claude").unit
                await claude.want(["git"], "completed")
                seen = []
                for _ in range(20):
                    await git.info(), await claude.info()  # prime both snapshots
                    started, git_info = git.start(), git.info()  # pipelined
                    await started
                    done = git.complete()
                    await done  # returned: claude's snapshot must not show git started
                    claude_info = (await claude.info()).info
                    seen.append((str((await git_info).info.status),
                                 str(claude_info.dependencies[0].current), str(claude_info.ready)))
                return seen

            seen = await run(rounds)
    assert seen == [("started", "completed", "True")] * 20


async def test_limits_refuse_with_overloaded_and_change_nothing(sock_dir: Path) -> None:
    """ServerLimits and max_units: one more connection, parked waiter or unit than allowed
    gets ``unitsync.overloaded`` (a clear error), and the coordinator carries on."""
    from coordinator.rpc._server import ServerLimits

    limits = ServerLimits(max_connections=2, max_waiters_per_connection=2)
    with trio.fail_after(WAIT * 2):
        async with open_coordinator(max_units=5) as coord, trio.open_nursery() as nursery:
            path = await nursery.start(functools.partial(serve, coord, sock_dir / "s.sock",
                                                         limits=limits))
            async with connect(path) as first:
                async with connect(path) as second:
                    # a third connection is over the limit: every call says why, the first
                    # (the client's hello) included, so connecting fails
                    with pytest.raises(Overloaded, match="too many connections"):
                        async with connect(path):
                            pass
                    assert await second.ping() == __version__
                # units: 5 at most, and a refused want changes nothing
                await first.unit("a").want("b", "c")
                with pytest.raises(Overloaded, match="limit of 5"):
                    await first.unit("d").want("e", "f")
                assert [u.name for u in await first.list()] == ["a"]
                assert (await first.unit("d").info()).status is Status.NOT_REGISTERED
                await first.unit("d").want("e")  # exactly at the limit
                with pytest.raises(Overloaded):
                    await first.unit("f").start()
                # waiters: 2 parked per connection; the third is refused, others unaffected
                async with raw_client(path) as run:

                    async def park_two_then_a_third(state: dict[str, Any]) -> str:
                        coord = state["coord"]
                        a, d = coord.unit("a").unit, coord.unit("d").unit
                        state["parked"] = [a.ready(), d.ready()]
                        await a.info(), await d.info()  # E-order: both ready calls started
                        try:
                            await coord.unit("a").unit.ready()
                        except capnp.KjException as exc:
                            return str(exc)
                        return "not refused"

                    refusal = await run(park_two_then_a_third)
                    assert "unitsync.overloaded" in refusal, refusal
                    assert "already wait on this connection" in refusal
                    assert (await coord.statistics()).ready_waiters == 2
                    with trio.fail_after(WAIT):  # another connection may still wait
                        async with trio.open_nursery() as waiting:
                            waiting.start_soon(first.unit("a").ready)
                            await first.unit("b").start()
                            await first.unit("b").complete()
                            await first.unit("c").start()
                            await first.unit("c").complete()
                nursery.cancel_scope.cancel()


# --- hold(wait=true), revision 4 ------------------------------------------------------------


async def test_a_hold_that_waits_is_parked_until_ready_then_holds_in_the_coordinator(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """As a client in another language sends it: ``hold(resume=false, wait=true)`` is parked
    (a waiter), the unit stays pending; the dependency's completion answers it with a Lease,
    the unit started by then; dropping that lease fails it as any hold's does."""

    async def send(state: dict[str, Any]) -> UnitInfo:
        claude = state["coord"].unit("claude").unit
        state["hold"] = claude.hold(False, True)
        return read_info((await claude.info()).info)  # E-order: answered once it is parked

    async def held(state: dict[str, Any]) -> None:
        state["lease"] = (await state.pop("hold")).lease

    async def drop(state: dict[str, Any]) -> None:
        state.pop("lease")

    with trio.fail_after(WAIT):
        await server.unit("claude").want("git")
        async with serving(server, sock_dir / "s.sock") as path, raw_client(path) as run:
            info = await run(send)
            assert (info.status, info.ready) == (Status.PENDING, False)
            assert (await server.statistics()).ready_waiters == 1
            await server.unit("git").start()
            await server.unit("git").complete()
            await run(held)
            assert (await server.unit("claude").info()).status is Status.STARTED
            assert (await server.statistics()).ready_waiters == 0
            await run(drop)
            await server.unit("claude").reached(Status.FINISHED)
            info = await server.unit("claude").info()
            assert (info.status, info.reason) == (Status.FAILED, HOLDER_GONE)


async def test_a_hold_that_waits_is_refused_when_blocked_and_never_starts_the_unit(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    async def send(state: dict[str, Any]) -> None:
        claude = state["coord"].unit("claude").unit
        state["hold"] = claude.hold(False, True)
        await claude.info()

    async def answer(state: dict[str, Any]) -> str:
        try:
            await state.pop("hold")
        except capnp.KjException as error:
            return str(error)
        return "held"

    with trio.fail_after(WAIT):
        await server.unit("claude").want("git")
        async with serving(server, sock_dir / "s.sock") as path, raw_client(path) as run:
            await run(send)
            await server.unit("git").start()
            await server.unit("git").fail("clone failed")
            assert "unitsync.dependency-failed: " in await run(answer)
            info = await server.unit("claude").info()
            assert (info.status, info.blocked_by) == (Status.PENDING, "git")


async def test_a_hold_that_waits_and_is_given_up_leaves_the_unit_as_it_was(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """The caller goes (its connection closes) while the hold waits: the waiter goes with it,
    and the dependency's completion later does not start the unit."""

    async def send(state: dict[str, Any]) -> None:
        claude = state["coord"].unit("claude").unit
        state["hold"] = claude.hold(False, True)
        await claude.info()

    with trio.fail_after(WAIT):
        await server.unit("claude").want("git")
        async with serving(server, sock_dir / "s.sock") as path:
            async with raw_client(path) as run:
                await run(send)
                assert (await server.statistics()).ready_waiters == 1
            await until(server, lambda s: s.ready_waiters == 0)
            await server.unit("git").start()
            await server.unit("git").complete()
            await settle(server, "claude")
            info = await server.unit("claude").info()
            assert (info.status, info.ready) == (Status.PENDING, True)


async def test_a_hold_cannot_both_resume_and_wait(server: LocalCoordinator, sock_dir: Path) -> None:
    async def send(state: dict[str, Any]) -> str:
        try:
            await state["coord"].unit("claude").unit.hold(True, True)
        except capnp.KjException as error:
            return str(error)
        return "held"

    with trio.fail_after(WAIT):
        async with serving(server, sock_dir / "s.sock") as path, raw_client(path) as run:
            assert "unitsync.invalid-argument: " in await run(send)
        assert (await server.unit("claude").info()).status is Status.NOT_REGISTERED


@pytest.mark.parametrize("revision", [4, 3])
async def test_the_cli_client_holds_when_ready_with_the_coordinator_or_on_its_own(
    server: LocalCoordinator, sock_dir: Path, revision: int
) -> None:
    """``AsyncioClient.hold(wait=True)`` (``up``'s start): parked in the coordinator (4), or,
    with a coordinator of revision 3, ``ready`` then ``hold`` from the client."""
    from coordinator.rpc import run_client

    async def body(core: Any) -> Status:
        core.revision = min(core.revision, revision)
        await core.hold("claude", wait=True)
        return (await core.info("claude")).status

    with trio.fail_after(WAIT):
        await server.unit("claude").want("git")
        async with serving(server, sock_dir / "s.sock") as path, trio.open_nursery() as nursery:
            statuses: list[Status] = []

            async def client() -> None:
                statuses.append(await trio.to_thread.run_sync(run_client, path, body))

            nursery.start_soon(client)
            await until(server, lambda s: s.ready_waiters == 1)
            assert (await server.unit("claude").info()).status is Status.PENDING
            await server.unit("git").start()
            await server.unit("git").complete()
        assert statuses == [Status.STARTED]


async def test_a_hold_that_waits_is_refused_not_ready_by_an_edge_added_meanwhile_and_waits_again(
    server: LocalCoordinator,
) -> None:
    """Between the ``ready`` answered and the hold reaching the unit, an edge is added: the
    hold is refused NotReady, and the waiting hold parks again instead of answering that."""
    from coordinator import _operations as operations
    from coordinator.rpc._unit_server import _PendingHold

    class EdgeBeforeTheHold:
        """The coordinator, with a ``want`` of claude on "late" sent just before the second
        submission (the first is the ``ready``, the second the hold)."""

        def __init__(self) -> None:
            self.submitted = 0

        def submit(self, operation: Any, on_answer: Any) -> Any:
            self.submitted += 1
            if self.submitted == 2:
                server.submit(operations.want("claude", ["late"], Status.COMPLETED), lambda _: None)
            return server.submit(operation, on_answer)

    with trio.fail_after(WAIT):
        await server.unit("claude").want("git")
        await server.unit("late").register()
        coord = EdgeBeforeTheHold()
        answers: list[Any] = []
        _PendingHold(coord, "claude", False, wait=True).start(answers.append)  # type: ignore[arg-type]
        await server.unit("git").start()
        await server.unit("git").complete()
        await settle(server, "claude")
        assert answers == [] and coord.submitted == 3  # ready, hold (refused), ready again
        assert (await server.unit("claude").info()).status is Status.PENDING
        await server.unit("late").start()
        await server.unit("late").complete()
        await settle(server, "claude")
        assert len(answers) == 1 and isinstance(answers[0].unwrap(), int)
        assert (await server.unit("claude").info()).status is Status.STARTED

"""The readiness probes of ``unitsync run``, against real local listeners, a real HTTP server
on 127.0.0.1 and real processes (the probes run on asyncio, as the command line does)."""

from __future__ import annotations

import asyncio
import http.server
import io
import socket
import threading
from collections.abc import Iterator

import pytest

from cli._probes import (
    LINE_LIMIT,
    CommandProbe,
    HttpProbe,
    TcpProbe,
    parse_address,
    parse_regex,
    parse_url,
    pass_through,
    poll_until_ready,
)

#: Bound on every wait here (each finishes in milliseconds when correct).
WAIT = 5.0


def run(coroutine: object) -> object:
    async def bounded() -> object:
        async with asyncio.timeout(WAIT):
            return await coroutine  # type: ignore[misc]

    return asyncio.run(bounded())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(("text", "parsed"), [
    ("127.0.0.1:5432", ("127.0.0.1", 5432)),
    ("localhost:80", ("localhost", 80)),
    ("[::1]:8080", ("::1", 8080)),
])
def test_addresses(text: str, parsed: tuple[str, int]) -> None:
    assert parse_address(text) == parsed


@pytest.mark.parametrize("text", ["5432", ":5432", "host:", "host:0", "host:65536", "h:p"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="use HOST:PORT"):
        parse_address(text)


def test_urls_and_regexes() -> None:
    assert parse_url("http://127.0.0.1:8000/health") == "http://127.0.0.1:8000/health"
    for bad in ("ftp://x/", "http://", "127.0.0.1:80", "http://h:99999/"):
        with pytest.raises(ValueError, match="invalid URL"):
            parse_url(bad)
    assert parse_regex("ready on http").search(b"server ready on http://x")
    with pytest.raises(ValueError, match="invalid regular expression 'a\\(': "):
        parse_regex("a(")


def test_tcp_probe_passes_once_a_listener_accepts() -> None:
    port = free_port()
    probe = TcpProbe("127.0.0.1", port)
    assert run(probe.check(1.0)) is False  # nobody listens yet
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert run(probe.check(1.0)) is True


def test_polling_returns_once_the_service_comes_up() -> None:
    port = free_port()
    listener = socket.socket()

    async def scenario() -> int:
        attempts = 0
        probe = TcpProbe("127.0.0.1", port)

        async def counting(timeout: float) -> bool:
            nonlocal attempts
            attempts += 1
            if attempts == 3:  # the service comes up between the 2nd and 3rd attempt
                listener.bind(("127.0.0.1", port))
                listener.listen()
            return await TcpProbe.check(probe, timeout)

        object.__setattr__(probe, "check", counting)
        await poll_until_ready(probe, 0.01)
        return attempts

    try:
        assert run(scenario()) == 3
    finally:
        listener.close()


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        code = {"/ok": 200, "/moved": 302, "/down": 503}.get(self.path, 404)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def test_http_probe_wants_a_2xx(http_server: str) -> None:
    assert run(HttpProbe(f"{http_server}/ok").check(1.0)) is True
    assert run(HttpProbe(f"{http_server}/moved").check(1.0)) is True  # redirected to /ok
    assert run(HttpProbe(f"{http_server}/down").check(1.0)) is False
    assert run(HttpProbe(f"{http_server}/missing").check(1.0)) is False
    assert run(HttpProbe(f"http://127.0.0.1:{free_port()}/").check(1.0)) is False  # refused


def test_command_probe_wants_exit_0() -> None:
    assert run(CommandProbe("test 1 = 1").check(1.0)) is True
    assert run(CommandProbe("exit 3").check(1.0)) is False
    assert run(CommandProbe("sleep 30").check(0.05)) is False  # killed past its time


def test_output_passes_through_unchanged_while_lines_are_seen() -> None:
    async def scenario() -> tuple[bytes, list[bytes]]:
        source = asyncio.StreamReader()
        sink = io.BytesIO()
        lines: list[bytes] = []
        copying = asyncio.ensure_future(pass_through(source, sink, lines.append))
        for chunk in (b"starting\nlist", b"ening on :80", b"\nready on http\n", b"no newline"):
            source.feed_data(chunk)
            await asyncio.sleep(0)
        source.feed_eof()
        await copying
        return sink.getvalue(), lines

    output, lines = run(scenario())  # type: ignore[misc]
    assert output == b"starting\nlistening on :80\nready on http\nno newline"
    assert lines == [b"starting", b"listening on :80", b"ready on http", b"no newline"]


def test_a_line_without_end_is_matched_on_its_start_and_bounded() -> None:
    async def scenario() -> list[int]:
        source = asyncio.StreamReader()
        seen: list[int] = []
        copying = asyncio.ensure_future(
            pass_through(source, io.BytesIO(), lambda line: seen.append(len(line)))
        )
        for _ in range(10):
            source.feed_data(b"x" * LINE_LIMIT)
            await asyncio.sleep(0)
        source.feed_data(b"\nshort\n")
        source.feed_eof()
        await copying
        return seen

    assert run(scenario()) == [LINE_LIMIT, 5]


def test_a_closed_sink_does_not_stop_the_reading() -> None:
    class Gone(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise BrokenPipeError

    async def scenario() -> list[bytes]:
        source = asyncio.StreamReader()
        lines: list[bytes] = []
        source.feed_data(b"a\nready\n")
        source.feed_eof()
        await pass_through(source, Gone(), lines.append)
        return lines

    assert run(scenario()) == [b"a", b"ready"]

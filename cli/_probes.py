"""Readiness probes for ``unitsync run``: is the service CMD started up yet?

A probe asks the service, never the coordinator: a TCP connect, an HTTP GET, a shell command
(each tried every ``--ready-interval``), or a line of CMD's output matching a regular
expression (seen as it passes through). Runs on the command line's asyncio loop; standard
library only (``urllib`` for HTTP, in a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "LINE_LIMIT",
    "CommandProbe",
    "Copy",
    "HttpProbe",
    "LogProbe",
    "Probe",
    "TcpProbe",
    "parse_address",
    "parse_regex",
    "parse_url",
    "pass_through",
    "poll_until_ready",
]

#: Longest line a log probe matches against, in bytes: a longer one is matched on its start
#: (output without newlines must not grow a buffer without bound).
LINE_LIMIT = 64 * 1024


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:5432`` for IPv6): ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address {text!r}: use HOST:PORT, e.g. 127.0.0.1:5432")
    return host, int(port)


def parse_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host: ValueError otherwise."""
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {text!r}: use http://HOST[:PORT]/PATH or https://...")
    return text


def parse_regex(text: str) -> re.Pattern[bytes]:
    """A regular expression to search CMD's output lines for: ValueError if it does not
    compile. Matched against the raw bytes of each line (UTF-8 for the pattern)."""
    try:
        return re.compile(text.encode())
    except re.error as exc:
        raise ValueError(f"invalid regular expression {text!r}: {exc}") from None


@dataclass(frozen=True)
class TcpProbe:
    """Ready once a TCP connection to ``host:port`` is accepted."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"tcp {self.host}:{self.port}"

    async def check(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True


@dataclass(frozen=True)
class HttpProbe:
    """Ready once a GET of ``url`` answers 2xx (redirects followed)."""

    url: str

    def __str__(self) -> str:
        return f"http {self.url}"

    async def check(self, timeout: float) -> bool:
        return await asyncio.to_thread(self._get, timeout)

    def _get(self, timeout: float) -> bool:
        import urllib.error  # here: urllib.request and what it imports (ssl, http, email)
        import urllib.request  # cost ``up`` ~8 ms of its startup, for units that poll HTTP

        request = urllib.request.Request(self.url, headers={"User-Agent": "unitsync-probe"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False  # HTTPError (4xx, 5xx) is a URLError


@dataclass(frozen=True)
class CommandProbe:
    """Ready once ``sh -c COMMAND`` exits 0 (its output is discarded; killed past the
    attempt's timeout)."""

    command: str

    def __str__(self) -> str:
        return f"command {self.command!r}"

    async def check(self, timeout: float) -> bool:
        process = await asyncio.create_subprocess_shell(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(timeout):
                return await process.wait() == 0
        except TimeoutError:
            return False
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


@dataclass(frozen=True)
class LogProbe:
    """Ready once a line of CMD's stdout or stderr matches ``pattern`` (see
    :func:`pass_through`, which sees the lines)."""

    pattern: re.Pattern[bytes]

    def __str__(self) -> str:
        return f"log {self.pattern.pattern.decode(errors='replace')!r}"


Probe = TcpProbe | HttpProbe | CommandProbe | LogProbe


async def poll_until_ready(probe: TcpProbe | HttpProbe | CommandProbe, interval: float) -> None:
    """Return once ``probe`` passes: tried at once, then every ``interval`` seconds (one
    attempt may take up to ``max(interval, 1 s)``). The caller bounds the whole wait."""
    attempt_timeout = max(interval, 1.0)
    while not await probe.check(attempt_timeout):
        await asyncio.sleep(interval)


async def pass_through(
    source: asyncio.StreamReader, sink: BinaryIO, on_line: Callable[[bytes], object] | None
) -> None:
    """Copy ``source`` to ``sink`` unchanged, as it arrives (a partial line is not held back),
    until EOF; ``on_line(line)`` sees each complete line (without its newline; at most
    :data:`LINE_LIMIT` bytes of it) and the last, unterminated one at EOF. A sink that is
    gone (a closed pipe) stops the copying, not the reading: CMD must never block on it."""
    copy = Copy(sink, on_line)
    while chunk := await source.read(65536):
        copy.feed(chunk)
    copy.end()


class Copy:
    """What :func:`pass_through` does with each chunk it reads, for any reader: write it to
    ``sink`` (until the sink is gone), and hand complete lines to ``on_line``."""

    def __init__(self, sink: BinaryIO, on_line: Callable[[bytes], object] | None) -> None:
        self._sink, self._on_line = sink, on_line
        self._partial = b""
        self._writing = True

    def feed(self, chunk: bytes) -> None:
        if self._writing:
            try:
                self._sink.write(chunk)
                self._sink.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._writing = False
        if self._on_line is None:
            return
        *lines, rest = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._on_line(line[:LINE_LIMIT])
        self._partial = rest[:LINE_LIMIT]

    def end(self) -> None:
        """EOF: the last, unterminated line to ``on_line``."""
        if self._on_line is not None and self._partial:
            self._on_line(self._partial)

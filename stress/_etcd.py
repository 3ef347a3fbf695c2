"""Real etcd processes on loopback: a single node or a cluster of N members, each the ``etcd``
binary (Debian's ``etcd-server``) on free ports with its data directory under a given base.

The one copy, used by the stress scenarios (``stress shared``) and by the tests
(``tests/etcd_support.py`` wraps it in fixtures). Without the binary, :func:`start_cluster`
raises :class:`NoEtcd` (the tests turn it into a skip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
import trio

__all__ = ["ETCD", "NO_ETCD", "EtcdCluster", "EtcdMember", "NoEtcd", "start_cluster",
           "store_url", "unused_ports"]

ETCD = shutil.which("etcd")
NO_ETCD: Final = "no etcd binary: `apt-get install etcd-server` (.ci/run installs it)"
#: seconds for a fresh member or cluster to answer /health (about 0.1 s alone, 1 s for three)
START_WAIT: Final = 15.0


class NoEtcd(RuntimeError):
    """The ``etcd`` binary is not on PATH."""


def unused_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free a moment ago (bound together, then released)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@dataclass
class EtcdMember:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    initial_cluster: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: More of etcd's flags (``--quota-backend-bytes``, say).
    flags: tuple[str, ...] = ()

    @property
    def log(self) -> Path:
        return self.data_dir.with_suffix(".log")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (or start again, on its data directory)."""
        assert ETCD is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
                    "--listen-client-urls", self.client_url,
                    "--advertise-client-urls", self.client_url,
                    "--listen-peer-urls", self.peer_url,
                    "--initial-advertise-peer-urls", self.peer_url,
                    "--initial-cluster", self.initial_cluster,
                    "--initial-cluster-state", "new",
                    "--logger", "zap", "--log-level", "warn", *self.flags,
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )

    def kill(self) -> None:
        """SIGKILL and reap (a frozen member too)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=START_WAIT)

    def freeze(self) -> None:
        """SIGSTOP: its sockets stay open and silent (a half-open peer, as a partition makes)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@dataclass
class EtcdCluster:
    members: list[EtcdMember]

    @property
    def endpoints(self) -> list[str]:
        return [member.client_url for member in self.members]

    def member(self, endpoint: str | None) -> EtcdMember:
        return next(member for member in self.members if member.client_url == endpoint)

    async def wait_healthy(self) -> None:
        """Until every running member knows the same leader. (Not /health: it blocks 1 s when
        asked before the first election, which made a start take 2 s instead of 0.3.)"""
        async with httpx.AsyncClient(trust_env=False, timeout=1.0) as http:
            while True:
                leaders = set()
                for member in self.members:
                    if member.process is not None and member.process.poll() is not None:
                        tail = member.log.read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"etcd {member.name} exited: {tail}")
                    try:
                        answer = await http.post(f"{member.client_url}/v3/maintenance/status", json={})
                        leaders.add(answer.json().get("leader", "0"))
                    except (httpx.HTTPError, ValueError):
                        leaders.add("0")
                if len(leaders) == 1 and "0" not in leaders:
                    return
                await trio.sleep(0.02)

    async def leader(self) -> EtcdMember:
        """The running member that is the Raft leader now."""
        statuses = {}
        async with httpx.AsyncClient(trust_env=False, timeout=1.0) as http:
            for member in self.members:
                if member.running:
                    answer = await http.post(f"{member.client_url}/v3/maintenance/status", json={})
                    statuses[member.name] = answer.json()
        leaders = {status.get("leader") for status in statuses.values()}
        for member in self.members:
            status = statuses.get(member.name)
            if status is not None and status["header"]["member_id"] in leaders:
                return member
        raise AssertionError(f"no leader among {statuses}")

    async def healthy(self) -> None:
        """:meth:`wait_healthy`, at most :data:`START_WAIT` seconds."""
        with trio.fail_after(START_WAIT):
            await self.wait_healthy()

    def revive(self) -> None:
        """Killed members started again (on their data), frozen ones thawed; until healthy.
        Blocking (``trio.run``): not from inside a Trio run."""
        for member in self.members:
            if member.running:
                member.thaw()
            else:
                member.start()
        trio.run(EtcdCluster.healthy, self)

    def stop(self) -> None:
        for member in self.members:
            member.kill()


def store_url(cluster: EtcdCluster, workspace: str) -> str:
    """``etcd://HOST:PORT,.../WORKSPACE`` for ``serve --store``, every member listed."""
    hosts = ",".join(e.removeprefix("http://") for e in cluster.endpoints)
    return f"etcd://{hosts}/{workspace}"


def new_cluster(base: Path, size: int, flags: tuple[str, ...] = ()) -> EtcdCluster:
    """``size`` members on free ports under ``base``, not started (each with ``flags``)."""
    if ETCD is None:
        raise NoEtcd(NO_ETCD)
    ports = unused_ports(2 * size)
    names = [f"m{i}" for i in range(size)]
    peers = [f"http://127.0.0.1:{ports[2 * i + 1]}" for i in range(size)]
    initial = ",".join(f"{name}={peer}" for name, peer in zip(names, peers, strict=True))
    return EtcdCluster([
        EtcdMember(name, f"http://127.0.0.1:{ports[2 * i]}", peers[i], base / name, initial,
                   flags=flags)
        for i, name in enumerate(names)
    ])


@contextlib.contextmanager
def start_cluster(
    base: Path, size: int, flags: tuple[str, ...] = ()
) -> Iterator[EtcdCluster]:
    """``size`` fresh members on free ports under ``base``, healthy; killed and reaped at exit.
    Blocking (``trio.run`` for the health wait): enter it outside a Trio run, or use
    :func:`open_cluster` inside one."""
    cluster = new_cluster(base, size, flags)
    try:
        for member in cluster.members:
            member.start()
        trio.run(EtcdCluster.healthy, cluster)
        yield cluster
    finally:
        cluster.stop()


@contextlib.asynccontextmanager
async def open_cluster(base: Path, size: int):  # type: ignore[no-untyped-def]
    """:func:`start_cluster` from inside a Trio run."""
    cluster = new_cluster(base, size)
    try:
        for member in cluster.members:
            member.start()
        await cluster.healthy()
        yield cluster
    finally:
        cluster.stop()

"""Real etcd processes for the tests: a single node and a 3-member cluster on loopback.

``etcd_node`` (one per test module and xdist worker: tests use key prefixes of their own) and
``etcd_cluster`` (one per module too, revived after each test, which may kill or freeze its
members) yield an :class:`EtcdCluster`.
Each member runs the ``etcd`` binary on free loopback ports with a data directory under
pytest's ``tmp_path``; it is killed (SIGKILL) and reaped when the fixture ends, whatever
happened. Without the binary the tests skip, saying how to get it. Sync fixtures (pytest-trio's
async fixtures are function-scoped); their waits run in ``trio.run`` under ``fail_after``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio

from coordinator.store._etcd import EtcdClient
from coordinator.store._etcd_state import Layout

__all__ = ["ETCD", "EtcdCluster", "EtcdMember", "etcd", "etcd_cluster", "etcd_cluster_shared",
           "etcd_node", "layout", "requires_etcd", "start_cluster", "unused_ports"]

ETCD = shutil.which("etcd")
requires_etcd = pytest.mark.skipif(
    ETCD is None,
    reason="no etcd binary: `apt-get install etcd-server` (.ci/run installs it)",
)
#: seconds for a fresh member or cluster to answer /health (about 0.1 s alone, 1 s for three)
START_WAIT = 15.0


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

    @property
    def log(self) -> Path:
        return self.data_dir.with_suffix(".log")

    def start(self) -> None:
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
                    "--logger", "zap", "--log-level", "warn",
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
                if member.process is not None and member.process.poll() is None:
                    answer = await http.post(f"{member.client_url}/v3/maintenance/status", json={})
                    statuses[member.name] = answer.json()
        leaders = {status.get("leader") for status in statuses.values()}
        for member in self.members:
            status = statuses.get(member.name)
            if status is not None and status["header"]["member_id"] in leaders:
                return member
        raise AssertionError(f"no leader among {statuses}")

    def revive(self) -> None:
        for member in self.members:
            if member.process is not None and member.process.poll() is None:
                member.thaw()
            else:
                member.start()
        trio.run(_healthy, self)

    def stop(self) -> None:
        for member in self.members:
            member.kill()


async def _healthy(cluster: EtcdCluster) -> None:
    with trio.fail_after(START_WAIT):
        await cluster.wait_healthy()


@contextlib.contextmanager
def start_cluster(base: Path, size: int) -> Iterator[EtcdCluster]:
    """``size`` fresh members on free ports under ``base``, healthy; killed and reaped at exit."""
    if ETCD is None:
        pytest.skip("no etcd binary: `apt-get install etcd-server` (.ci/run installs it)")
    ports = unused_ports(2 * size)
    names = [f"m{i}" for i in range(size)]
    peers = [f"http://127.0.0.1:{ports[2 * i + 1]}" for i in range(size)]
    initial = ",".join(f"{name}={peer}" for name, peer in zip(names, peers, strict=True))
    cluster = EtcdCluster([
        EtcdMember(name, f"http://127.0.0.1:{ports[2 * i]}", peers[i], base / name, initial)
        for i, name in enumerate(names)
    ])
    try:
        for member in cluster.members:
            member.start()
        trio.run(_healthy, cluster)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def etcd_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member, shared by a module's tests (each uses keys of its own)."""
    with start_cluster(tmp_path_factory.mktemp("etcd"), 1) as cluster:
        yield cluster


@pytest.fixture
async def etcd(etcd_node: EtcdCluster) -> AsyncIterator[EtcdClient]:
    """A client of the module's node."""
    async with EtcdClient(etcd_node.endpoints) as client:
        yield client


@pytest.fixture
def layout() -> Layout:
    """A workspace of this test's own on the shared node."""
    return Layout(f"test-{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def etcd_cluster_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """Three etcd members for a module (a fresh cluster takes 1-2 s: etcd's first election
    waits a randomised 1-2 election timeouts); tests get it through ``etcd_cluster``."""
    with start_cluster(tmp_path_factory.mktemp("etcd3"), 3) as cluster:
        yield cluster


@pytest.fixture
def etcd_cluster(etcd_cluster_shared: EtcdCluster) -> Iterator[EtcdCluster]:
    """The module's 3-member cluster, which the test may kill or freeze members of: after
    it, killed members are started again (on their data), frozen ones thawed, and the three
    agree on a leader before the next test."""
    yield etcd_cluster_shared
    etcd_cluster_shared.revive()

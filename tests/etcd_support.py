"""Real etcd processes for the tests: a single node and a 3-member cluster on loopback.

``etcd_node`` (one per test module and xdist worker: tests use key prefixes of their own) and
``etcd_cluster`` (one per module too, revived after each test, which may kill or freeze its
members) yield an :class:`EtcdCluster`.
The processes are ``stress/_etcd.py``'s (the one copy, shared with ``python -m stress
shared``): each member runs the ``etcd`` binary on free loopback ports with a data directory
under pytest's ``tmp_path``; it is killed (SIGKILL) and reaped when the fixture ends, whatever
happened. Without the binary the tests skip, saying how to get it. Sync fixtures (pytest-trio's
async fixtures are function-scoped); their waits run in ``trio.run`` under ``fail_after``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from coordinator.store._etcd import EtcdClient
from coordinator.store._etcd_state import Layout
from stress._etcd import (
    ETCD,
    NO_ETCD,
    EtcdCluster,
    EtcdMember,
    unused_ports,
)
from stress._etcd import start_cluster as _start_cluster

__all__ = ["ETCD", "EtcdCluster", "EtcdMember", "etcd", "etcd_cluster", "etcd_cluster_shared",
           "etcd_node", "layout", "requires_etcd", "start_cluster", "unused_ports"]

requires_etcd = pytest.mark.skipif(ETCD is None, reason=NO_ETCD)


@contextlib.contextmanager
def start_cluster(base: Path, size: int, flags: tuple[str, ...] = ()) -> Iterator[EtcdCluster]:
    """``size`` fresh members on free ports under ``base`` (with etcd's ``flags``), healthy;
    killed and reaped at exit (:func:`stress._etcd.start_cluster`); a skip without the
    binary."""
    if ETCD is None:
        pytest.skip(NO_ETCD)
    with _start_cluster(base, size, flags) as cluster:
        yield cluster


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

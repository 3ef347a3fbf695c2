"""A coordinator on a 3-member etcd must survive the leader's death (two members keep a quorum,
and a new leader refreshes every lease: expiry is late, never early), and when it does lose its
membership, ``serve`` must say why. Both found by ``python -m stress shared --churn``: in 1 of
about 25 runs killing the leader once, and in 3 of 14 runs killing it 3 times, a ``serve
--store`` stopped 1-2 s after a leader's kill, saying only ``unitsync: cannot serve: Exceptions
from Trio nursery (1 sub-exception)``.

The first (at ``f5a8fba``): ``Membership._keep_alive`` (``coordinator/store/_etcd_lease.py``)
declared the lease lost when no refresh succeeded for longer than its TTL *by this process's
clock*; during a leader change the keepalives time out at the live members too, two failed
attempts 1.7 s apart plus their timeouts passed the 5 s TTL, and the coordinator stopped with
``StoreLost`` ("no lease refresh succeeded for 5.4 s, more than its 5 s TTL: the store has
expired it") although the new leader, elected within ~1 s, had renewed the lease for a full
TTL. Since ``9d4db27`` a lease is lost only when the store says so (slow test below). The
second (until ``70371e1``): ``cli/_serve.py``'s ``except*`` printed each exception of the group
it caught, and the ``StoreLost`` was one level down, inside the coordinator's nursery's group:
the message users got was the group's, not the reason.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import httpx
import pytest
import trio

from coordinator import open_coordinator

from .cli_support import env_for, read_all, reap, start_serve
from .etcd_support import requires_etcd, start_cluster

pytestmark = requires_etcd
KILLS = 10
DOWN = 2.0  # seconds each leader stays dead: well under the lease's 5 s TTL
WAIT = 30.0


@pytest.mark.slow
def test_two_coordinators_outlive_ten_leader_deaths(tmp_path: Path) -> None:
    """At f5a8fba one of them stopped with StoreLost in 2 of 3 tries (once within 4 kills)."""
    with start_cluster(tmp_path, 3) as cluster:
        hosts = ",".join(e.removeprefix("http://") for e in cluster.endpoints)
        url = f"etcd://{hosts}/ws-{uuid.uuid4().hex[:8]}"
        survived: list[int] = []

        async def body() -> None:
            async with open_coordinator(store=url) as a, open_coordinator(store=url) as b:
                for kill in range(KILLS):
                    with trio.fail_after(WAIT):
                        leader = await cluster.leader()
                        leader.kill()
                        await trio.sleep(DOWN)  # the outage's length: an external clock
                        leader.start()
                        await cluster.healthy()
                        for coord in (a, b):  # both still serve, and write
                            await coord.unit(f"k{kill}.{id(coord)}").start()
                    survived.append(kill)

        trio.run(body)
        assert survived == list(range(KILLS))


def test_a_serve_that_lost_its_membership_says_why(tmp_path: Path) -> None:
    """Its lease revoked in the store (as an operator, or an expiry, would end it): serve
    stops (rightly), and says why."""
    (tmp_path / "etcd").mkdir()
    with start_cluster(tmp_path / "etcd", 1) as cluster:
        endpoint = cluster.endpoints[0]
        url = f"etcd://{endpoint.removeprefix('http://')}/ws"
        path = tmp_path / "m" / "unitsync.sock"
        path.parent.mkdir(mode=0o700)
        said: list[str] = []

        async def body() -> None:
            with trio.fail_after(WAIT):
                serve = await start_serve(path, env_for(path), "--store", url)
                try:
                    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
                        leases = (await http.post(f"{endpoint}/v3/lease/leases", json={})).json()
                        assert len(leases["leases"]) == 1, leases  # the serve's membership
                        for lease in leases["leases"]:
                            await http.post(f"{endpoint}/v3/lease/revoke", json={"ID": lease["ID"]})
                    said.append(await read_all(serve.stderr))  # its next refresh: lease gone
                    assert await serve.wait() != 0
                finally:
                    if serve.returncode is None:
                        serve.send_signal(signal.SIGTERM)
                    await reap(serve)

        trio.run(body)
        (stderr,) = said
        # at f5a8fba: "unitsync: cannot serve: Exceptions from Trio nursery (1 sub-exception)"
        assert "lost its membership in the store" in stderr, stderr

"""``list()`` and ``graph()`` of any size: the coordinator lists a page at a time, and the
Python client reads pages (of ``PAGE_UNITS`` units, and ~4 MiB at most) and renders the DOT
itself, so no reply passes Cap'n Proto's 8 MiB message limit (before: more than ~50,000
units failed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from coordinator import LocalCoordinator, Status, connect, open_coordinator
from coordinator.rpc import _client, _server

from .waits import WAIT
from .rpc_support import raw_client, serving

NAMES = [f"u{i:02d}" for i in range(20)]


async def build(coord: LocalCoordinator) -> None:
    """20 registered units, each wanting the next two (the last ones want ``ghost-*``, which
    are only mentioned: they have actors, but are not listed), one failed."""
    for i, name in enumerate(NAMES):
        deps = [NAMES[j] if j < len(NAMES) else f"ghost-{j}" for j in (i + 1, i + 2)]
        await coord.unit(name).want(*deps)
    await coord.unit("u07").fail("boom " * 50)  # allowed from pending
    await coord.unit("zz-only-read").info()  # no actor needed: not a unit at all


async def test_a_page_is_the_names_after_after_at_most_limit(server: LocalCoordinator) -> None:
    with trio.fail_after(WAIT):
        await build(server)
        everything = await server.list()
        assert [u.name for u in everything] == NAMES
        for limit in (1, 3, 7, 20, 100):
            pages, after = [], ""
            while page := await server.list(after=after, limit=limit):
                assert len(page) <= limit
                pages.extend(page)
                after = page[-1].name
            assert pages == everything
        assert [u.name for u in await server.list(after="u17")] == ["u18", "u19"]
        assert await server.list(after="u19", limit=5) == []


async def test_the_client_reads_every_page_and_renders_the_same_graph(
    server: LocalCoordinator, sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 3 units, and a byte budget that cuts them shorter still: the remote list and
    graph equal the local ones, and the pages really were small."""
    monkeypatch.setattr(_client, "PAGE_UNITS", 3)
    monkeypatch.setattr(_server, "PAGE_BYTES", 600)  # u07's long reason alone passes it
    pages: list[int] = []
    fitting = _server._fitting

    def counting(infos: list[Any], budget: int) -> int:
        pages.append(kept := fitting(infos, budget))
        return kept

    monkeypatch.setattr(_server, "_fitting", counting)
    with trio.fail_after(WAIT):
        await build(server)
        async with serving(server, sock_dir / "s.sock") as path, connect(path) as remote:
            assert await remote.list() == await server.list()
            assert await remote.graph() == await server.graph()
    assert sum(pages) == 2 * len(NAMES) and max(pages) <= 3 and min(pages) >= 1
    assert len(pages) > 2 * len(NAMES) / 3  # the byte budget cut some pages short


async def test_the_wire_contract_without_arguments_is_everything_at_once(
    server: LocalCoordinator, sock_dir: Path
) -> None:
    """A client of another language that sends no arguments gets every unit in one reply
    (``more`` false), as the contract began; with a limit, ``more`` says whether any remain."""
    with trio.fail_after(WAIT):
        await build(server)
        async with serving(server, sock_dir / "s.sock") as path, raw_client(path) as run:

            async def listing(state: dict[str, Any]) -> list[tuple[list[str], bool]]:
                coord = state["coord"]
                calls = [coord.list(), coord.list("u15", 4), coord.list("u15", 3),
                         coord.list("u18", 0)]
                results = [await call for call in calls]
                return [([u.name for u in r.units], r.more) for r in results]

            assert await run(listing) == [
                (NAMES, False),
                (["u16", "u17", "u18", "u19"], False),
                (["u16", "u17", "u18"], True),
                (["u19"], False),
            ]


@pytest.mark.slow
async def test_sixty_thousand_units_over_rpc(sock_dir: Path) -> None:
    """Past the old single-message limit (~50,000 units with an edge each)."""
    count = 60_000
    with trio.fail_after(300):
        async with open_coordinator(max_units=2 * count) as coord:
            for i in range(count):
                await coord.unit(f"unit-{i:06d}").want(f"unit-{i + 1:06d}")
            async with serving(coord, sock_dir / "s.sock") as path, connect(path) as remote:
                units = await remote.list()
                assert len(units) == count
                assert units[-1].dependencies[0].current is Status.NOT_REGISTERED
                dot = await remote.graph()
                assert dot.count(" -> ") == count

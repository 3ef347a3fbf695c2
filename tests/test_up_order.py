"""The order of ``up``'s launches: critical path first (``cli/_up_run.py``, ``DeepestFirst``)."""

from __future__ import annotations

import asyncio
import signal
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli._workspace import load_workspace
from cli._inprocess import InProcessCoordinator
from cli._up_run import DeepestFirst, Up, chain_heights
from cli._workspace import Workspace
from coordinator.rpc import run_client

from .waits import WAIT


def test_chain_heights_count_the_longest_chain_of_units_that_need_each(tmp_path: Path) -> None:
    path = tmp_path / "unitsync.toml"
    path.write_text(textwrap.dedent("""\
        [units.a]
        [units.b]
        after = ["a"]
        [units.c]
        after = ["b"]
        [units.d]
        after = ["a", "c"]
        [units.e]
        [units.f]
        after = ["e"]
    """))
    workspace = load_workspace(path)
    assert chain_heights(workspace, list(workspace.units)) == {
        "a": 3, "b": 2, "c": 1, "d": 0, "e": 1, "f": 0,
    }
    # only the selected units count: without d, c needs nothing below it
    assert chain_heights(workspace, ["a", "b", "c"]) == {"a": 2, "b": 1, "c": 0}


def test_chain_heights_of_a_chain_longer_than_the_recursion_limit(tmp_path: Path) -> None:
    path = tmp_path / "unitsync.toml"
    units = 3000
    path.write_text("".join(
        f"[units.u{i}]\n" + (f'after = ["u{i - 1}"]\n' if i else "") for i in range(units)
    ))
    workspace = load_workspace(path)
    heights = chain_heights(workspace, list(workspace.units))
    assert heights["u0"] == units - 1
    assert heights[f"u{units - 1}"] == 0


def test_launches_released_in_one_turn_go_deepest_first_then_in_arrival_order() -> None:
    async def main() -> list[str]:
        order = DeepestFirst()
        went: list[str] = []

        async def launch(name: str, height: int) -> None:
            await order.turn(height)
            went.append(name)

        tasks = [asyncio.ensure_future(launch(n, h))
                 for n, h in (("x", 1), ("y", 3), ("z", 0), ("w", 3), ("gone", 5))]
        await asyncio.sleep(0)  # every task waits for its turn
        tasks[-1].cancel()  # stopping: its turn is skipped, the others still go
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert tasks[-1].cancelled()
        return went

    assert asyncio.run(main()) == ["y", "w", "x", "z"]



def run_up(
    sock_dir: Path, workspace: Workspace,
    calling: Callable[[Up, str, str, str], None] = lambda up, method, unit, what: None,
) -> tuple[int, Up]:
    """A real ``up`` (in this process, on asyncio) of every unit of ``workspace`` against a
    real coordinator on a real socket (the library in a thread, as ``up``'s own), its client's
    ``hold`` and ``info`` calls told to ``calling(up, method, unit, "sent" / "answered")`` as
    they go and come back; its exit code and the ``Up``."""
    runs: list[Up] = []

    async def body(core: Any) -> int:
        for method in ("hold", "info"):
            real = getattr(core, method)

            async def recorded(unit: str, *args: object, _real: Any = real,
                               _method: str = method, **kwargs: object) -> object:
                calling(runs[0], _method, unit, "sent")
                result = await _real(unit, *args, **kwargs)
                calling(runs[0], _method, unit, "answered")
                return result

            setattr(core, method, recorded)
        runs.append(Up(core, workspace, list(workspace.units), None, False, 1.0))
        return await asyncio.wait_for(runs[0].run(), WAIT)

    local = InProcessCoordinator(sock_dir / "unitsync.sock")
    local.start()
    try:
        code = run_client(local.path, body)
    finally:
        local.stop()
    return code, runs[0]


def test_the_longest_chains_sources_are_held_before_any_other_call(
    tmp_path: Path, sock_dir: Path
) -> None:
    """At the start, ``up`` sends the holds of the sources at the head of the longest chains
    alone, and every other call (the other sources' holds, the parked holds and infos of the
    units with dependencies) only once those are answered: the coordinator answers a batch of
    holds together, so the critical path would otherwise wait for all of them."""
    path = tmp_path / "unitsync.toml"
    path.write_text(textwrap.dedent("""\
        [units.deep]
        run = ["true"]
        [units.deep2]
        run = ["true"]
        [units.middle]
        run = ["true"]
        after = ["deep", "deep2"]
        [units.leaf]
        run = ["true"]
        after = ["middle"]
        [units.short]
        run = ["true"]
        [units.after-short]
        run = ["true"]
        after = ["short"]
        [units.alone]
        run = ["true"]
    """))
    workspace = load_workspace(path)
    calls: list[tuple[str, str, str]] = []
    code, _ = run_up(sock_dir, workspace, lambda up, *call: calls.append(call))
    assert code == 0
    sent = [unit for _, unit, what in calls if what == "sent"]
    assert sorted(sent[:2]) == ["deep", "deep2"]  # the two sources of the longest chain
    first_other = next(i for i, (_, unit, what) in enumerate(calls)
                       if what == "sent" and unit not in ("deep", "deep2"))
    answered = {unit for _, unit, what in calls[:first_other] if what == "answered"}
    assert answered == {"deep", "deep2"}, calls[:first_other + 1]
    assert set(sent) == set(workspace.units)


def test_a_stop_at_the_start_sends_no_more_calls(tmp_path: Path, sock_dir: Path) -> None:
    """SIGTERM while the first holds are in flight: the units not asked for yet stay "not
    started", no call goes out for them, and up ends (exit 1: not every unit completed)."""
    path = tmp_path / "unitsync.toml"
    path.write_text(textwrap.dedent("""\
        [units.deep]
        run = ["true"]
        [units.middle]
        run = ["true"]
        after = ["deep"]
        [units.short]
        run = ["true"]
        [units.another]
        run = ["true"]
    """))
    workspace = load_workspace(path)
    sent: list[str] = []

    def calling(up: Up, method: str, unit: str, what: str) -> None:
        if what == "sent":
            sent.append(unit)
            if len(sent) == 1:  # as the signal handler would, mid-flight
                up._signalled(signal.SIGTERM)

    code, up = run_up(sock_dir, workspace, calling)
    assert code == 1
    assert sent == ["deep"]
    assert up.outcomes["short"].status == "not started"

"""The order of ``up``'s launches: critical path first (``cli/_up.py``, ``DeepestFirst``)."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from cli._check import load_workspace
from cli._up import DeepestFirst, chain_heights


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

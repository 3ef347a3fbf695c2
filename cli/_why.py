"""``unitsync why UNIT``: what UNIT is waiting for, down to the root causes."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cyclopts import Parameter

from coordinator import validate_name

from ._connect import call
from ._options import Common

if TYPE_CHECKING:
    from coordinator import UnitInfo
    from coordinator.rpc import AsyncioClient

__all__ = ["why"]


def why(
    unit: str,
    /,
    *,
    output: Annotated[Literal["text", "json"], Parameter(name=["--output", "-o"])] = "text",
    common: Common = Common(),
) -> int:
    """Show why UNIT is not ready: each unmet requirement, and what that dependency waits for in
    turn, down to the root causes (a failed unit and its reason, a unit nobody has started, a
    unit still running, a name nobody registered).

    Text: one line per chain, `claude pending <- git started <- ssh-key failed: no key`; a unit
    reached by several chains is followed once (`(see above)`). JSON: the tree, each node with
    `unit_name`, `status`, `reason`, `is_ready`, `required_status` (below the top) and
    `waiting_for` (its unmet requirements).

    Parameters
    ----------
    unit
        Any unit name.
    output
        text or json.
    """
    validate_name(unit)

    async def body(core: AsyncioClient) -> None:
        infos = await _unmet_closure(core, unit)
        if output == "json":
            print(json.dumps(_tree(infos, unit, None, set()), indent=2, ensure_ascii=False))
        else:
            print(_text(infos, unit))

    return call(common, body)


async def _unmet_closure(core: AsyncioClient, unit: str) -> dict[str, UnitInfo]:
    """The info of ``unit`` and of every unit reached from it through unmet requirements,
    asked a level at a time (each level's questions together)."""
    infos: dict[str, UnitInfo] = {}
    level = [unit]
    while level:
        for info in await asyncio.gather(*(core.info(name) for name in level)):
            infos[info.name] = info
        level = sorted({
            d.depends_on for name in level for d in infos[name].dependencies
            if not d.satisfied and d.depends_on not in infos
        })
    return infos


def _unmet(info: UnitInfo) -> list[Any]:
    return [d for d in info.dependencies if not d.satisfied]


def _state(info: UnitInfo) -> str:
    """``git started``, ``ssh-key failed: no key``."""
    text = f"{info.name} {info.status.label}"
    return f"{text}: {info.reason}" if info.reason else text


def _text(infos: dict[str, UnitInfo], unit: str) -> str:
    top = infos[unit]
    if not _unmet(top):
        return (f'Unit "{unit}" is not waiting for anything (it is {top.status.label}'
                f'{", ready" if top.ready else ""})')
    lines: list[str] = []
    shown: set[str] = set()

    def walk(chain: list[str], info: UnitInfo) -> None:
        chain = [*chain, _state(info)]
        unmet = _unmet(info)
        if not unmet:
            lines.append(" <- ".join(chain))
            return
        if info.name in shown:
            lines.append(" <- ".join(chain) + " (see above)")
            return
        shown.add(info.name)
        for dependency in unmet:
            walk(chain, infos[dependency.depends_on])

    walk([], top)
    return "\n".join(lines)


def _tree(
    infos: dict[str, UnitInfo], unit: str, required: str | None, shown: set[str]
) -> dict[str, Any]:
    info = infos[unit]
    node: dict[str, Any] = {
        "unit_name": info.name,
        "status": info.status.value,
        "reason": info.reason,
        "is_ready": info.ready,
    }
    if required is not None:
        node["required_status"] = required
    if info.name in shown and _unmet(info):  # followed once; here only its name and state
        node["waiting_for"] = []
        node["see_above"] = True
        return node
    shown.add(info.name)
    node["waiting_for"] = [
        _tree(infos, d.depends_on, d.required.value, shown) for d in _unmet(info)
    ]
    return node

"""``unitsync why UNIT``: what UNIT is waiting for, down to the root causes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cyclopts import Parameter

from coordinator import validate_name

from ._connect import call
from ._history import last_changes
from ._duration import format_duration
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

    Each unit shows how long it has been in its status (from the kept history: `serve
    --history`). Text: one line per chain, `claude pending 2m <- git started 1m30s <- ssh-key
    failed 1m30s: no key`; a unit reached by several chains is followed once (`(see above)`).
    JSON: the tree, each node with `unit_name`, `status`, `reason`, `is_ready`,
    `in_status_for` (seconds, null if unknown), `required_status` (below the top) and
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
        changed = await last_changes(core, list(infos)) if core.revision >= 3 else {}
        now = time.time()
        since = {name: now - moment for name, moment in changed.items()}
        if output == "json":
            tree = _tree(infos, since, unit, None, set())
            print(json.dumps(tree, indent=2, ensure_ascii=False))
        else:
            print(_text(infos, since, unit))

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


def _state(info: UnitInfo, since: dict[str, float]) -> str:
    """``git started 1m30s``, ``ssh-key failed 12.5s: no key`` (how long: if known)."""
    text = f"{info.name} {info.status.label}"
    if info.name in since:
        seconds = since[info.name]  # 12.5s, 1m30s, 1h2m
        text += f" {format_duration(round(seconds, 1) if seconds < 60 else round(seconds))}"
    return f"{text}: {info.reason}" if info.reason else text


def _text(infos: dict[str, UnitInfo], since: dict[str, float], unit: str) -> str:
    top = infos[unit]
    if not _unmet(top):
        return (f'Unit "{unit}" is not waiting for anything (it is {top.status.label}'
                f'{", ready" if top.ready else ""})')
    lines: list[str] = []
    shown: set[str] = set()

    def walk(chain: list[str], info: UnitInfo) -> None:
        chain = [*chain, _state(info, since)]
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
    infos: dict[str, UnitInfo], since: dict[str, float], unit: str, required: str | None,
    shown: set[str],
) -> dict[str, Any]:
    info = infos[unit]
    seconds = since.get(unit)
    node: dict[str, Any] = {
        "unit_name": info.name,
        "status": info.status.value,
        "reason": info.reason,
        "is_ready": info.ready,
        "in_status_for": None if seconds is None else round(seconds, 3),
    }
    if required is not None:
        node["required_status"] = required
    if info.name in shown and _unmet(info):  # followed once; here only its name and state
        node["waiting_for"] = []
        node["see_above"] = True
        return node
    shown.add(info.name)
    node["waiting_for"] = [
        _tree(infos, since, d.depends_on, d.required.value, shown) for d in _unmet(info)
    ]
    return node

"""The workspace file, ``unitsync.toml``: units, their order and their commands, as a model.

``load(path)`` reads and checks the file and returns a :class:`Workspace`, or raises
:class:`WorkspaceError` listing every problem found (each as ``FILE:LINE: message``). Pure: no
coordinator, no Trio, no capnp — ``check`` validates a file with it, and ``apply``/``up`` turn
the model into ``want`` calls and ``run``s. For a command, ``load_workspace(-f FILE)`` finds
the file and turns the problems into one CommandError with the exit code (2, or 5 for cycles).
The per-unit keys and their checks are in ``_workspace_units.py``; where a key was written, in
``_toml_lines.py``.

Edges, resolved (:meth:`Workspace.edges`): a unit's ``after`` entries, in order, groups
expanded (``@setup``) with the entry's ``requires`` or else the unit's own; then the units whose
``before`` names it, in file order, with the requirement of the ``before`` entry if it is a
table or else the *dependent's* own ``requires`` (a unit decides what it waits for, whoever
declared the edge); then the units that say ``before = ["*"]``, which come before every unit
that does not say so itself — with the same default, and yielding to an edge declared
explicitly for the same pair. One edge declared twice with different requirements is an error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from coordinator import CycleError, Status

from ._connect import CYCLE, USAGE, CommandError
from ._toml_lines import KeyLines
from ._workspace_units import (
    ReadySpec,
    Reference,
    Report,
    UnitSpec,
    did_you_mean,
    read_groups,
    read_unit,
)

__all__ = [
    "EVERY_UNIT",
    "WORKSPACE_FILE",
    "Edge",
    "Problem",
    "ReadySpec",
    "Reference",
    "UnitSpec",
    "Workspace",
    "WorkspaceError",
    "find_cycles",
    "load",
    "load_workspace",
    "parse",
    "workspace_path",
]

#: The file ``check``, ``apply`` and ``up`` read in the current directory unless ``-f FILE``.
WORKSPACE_FILE = "unitsync.toml"

#: ``before = ["*"]``: before every other unit (coder's "run before everything").
EVERY_UNIT = "*"

_TOP_KEYS = ("units", "groups")


class Edge(NamedTuple):
    """``unit`` depends on ``depends_on`` reaching ``requires`` (the shape of the graph's
    ``edges()``: a plain ``(unit, dependency, requirement)`` compares equal)."""

    unit: str
    depends_on: str
    requires: Status


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a workspace file: ``FILE:LINE: message`` (``FILE: message`` when no
    line is known). ``cycle`` is the whole cycle, first and last equal, when it is one."""

    file: str
    line: int | None
    message: str
    cycle: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class WorkspaceError(Exception):
    """A workspace file that cannot be used, with every problem found in it (not just the
    first): ``problems``, in the order of their lines, cycles last."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (bool(p.cycle), p.line or 0)))
        super().__init__("\n".join(map(str, self.problems)))

    @property
    def only_cycles(self) -> bool:
        """Whether every problem is a dependency cycle (``check`` exits 5 then, 2 otherwise)."""
        return all(problem.cycle for problem in self.problems)


@dataclass(frozen=True, slots=True)
class Workspace:
    """A checked workspace file: ``units`` by name in file order, ``groups`` by name (without
    the ``@``) with their members in the order given."""

    path: Path
    units: Mapping[str, UnitSpec]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def edges(self) -> list[Edge]:
        """Every edge, resolved (see the module's docstring for the order and requirements):
        units in file order, each unit's dependencies in the order they were declared."""
        return _Resolver(self.units, self.groups, _ignore).edges()

    def requirements(self) -> list[tuple[str, dict[str, Status]]]:
        """``(unit, {dependency: requirement})`` for every unit in file order, those without
        dependencies included (``{}``): what ``apply`` registers, one ``want`` per unit."""
        table: dict[str, dict[str, Status]] = {name: {} for name in self.units}
        for unit, dependency, requires in self.edges():
            table[unit][dependency] = requires
        return list(table.items())


def load(path: str | os.PathLike[str]) -> Workspace:
    """Read and check the workspace file at ``path``: :class:`WorkspaceError` with every
    problem, a file that cannot be read included. Messages name the file as ``path`` gives it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = Problem(str(path), None, f"cannot read it: {exc.strerror or exc}")
        raise WorkspaceError([problem]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkspaceError([Problem(str(path), None, f"not UTF-8 text: {exc}")]) from None
    return parse(text, path)


def workspace_path(file: Path | None) -> Path:
    """``file``, else ``unitsync.toml`` in the current directory: :class:`CommandError` (exit 2)
    if that is missing, saying where it looked."""
    if file is not None:
        return file
    path = Path(WORKSPACE_FILE)
    if not path.exists():
        raise CommandError(f"no {WORKSPACE_FILE} in {Path.cwd()} (use -f FILE)", USAGE)
    return path


def load_workspace(file: Path | None) -> Workspace:
    """The checked workspace of ``-f FILE`` (see :func:`workspace_path`). A file with problems
    is :class:`CommandError` naming each of them, one per line, with the exit code: 5 if all
    are cycles, else 2."""
    try:
        return load(workspace_path(file))
    except WorkspaceError as error:
        code = CYCLE if error.only_cycles else USAGE
        raise CommandError("\n".join(map(str, error.problems)), code) from None


def parse(text: str, path: str | os.PathLike[str] = WORKSPACE_FILE) -> Workspace:
    """:func:`load` of ``text`` as if read from ``path`` (which is not opened): relative
    ``cwd`` values are taken from ``path``'s directory."""
    path = Path(path)
    shown = str(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceError([_invalid_toml(shown, str(exc), text)]) from None
    lines = KeyLines(text)
    problems: list[Problem] = []

    def report(message: str, *where: str) -> None:
        problems.append(Problem(shown, lines.line(*where) if where else None, message))

    for key in document:
        if key not in _TOP_KEYS:
            report(f'unknown key "{key}"{did_you_mean(key, _TOP_KEYS)}: a workspace file '
                   "has [units.NAME] tables and [groups]", key)
    raw_units = document.get("units", {})
    if not isinstance(raw_units, dict):
        report('"units" must be a table of [units.NAME] tables', "units")
        raw_units = {}
    elif not raw_units:
        report("no units: declare at least one [units.NAME] table")
    units = {name: read_unit(name, table, path.parent, lines.line("units", name), report)
             for name, table in raw_units.items()}
    groups = read_groups(document.get("groups", {}), units, report)
    edges = _Resolver(units, groups, report).edges()
    for cycle in find_cycles(units, edges):
        problems.append(Problem(shown, units[cycle[0]].line, str(CycleError(cycle)), cycle))
    if problems:
        raise WorkspaceError(problems)
    return Workspace(path, MappingProxyType(units), MappingProxyType(groups))


def _invalid_toml(shown: str, message: str, text: str) -> Problem:
    """tomllib's message, its ``(at line N, column M)`` made into our ``FILE:N:`` form."""
    head, _, where = message.rpartition(" (at ")
    if not head:
        return Problem(shown, None, f"invalid TOML: {message}")
    where = where.rstrip(")")
    if where == "end of document":
        return Problem(shown, max(text.count("\n") + (not text.endswith("\n")), 1),
                       f"invalid TOML: {head} (at the end of the file)")
    line, _, column = where.removeprefix("line ").partition(", column ")
    if not line.isdigit():
        return Problem(shown, None, f"invalid TOML: {message}")
    return Problem(shown, int(line), f"invalid TOML: {head} (column {column})")


def _ignore(message: str, *where: str) -> None:
    """A report that drops its message: a loaded workspace resolves without problems."""


class _Resolver:
    """The edges of the units' ``after`` and ``before`` keys, groups and ``*`` expanded,
    duplicates merged; unknown names and conflicting requirements reported."""

    def __init__(self, units: Mapping[str, UnitSpec], groups: Mapping[str, Sequence[str]],
                 report: Report) -> None:
        self._units = units
        self._groups = groups
        self._report = report
        # unit -> {dependency: (requirement, the unit whose key declared it, that key)}
        self._found: dict[str, dict[str, tuple[Status, str, str]]] = {name: {} for name in units}

    def edges(self) -> list[Edge]:
        """Resolve every unit's keys once (see the module docstring for the order)."""
        for spec in self._units.values():
            for ref in spec.after:
                for dependency in self._expand(ref, spec, "after"):
                    self._add(spec.name, dependency, ref.requires or spec.requires,
                              spec.name, "after")
        everything: dict[str, Reference] = {}  # unit -> its before "*" entry
        for spec in self._units.values():
            for ref in spec.before:
                if ref.name == EVERY_UNIT:
                    everything.setdefault(spec.name, ref)
                    continue
                for dependent in self._expand(ref, spec, "before"):
                    requires = ref.requires or self._units[dependent].requires
                    self._add(dependent, spec.name, requires, spec.name, "before")
        for first, ref in everything.items():
            for dependent in self._units.values():
                if dependent.name not in everything and first not in self._found[dependent.name]:
                    self._add(dependent.name, first, ref.requires or dependent.requires,
                              first, 'before "*"')
        return [Edge(unit, dependency, requires)
                for unit, found in self._found.items()
                for dependency, (requires, _, _) in found.items()]

    def _expand(self, ref: Reference, spec: UnitSpec, key: str) -> list[str]:
        """The units ``ref`` names (a group's members), or [] after reporting an unknown one."""
        where = ("units", spec.name, key)
        if ref.name == EVERY_UNIT:
            self._report(f'unit "{spec.name}": {key}: "*" (every other unit) is only allowed '
                         "in before", *where)
            return []
        if ref.name.startswith("@"):
            group = ref.name[1:]
            if group in self._groups:
                return list(self._groups[group])
            self._report(f'unit "{spec.name}": {key}: unknown group "{ref.name}"'
                         f"{did_you_mean(group, self._groups)}", *where)
            return []
        if ref.name in self._units:
            return [ref.name]
        self._report(f'unit "{spec.name}": {key}: unknown unit "{ref.name}"'
                     f"{did_you_mean(ref.name, self._units)}", *where)
        return []

    def _add(self, unit: str, dependency: str, requires: Status, declared_by: str,
             key: str) -> None:
        """Add ``unit -> dependency``, declared in ``declared_by``'s ``key``; the same edge
        declared again must carry the same requirement."""
        found = self._found[unit]
        if dependency not in found:
            found[dependency] = (requires, declared_by, key)
            return
        first, first_by, first_key = found[dependency]
        if first is not requires:
            self._report(
                f"conflicting requirements for one edge: {unit} -> {dependency} is "
                f'"{first.value}" in {first_by}\'s {first_key} and "{requires.value}" in '
                f"{declared_by}'s {key}",
                "units", declared_by, key.split()[0],
            )


def find_cycles(units: Sequence[str] | Mapping[str, Any], edges: Iterable[Edge]
                ) -> list[tuple[str, ...]]:
    """The dependency cycles among ``edges``, each whole (``("a", "b", "a")``: a depends on b,
    which depends on a) and starting at its unit that comes first in ``units``. A plain
    depth-first search: each back edge closes a cycle; one through a unit already in a reported
    cycle is not reported again, so a tangle of cycles is reported once, not many times."""
    order = {name: index for index, name in enumerate(units)}
    adjacency: dict[str, list[str]] = {name: [] for name in order}
    for unit, dependency, _ in edges:
        adjacency.setdefault(unit, []).append(dependency)
    done: set[str] = set()
    reported: set[str] = set()
    cycles: list[tuple[str, ...]] = []
    for root, dependencies in adjacency.items():
        if root in done:
            continue
        path = [root]
        position = {root: 0}
        pending = [iter(dependencies)]
        while pending:
            for nxt in pending[-1]:
                if nxt in position:  # on the path: a back edge
                    if nxt not in reported:
                        cycle = path[position[nxt]:]
                        reported.update(cycle)
                        cycles.append(_rotated(cycle, order))
                elif nxt not in done:
                    position[nxt] = len(path)
                    path.append(nxt)
                    pending.append(iter(adjacency.get(nxt, ())))
                    break
            else:
                finished = path.pop()
                del position[finished]
                done.add(finished)
                pending.pop()
    return cycles


def _rotated(cycle: list[str], order: Mapping[str, int]) -> tuple[str, ...]:
    """``[b, c, a]`` -> ``(a, b, c, a)`` when ``a`` comes first in the file."""
    start = min(range(len(cycle)), key=lambda i: order.get(cycle[i], len(order)))
    body = cycle[start:] + cycle[:start]
    return (*body, body[0])

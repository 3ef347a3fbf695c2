"""The dependency graph between units, kept acyclic with an incremental topological order.

An edge ``u -> d`` means "unit ``u`` depends on unit ``d``" and carries a requirement
(:attr:`Status.STARTED` or :attr:`Status.COMPLETED`). Every node has an integer position ``ord``
with ``ord[u] < ord[d]`` for every edge (dependents before their dependencies). Inserting an edge
that already agrees with the order costs O(1); otherwise only the *affected region* is searched
and reordered, as in Pearce & Kelly, "A dynamic topological sort algorithm for directed acyclic
graphs" (ACM JEA, 2006). The searches are iterative: 10,000-node chains must not hit the
recursion limit.

Pure data structure: no I/O, no locking; the coordinator owns the single instance.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ._api import UnitInfo
from ._errors import CycleError
from ._status import REQUIREMENTS, Status

__all__ = ["DependencyGraph", "GraphStatistics", "to_dot", "units_to_dot"]


@dataclass(frozen=True, slots=True)
class GraphStatistics:
    """A snapshot of a :class:`DependencyGraph`'s size and of the work its cycle checks did.

    ``last_affected`` is the number of nodes the last edge insertion reordered (0 when the new
    edge already agreed with the order); ``cycle_checks`` counts the new edges checked so far,
    refused ones included (replacing a requirement is not a check).
    """

    nodes: int
    edges: int
    last_affected: int
    cycle_checks: int


class DependencyGraph:
    """A directed acyclic graph of unit names; ``u -> d`` means ``u`` depends on ``d``."""

    __slots__ = ("_deps", "_rdeps", "_ord", "_low", "_high", "_edges", "_last_affected", "_checks")

    def __init__(self) -> None:
        """An empty graph."""
        self._deps: dict[str, dict[str, Status]] = {}  # unit -> {dependency: requirement}
        self._rdeps: dict[str, set[str]] = {}  # unit -> units that depend on it
        self._ord: dict[str, int] = {}  # topological position; ord[u] < ord[d] for u -> d
        self._low = -1  # next position in front of every node
        self._high = 0  # next position behind every node
        self._edges = 0
        self._last_affected = 0
        self._checks = 0

    def add_node(self, unit: str) -> None:
        """Add ``unit`` without edges (at the end of the order); nothing happens if it exists."""
        if unit not in self._ord:
            self._deps[unit] = {}
            self._rdeps[unit] = set()
            self._ord[unit] = self._high
            self._high += 1

    def add(self, unit: str, requirements: Mapping[str, Status]) -> None:
        """Atomically add or replace the edges ``unit -> dep``, each with its requirement.

        Missing nodes (``unit`` and the dependencies) are added. An existing edge only has its
        requirement replaced. If a new edge would close a cycle (a self edge included),
        :class:`CycleError` is raised for the first such dependency in iteration order and the
        graph's nodes, edges and requirements are exactly as before the call (positions in the
        topological order may differ). Requirements are taken as given: they were checked where
        they entered the core (``_operations.want``, or the journal's reader).
        """
        created = [name for name in dict.fromkeys([unit, *requirements]) if name not in self._ord]
        for name in created:
            self.add_node(name)
        deps = self._deps[unit]
        added: list[str] = []
        replaced: dict[str, Status] = {}
        for dep, requirement in requirements.items():
            if dep in deps:
                replaced[dep] = requirement
                continue
            cycle = self._insert(unit, dep)
            if cycle is not None:
                for done in added:  # edges out of one unit never make each other cycles:
                    del deps[done]  # undoing them leaves a valid order
                    self._rdeps[done].discard(unit)
                self._edges -= len(added)
                for name in created:  # nodes created by this call have no other edges
                    del self._deps[name], self._rdeps[name], self._ord[name]
                raise CycleError(cycle)
            deps[dep] = requirement
            self._rdeps[dep].add(unit)
            self._edges += 1
            added.append(dep)
        deps.update(replaced)

    def add_all(self, units: Sequence[tuple[str, Mapping[str, Status]]]) -> None:
        """:meth:`add` for several units as one step: if any new edge would close a cycle
        (with the graph or with each other), :class:`CycleError` names it and the graph's
        nodes, edges and requirements are exactly as before the call."""
        self._add_all(units)

    def add_all_undoable(
        self, units: Sequence[tuple[str, Mapping[str, Status]]]
    ) -> list[tuple[str, set[str], dict[str, Status], set[str]]]:
        """:meth:`add_all`, returning what :meth:`undo` needs to take it back (a shared store
        checks edges here, then commits them, and adds them for good once the store took
        them; undo in the reverse order of adding)."""
        return self._add_all(units)

    def _add_all(
        self, units: Sequence[tuple[str, Mapping[str, Status]]]
    ) -> list[tuple[str, set[str], dict[str, Status], set[str]]]:
        undo: list[tuple[str, set[str], dict[str, Status], set[str]]] = []
        try:
            for unit, requirements in units:
                created = {n for n in (unit, *requirements) if n not in self._ord}
                deps = self._deps.get(unit, {})
                old = {d: deps[d] for d in requirements if d in deps}
                self.add(unit, requirements)
                undo.append((unit, set(requirements) - set(old), old, created))
        except CycleError:
            self.undo(undo)
            raise
        return undo

    def undo(self, undo: list[tuple[str, set[str], dict[str, Status], set[str]]]) -> None:
        """Take back what :meth:`add_all_undoable` added."""
        for unit, added, old, created in reversed(undo):  # later edges go first
            deps = self._deps[unit]
            for dep in added:
                del deps[dep]
                self._rdeps[dep].discard(unit)
            self._edges -= len(added)
            deps.update(old)
            for name in created:  # by now nothing else points at or from them
                del self._deps[name], self._rdeps[name], self._ord[name]

    def _insert(self, u: str, d: str) -> tuple[str, ...] | None:
        """Make room in the order for a new edge ``u -> d``; the whole cycle if it would close one.

        The edge itself is not stored. Pearce-Kelly: when ``ord[u] > ord[d]``, search forward from
        ``d`` over positions below ``ord[u]`` (reaching ``u`` is a cycle), backward from ``u`` over
        positions above ``ord[d]``, then give the backward set followed by the forward set (each
        in its old relative order) the sorted pool of their positions. Shortcut: a ``u`` nobody
        depends on can move to the front, a ``d`` that depends on nothing to the back, in O(1);
        this makes chains built dependent-first, and graphs whose nodes were registered before
        their edges, cheap where plain PK would search the whole chain on every insertion.
        """
        self._checks += 1
        if u == d:
            return (u, u)
        order = self._ord
        lower, upper = order[d], order[u]  # a new edge needs ord[u] < ord[d]
        if upper < lower:
            self._last_affected = 0
            return None
        if not self._rdeps[u]:
            order[u] = self._low
            self._low -= 1
            self._last_affected = 1
            return None
        if not self._deps[d]:
            order[d] = self._high
            self._high += 1
            self._last_affected = 1
            return None
        deps, rdeps = self._deps, self._rdeps
        parent: dict[str, str] = {d: d}  # forward set, each node mapped to its discoverer
        stack = [d]
        while stack:
            node = stack.pop()
            out = deps[node]
            if u in out:
                path = [node]
                while path[-1] != d:
                    path.append(parent[path[-1]])
                return (u, *reversed(path), u)
            for nxt in out:  # u itself has position upper, so it is never pushed
                if order[nxt] < upper and nxt not in parent:
                    parent[nxt] = node
                    stack.append(nxt)
        backward = {u}
        stack = [u]
        while stack:
            node = stack.pop()
            for prev in rdeps[node]:
                if prev not in backward and order[prev] > lower:
                    backward.add(prev)
                    stack.append(prev)
        moved = sorted(backward, key=order.__getitem__) + sorted(parent, key=order.__getitem__)
        pool = sorted([order[node] for node in moved])
        for node, position in zip(moved, pool):
            order[node] = position
        self._last_affected = len(moved)
        return None

    def __contains__(self, unit: object) -> bool:
        """Whether ``unit`` is a node."""
        return unit in self._ord

    def __len__(self) -> int:
        """The number of nodes."""
        return len(self._ord)

    @property
    def edge_count(self) -> int:
        """The number of edges."""
        return self._edges

    def nodes(self) -> list[str]:
        """All nodes, sorted."""
        return sorted(self._ord)

    def dependencies(self, unit: str) -> dict[str, Status]:
        """A copy of ``{dependency: requirement}`` for ``unit``; ``{}`` if unknown."""
        return dict(self._deps.get(unit, {}))

    def dependents(self, unit: str) -> set[str]:
        """A copy of the set of units that depend directly on ``unit``; ``set()`` if unknown."""
        return set(self._rdeps.get(unit, ()))

    def edges(self) -> list[tuple[str, str, Status]]:
        """All edges as ``(unit, dependency, requirement)``, sorted."""
        return sorted((u, d, req) for u, deps in self._deps.items() for d, req in deps.items())

    def find_path(self, source: str, target: str) -> list[str] | None:
        """A shortest path ``[source, ..., target]`` following edges (BFS); ``None`` if none.

        ``[source]`` when ``source == target``.
        """
        if source == target:
            return [source]
        if source not in self._deps or target not in self._deps:
            return None
        parent: dict[str, str] = {source: source}
        queue = deque([source])
        while queue:
            node = queue.popleft()
            for nxt in self._deps[node]:
                if nxt in parent:
                    continue
                parent[nxt] = node
                if nxt == target:
                    path = [nxt]
                    while path[-1] != source:
                        path.append(parent[path[-1]])
                    return path[::-1]
                queue.append(nxt)
        return None

    def check_invariants(self) -> None:
        """Raise :class:`AssertionError` if the internal indexes disagree (for tests).

        Checks: the node sets of all indexes agree, positions are unique, every edge ``u -> d``
        has ``ord[u] < ord[d]`` and a valid requirement, the dependents index mirrors the
        dependencies index, and :attr:`edge_count` is right.
        """
        order = self._ord
        if set(self._deps) != set(order) or set(self._rdeps) != set(order):
            raise AssertionError("node sets of the order, dependencies and dependents differ")
        if len(set(order.values())) != len(order):
            raise AssertionError("topological positions are not unique")
        count = 0
        for u, deps in self._deps.items():
            for d, requirement in deps.items():
                count += 1
                if d not in order:
                    raise AssertionError(f"edge {u!r} -> {d!r} leads to an unknown node")
                if order[u] >= order[d]:
                    raise AssertionError(
                        f"edge {u!r} -> {d!r} breaks the order: {order[u]} >= {order[d]}"
                    )
                if requirement not in REQUIREMENTS:
                    raise AssertionError(f"edge {u!r} -> {d!r} requires {requirement!r}")
                if u not in self._rdeps[d]:
                    raise AssertionError(f"edge {u!r} -> {d!r} missing from the dependents index")
        for d, dependents in self._rdeps.items():
            for u in dependents:
                if d not in self._deps.get(u, {}):
                    raise AssertionError(f"dependents index has {u!r} -> {d!r}, not an edge")
        if count != self._edges:
            raise AssertionError(f"edge_count is {self._edges}, there are {count} edges")

    def statistics(self) -> GraphStatistics:
        """Sizes and cycle-check work so far."""
        return GraphStatistics(len(self._ord), self._edges, self._last_affected, self._checks)


def _escape(text: str) -> str:
    """``text`` for the inside of a double-quoted DOT string: ``\\`` and ``"`` escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(statuses: Mapping[str, Status], edges: Iterable[tuple[str, str, Status]]) -> str:
    """Render units and dependency edges as Graphviz DOT (``digraph unitsync``).

    Nodes are every key of ``statuses`` and every edge endpoint (without a status:
    ``not registered``), sorted by name and labelled ``name\\nstatus``; edges follow, sorted,
    labelled with their requirement.
    """
    edge_list = sorted(edges, key=lambda edge: (edge[0], edge[1], edge[2].value))
    names = set(statuses)
    for u, d, _ in edge_list:
        names.add(u)
        names.add(d)
    lines = ["digraph unitsync {"]
    for name in sorted(names):
        status = statuses.get(name, Status.NOT_REGISTERED)
        label = f"{_escape(name)}\\n{_escape(status.label)}"
        lines.append(f'  "{_escape(name)}" [label="{label}"];')
    for u, d, requirement in edge_list:
        lines.append(f'  "{_escape(u)}" -> "{_escape(d)}" [label="{_escape(requirement.label)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def units_to_dot(units: Iterable[UnitInfo]) -> str:
    """:func:`to_dot` of registered units and their dependencies (what ``list()`` gives): the
    one rendering that both the coordinator and a client assembling pages use."""
    statuses: dict[str, Status] = {}
    edges: list[tuple[str, str, Status]] = []
    for unit in units:
        statuses[unit.name] = unit.status
        edges.extend((unit.name, d.depends_on, d.required) for d in unit.dependencies)
    return to_dot(statuses, edges)

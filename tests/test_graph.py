"""Tests for coordinator._graph: the acyclic dependency graph and its DOT rendering."""

from __future__ import annotations

import random
import shutil
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator._errors import CycleError
from coordinator._graph import DependencyGraph, GraphStatistics, to_dot
from coordinator._status import Status

S = Status.STARTED
C = Status.COMPLETED


def chain(*names: str) -> DependencyGraph:
    """A graph where each name depends on the next one."""
    graph = DependencyGraph()
    for unit, dep in zip(names, names[1:]):
        graph.add(unit, {dep: C})
    graph.check_invariants()
    return graph


def snapshot(graph: DependencyGraph) -> tuple[list[str], list[tuple[str, str, Status]], int]:
    """Everything a refused add must leave unchanged."""
    return graph.nodes(), graph.edges(), graph.edge_count


# --- basic structure -----------------------------------------------------------------------


def test_empty_graph() -> None:
    graph = DependencyGraph()
    assert len(graph) == 0 and graph.edge_count == 0
    assert graph.nodes() == [] and graph.edges() == []
    assert "x" not in graph
    assert graph.dependencies("x") == {} and graph.dependents("x") == set()
    assert graph.find_path("x", "y") is None
    assert graph.statistics() == GraphStatistics(nodes=0, edges=0, last_affected=0, cycle_checks=0)
    graph.check_invariants()


def test_add_node_is_idempotent() -> None:
    graph = DependencyGraph()
    graph.add_node("a")
    graph.add_node("a")
    assert graph.nodes() == ["a"] and len(graph) == 1 and "a" in graph
    graph.add("a", {})
    assert graph.nodes() == ["a"] and graph.edge_count == 0
    graph.check_invariants()


@pytest.mark.parametrize("forward", [True, False])
def test_chain(forward: bool) -> None:
    names = [f"n{i}" for i in range(50)]
    pairs = [(names[i], names[i + 1]) for i in range(49)]
    graph = DependencyGraph()
    for unit, dep in pairs if forward else reversed(pairs):
        graph.add(unit, {dep: C})
        graph.check_invariants()
    assert graph.edge_count == 49 and len(graph) == 50
    assert graph.find_path("n0", "n49") == names
    assert graph.find_path("n49", "n0") is None
    with pytest.raises(CycleError) as info:
        graph.add("n49", {"n0": S})
    assert info.value.path == ("n49", *names)
    graph.check_invariants()


def test_chain_with_nodes_registered_first_in_reverse() -> None:
    names = [f"n{i}" for i in range(30)]
    graph = DependencyGraph()
    for name in reversed(names):
        graph.add_node(name)
    pairs = [(names[i], names[i + 1]) for i in range(29)]
    random.Random(7).shuffle(pairs)
    for unit, dep in pairs:
        graph.add(unit, {dep: S})
        graph.check_invariants()
    assert graph.find_path("n0", "n29") == names


def test_diamond() -> None:
    graph = DependencyGraph()
    graph.add("d", {})
    graph.add("b", {"d": C})
    graph.add("c", {"d": S})
    graph.add("a", {"b": C, "c": S})
    graph.check_invariants()
    assert graph.edges() == [("a", "b", C), ("a", "c", S), ("b", "d", C), ("c", "d", S)]
    assert graph.dependents("d") == {"b", "c"}
    assert graph.dependencies("a") == {"b": C, "c": S}
    assert graph.find_path("a", "d") in (["a", "b", "d"], ["a", "c", "d"])
    with pytest.raises(CycleError) as info:
        graph.add("d", {"a": C})
    path = info.value.path
    assert path in (("d", "a", "b", "d"), ("d", "a", "c", "d"))


def test_fan_in_and_fan_out() -> None:
    graph = DependencyGraph()
    for i in range(100):
        graph.add(f"user{i}", {"hub": C})
    for i in range(100):
        graph.add("hub", {f"lib{i}": S})
    graph.check_invariants()
    assert graph.dependents("hub") == {f"user{i}" for i in range(100)}
    assert len(graph.dependencies("hub")) == 100
    assert graph.edge_count == 200 and len(graph) == 201
    with pytest.raises(CycleError) as info:
        graph.add("lib5", {"user7": C})
    assert info.value.path == ("lib5", "user7", "hub", "lib5")


def test_copies_are_independent() -> None:
    graph = chain("a", "b")
    graph.dependencies("a")["x"] = C
    graph.dependents("b").add("x")
    assert graph.edges() == [("a", "b", C)]
    graph.check_invariants()


def test_requirement_replacement_keeps_one_edge() -> None:
    graph = chain("a", "b")
    checks = graph.statistics().cycle_checks
    graph.add("a", {"b": S})
    assert graph.edges() == [("a", "b", S)] and graph.edge_count == 1
    assert graph.statistics().cycle_checks == checks  # replacing is not a check
    graph.add("a", {"b": C, "c": S})
    assert graph.edges() == [("a", "b", C), ("a", "c", S)]
    graph.check_invariants()


# --- cycles --------------------------------------------------------------------------------


def test_self_edge() -> None:
    graph = DependencyGraph()
    with pytest.raises(CycleError) as info:
        graph.add("a", {"a": C})
    assert info.value.path == ("a", "a")
    assert str(info.value) == "dependency cycle refused: a -> a"
    assert snapshot(graph) == ([], [], 0)  # "a" was created for the call and removed again
    graph.add_node("a")
    with pytest.raises(CycleError):
        graph.add("a", {"a": S})
    assert snapshot(graph) == (["a"], [], 0)


def test_two_node_cycle() -> None:
    graph = chain("a", "b")
    with pytest.raises(CycleError) as info:
        graph.add("b", {"a": C})
    assert info.value.path == ("b", "a", "b")
    assert graph.edges() == [("a", "b", C)]
    graph.check_invariants()


def test_whole_cycle_path() -> None:
    graph = chain("claude", "git", "setup")
    with pytest.raises(CycleError) as info:
        graph.add("setup", {"claude": C})
    assert info.value.path == ("setup", "claude", "git", "setup")
    assert "setup -> claude -> git -> setup" in str(info.value)

    graph = chain("a", "b", "c", "d")
    with pytest.raises(CycleError) as info:
        graph.add("d", {"a": S})
    assert info.value.path == ("d", "a", "b", "c", "d")
    graph.check_invariants()


def test_refused_multi_dep_add_changes_nothing() -> None:
    graph = chain("x", "y", "z")
    graph.add("x", {"q": S})
    graph.add_node("lonely")
    before = snapshot(graph)
    # the cycle-closing dep is the second of three; the first one is a new node
    with pytest.raises(CycleError) as info:
        graph.add("z", {"new1": C, "x": C, "new2": S})
    assert info.value.path == ("z", "x", "y", "z")
    assert snapshot(graph) == before
    assert "new1" not in graph and "new2" not in graph
    graph.check_invariants()
    # an existing edge's requirement is not replaced either, nor is an existing node's edge kept
    with pytest.raises(CycleError):
        graph.add("z", {"lonely": C, "x": S})
    with pytest.raises(CycleError):
        graph.add("x", {"q": C, "new": S, "x": C})
    assert snapshot(graph) == before
    assert graph.dependencies("x") == {"y": C, "q": S}
    graph.check_invariants()
    # a refused call by a new unit removes the unit again
    with pytest.raises(CycleError) as info:
        graph.add("fresh", {"y": C, "fresh": C})
    assert info.value.path == ("fresh", "fresh")
    assert snapshot(graph) == before
    graph.check_invariants()


def test_first_cycle_in_iteration_order_is_reported() -> None:
    graph = chain("a", "b", "c")
    with pytest.raises(CycleError) as info:
        graph.add("c", {"b": C, "a": C})
    assert info.value.path == ("c", "b", "c")
    with pytest.raises(CycleError) as info:
        graph.add("c", {"a": C, "b": C})
    assert info.value.path == ("c", "a", "b", "c")


def test_find_path() -> None:
    graph = DependencyGraph()
    graph.add("a", {"b": C, "c": C})
    graph.add("c", {"d": C})
    graph.add("d", {"e": C})
    graph.add("b", {"e": C})
    assert graph.find_path("a", "a") == ["a"]
    assert graph.find_path("a", "e") == ["a", "b", "e"]  # shortest
    assert graph.find_path("c", "e") == ["c", "d", "e"]
    assert graph.find_path("e", "a") is None
    assert graph.find_path("a", "zzz") is None and graph.find_path("zzz", "a") is None


def test_statistics() -> None:
    graph = DependencyGraph()
    graph.add_node("x")
    graph.add_node("y")
    assert graph.statistics() == GraphStatistics(2, 0, 0, 0)
    graph.add("y", {"z": C})  # agrees with the order: nothing reordered
    assert graph.statistics() == GraphStatistics(3, 1, 0, 1)
    graph.add("w", {"y": C})  # w has no dependents: moved to the front on its own
    assert graph.statistics() == GraphStatistics(4, 2, 1, 2)
    graph.add("x", {"v": S})
    assert graph.statistics() == GraphStatistics(5, 3, 0, 3)
    graph.add("y", {"x": C})  # y (with a dependent) was after x (with a dependency): PK swap
    assert graph.statistics() == GraphStatistics(5, 4, 2, 4)
    graph.check_invariants()
    with pytest.raises(CycleError) as info:
        graph.add("x", {"w": C})
    assert info.value.path == ("x", "w", "y", "x")
    assert graph.statistics().cycle_checks == 5


def test_check_invariants_detects_corruption() -> None:
    graph = chain("a", "b")
    graph._ord["a"], graph._ord["b"] = graph._ord["b"], graph._ord["a"]
    with pytest.raises(AssertionError, match="breaks the order"):
        graph.check_invariants()
    graph = chain("a", "b")
    graph._rdeps["b"].clear()
    with pytest.raises(AssertionError, match="dependents index"):
        graph.check_invariants()


# --- property test against a brute-force oracle ---------------------------------------------

NAMES = [f"u{i}" for i in range(12)]
name = st.sampled_from(NAMES)
operation = st.one_of(
    st.tuples(st.just("node"), name, st.just({})),
    st.tuples(st.just("add"), name, st.dictionaries(name, st.sampled_from([S, C]), max_size=3)),
)


def reaches(edges: dict[str, dict[str, Status]], source: str, target: str) -> bool:
    """Brute-force reachability over the oracle's edges."""
    seen, todo = {source}, [source]
    while todo:
        node = todo.pop()
        if node == target:
            return True
        for nxt in edges.get(node, {}):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


@settings(max_examples=250, deadline=None)
@given(st.lists(operation, max_size=40), st.tuples(name, name))
def test_matches_brute_force_oracle(
    ops: list[tuple[str, str, dict[str, Status]]], probe: tuple[str, str]
) -> None:
    graph = DependencyGraph()
    nodes: set[str] = set()
    edges: dict[str, dict[str, Status]] = {}
    for kind, unit, requirements in ops:
        if kind == "node":
            graph.add_node(unit)
            nodes.add(unit)
        else:
            # edges out of one unit cannot close a cycle through each other: check each against
            # the graph as it was before the call
            old = edges.get(unit, {})
            bad = [d for d in requirements if d not in old and reaches(edges, d, unit)]
            try:
                graph.add(unit, requirements)
            except CycleError as error:
                assert bad, f"refused {unit} -> {list(requirements)} without a cycle"
                path = error.path
                assert path[0] == path[-1] == unit and path[1] == bad[0]
                assert len(path) >= 2
                cycle_edges = list(zip(path, path[1:]))
                assert cycle_edges[0] == (unit, bad[0])
                for u, d in cycle_edges[1:]:
                    assert d in edges.get(u, {}), f"{u} -> {d} in {path} is not an edge"
            else:
                assert not bad, f"accepted {unit} -> {bad[0]} closing a cycle"
                nodes.add(unit)
                nodes.update(requirements)
                edges.setdefault(unit, {}).update(requirements)
        graph.check_invariants()
        assert graph.nodes() == sorted(nodes)
        assert graph.edges() == sorted((u, d, r) for u, ds in edges.items() for d, r in ds.items())
    source, target = probe
    path = graph.find_path(source, target)
    if source == target:
        assert path == [source]
    elif path is None:
        assert not reaches(edges, source, target)
    else:
        assert path[0] == source and path[-1] == target
        assert all(d in edges[u] for u, d in zip(path, path[1:]))


# --- DOT -----------------------------------------------------------------------------------


def test_dot_empty() -> None:
    assert to_dot({}, []) == "digraph unitsync {\n}\n"


def test_dot_two_nodes() -> None:
    assert to_dot({"claude": C}, [("claude", "git", C)]) == (
        "digraph unitsync {\n"
        '  "claude" [label="claude\\ncompleted"];\n'
        '  "git" [label="git\\nnot registered"];\n'
        '  "claude" -> "git" [label="completed"];\n'
        "}\n"
    )


def test_dot_diamond_from_graph() -> None:
    graph = DependencyGraph()
    graph.add("top", {"left": C, "right": S})
    graph.add("right", {"bottom": C})
    graph.add("left", {"bottom": S})
    statuses = {"top": Status.PENDING, "left": S, "right": C, "bottom": Status.FAILED}
    assert to_dot(statuses, graph.edges()) == (
        "digraph unitsync {\n"
        '  "bottom" [label="bottom\\nfailed"];\n'
        '  "left" [label="left\\nstarted"];\n'
        '  "right" [label="right\\ncompleted"];\n'
        '  "top" [label="top\\npending"];\n'
        '  "left" -> "bottom" [label="started"];\n'
        '  "right" -> "bottom" [label="completed"];\n'
        '  "top" -> "left" [label="completed"];\n'
        '  "top" -> "right" [label="started"];\n'
        "}\n"
    )
    # edge order of the input does not matter
    assert to_dot(statuses, reversed(graph.edges())) == to_dot(statuses, graph.edges())


NASTY = [
    'say "hi"', "back\\slash", "trailing\\", '\\"', "a -> b", "{x; y}", "émoji 🚀 日本", "\\N"
]


def test_dot_escapes_names() -> None:
    text = to_dot({'say "hi"': S, "back\\slash": C}, [("a -> b", "émoji 🚀 日本", C)])
    assert '  "say \\"hi\\"" [label="say \\"hi\\"\\nstarted"];\n' in text
    assert '  "back\\\\slash" [label="back\\\\slash\\ncompleted"];\n' in text
    assert '  "a -> b" -> "émoji 🚀 日本" [label="completed"];\n' in text
    assert to_dot({"trailing\\": S}, []) == (
        'digraph unitsync {\n  "trailing\\\\" [label="trailing\\\\\\nstarted"];\n}\n'
    )


def test_dot_accepted_by_graphviz() -> None:
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("graphviz `dot` is not on PATH (apt-get install graphviz) to check the DOT")
    statuses = {name: status for name, status in zip(NASTY, list(Status) * 2)}
    edges = [(a, b, C if i % 2 else S) for i, (a, b) in enumerate(zip(NASTY, NASTY[1:]))]
    text = to_dot(statuses, edges)
    svg = subprocess.run([dot, "-Tsvg"], input=text.encode(), capture_output=True, timeout=30)
    assert svg.returncode == 0, svg.stderr.decode()
    plain = subprocess.run([dot, "-Tplain"], input=text.encode(), capture_output=True, timeout=30)
    assert plain.returncode == 0, plain.stderr.decode()
    lines = plain.stdout.decode().splitlines()
    # every name stayed one distinct node and every edge survived
    assert sum(line.startswith("node ") for line in lines) == len(NASTY)
    assert sum(line.startswith("edge ") for line in lines) == len(edges)


# --- timing sanity -------------------------------------------------------------------------


def timed(graph: DependencyGraph, pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """Insert ``pairs``; total seconds and mean seconds of the last 1,000 insertions."""
    total = 0.0
    last = 0.0
    tail = len(pairs) - 1000
    for i, (unit, dep) in enumerate(pairs):
        start = time.perf_counter()
        graph.add(unit, {dep: C})
        spent = time.perf_counter() - start
        total += spent
        if i >= tail:
            last += spent
    return total, last / 1000


@pytest.mark.bench  # a bound on measured time: with the benchmarks, off the default suite
def test_timing_sanity() -> None:
    n = 10_000
    names = [f"unit-{i}" for i in range(n)]
    rng = random.Random(20240601)
    figures = {}

    # each new unit depends on the previous one: the new unit is appended behind everything, so
    # every edge is "backwards"; plain PK would search the whole chain each time
    graph = DependencyGraph()
    pairs = [(names[i + 1], names[i]) for i in range(n - 1)]
    figures["chain, dependents first"] = timed(graph, pairs)
    graph.check_invariants()
    # the easy case: each new dependency lands behind its dependent
    graph = DependencyGraph()
    pairs = [(names[i], names[i + 1]) for i in range(n - 1)]
    figures["chain, dependencies first"] = timed(graph, pairs)
    # registered in reverse, then edges in random order: real PK reordering of chain segments
    graph = DependencyGraph()
    for unit in reversed(names):
        graph.add_node(unit)
    pairs = [(names[i], names[i + 1]) for i in range(n - 1)]
    rng.shuffle(pairs)
    figures["chain, registered reversed, random edges"] = timed(graph, pairs)
    graph.check_invariants()
    # random DAG: 40,000 edges respecting a hidden order, nodes registered in another order
    hidden = names[:]
    rng.shuffle(hidden)
    graph = DependencyGraph()
    for unit in rng.sample(names, n):
        graph.add_node(unit)
    seen: set[tuple[int, int]] = set()
    pairs = []
    while len(pairs) < 40_000:
        a, b = sorted(rng.sample(range(n), 2))
        if (a, b) not in seen:
            seen.add((a, b))
            pairs.append((hidden[a], hidden[b]))
    figures["random DAG, 40k edges"] = timed(graph, pairs)
    graph.check_invariants()
    assert graph.edge_count == 40_000

    for label, (total, mean_last) in figures.items():
        print(f"{label}: total {total:.3f} s, last 1000 mean {mean_last * 1e6:.1f} us")
    for label, (_, mean_last) in figures.items():
        assert mean_last < 1e-3, f"{label}: {mean_last * 1e3:.3f} ms per insertion"


def test_add_all_is_all_or_nothing() -> None:
    graph = DependencyGraph()
    graph.add("git", {"ssh": Status.COMPLETED})
    graph.add("claude", {"git": Status.STARTED})
    before = (sorted(graph.nodes()), sorted(graph.edges()))
    with pytest.raises(CycleError) as caught:
        graph.add_all([
            ("new", {"git": Status.COMPLETED, "other": Status.STARTED}),
            ("claude", {"git": Status.COMPLETED, "docs": Status.STARTED}),  # replaced, added
            ("ssh", {"new": Status.COMPLETED}),  # ssh -> new -> git -> ssh
        ])
    assert caught.value.path == ("ssh", "new", "git", "ssh")
    assert (sorted(graph.nodes()), sorted(graph.edges())) == before
    graph.check_invariants()
    graph.add_all([("new", {"git": Status.COMPLETED}), ("ssh", {"base": Status.STARTED})])
    assert ("new", "git", Status.COMPLETED) in graph.edges()
    graph.check_invariants()

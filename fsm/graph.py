"""
A machine spec as a networkx graph: the checks run on every spec, and the path walks tests use.

Nodes are states (attributes ``initial`` and ``final``); edges are transitions, keyed by trigger, with
the emission kinds they may produce.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import networkx as nx

from fsm.errors import InvalidMachine

if TYPE_CHECKING:
    from fsm.spec import MachineSpec, Transition

__all__ = ["check_spec", "scenario_paths", "spec_graph"]

Edge = tuple[str, str, str]


def spec_graph(spec: MachineSpec) -> nx.MultiDiGraph:
    """Return the spec as a multigraph: one node per state, one edge per (transition, source)."""
    graph = nx.MultiDiGraph(name=spec.name)
    for state in spec.states:
        graph.add_node(state, initial=state == spec.initial, final=state in spec.finals)
    for transition in spec.transitions:
        for source in transition.sources:
            graph.add_edge(
                source,
                transition.dest,
                key=transition.trigger,
                trigger=transition.trigger,
                emits=transition.emits,
                guarded=transition.guard is not None,
                doc=transition.doc,
            )
    return graph


def check_spec(spec: MachineSpec) -> None:
    """
    Check a spec's structure and obligations.

    Raises:
        InvalidMachine: naming the offending states.
    """
    _check_names(spec)
    graph = spec_graph(spec)
    reachable = nx.descendants(graph, spec.initial) | {spec.initial}
    _refuse("unreachable from the initial state", [s for s in spec.states if s not in reachable])
    _refuse("no path to a final state", [s for s in spec.states if _is_trap(graph, s, spec.finals)])
    _refuse("final state with outgoing transitions", [s for s in spec.finals if graph.out_degree(s)])
    for obligation in spec.obligations:
        _check_obligation(spec, graph, obligation.target, obligation.emission)


def _check_names(spec: MachineSpec) -> None:
    known = set(spec.states)
    _refuse("duplicate states", sorted({s for s in spec.states if spec.states.count(s) > 1}))
    _refuse("unknown initial state", [] if spec.initial in known else [spec.initial])
    _refuse("unknown final states", sorted(spec.finals - known))
    used = {s for t in spec.transitions for s in (*t.sources, t.dest)}
    _refuse("transitions use unknown states", sorted(used - known))
    _refuse("transitions without sources", sorted({t.trigger for t in spec.transitions if not t.sources}))
    _refuse("obligations name unknown states", sorted({o.target for o in spec.obligations} - known))


def _is_trap(graph: nx.MultiDiGraph, state: str, finals: frozenset[str]) -> bool:
    return state not in finals and not (nx.descendants(graph, state) & finals)


def _check_obligation(spec: MachineSpec, graph: nx.MultiDiGraph, target: str, emission: str) -> None:
    pruned = graph.copy()
    pruned.remove_edges_from(
        [(u, v, k) for u, v, k, emits in graph.edges(keys=True, data="emits") if emission in emits]
    )
    if target != spec.initial and nx.has_path(pruned, spec.initial, target):
        path = " -> ".join(str(state) for state in nx.shortest_path(pruned, spec.initial, target))
        raise InvalidMachine(f"a path reaches {target} without emitting {emission}: {path}")


def _refuse(problem: str, states: list[str]) -> None:
    if states:
        raise InvalidMachine(f"{problem}: {[str(state) for state in states]}")


def scenario_paths(spec: MachineSpec) -> list[list[Transition]]:
    """
    Paths of transitions from the initial state to a final state that together take every transition.

    Every simple path comes first; then, for each transition no simple path takes (a self-loop, a move
    back), the shortest way to its source, the transition, and the shortest way on to a final state.
    Tests and the crash matrix walk these.
    """
    graph = spec_graph(spec)
    paths = [
        _transitions(spec, edges)
        for final in sorted(spec.finals)
        for edges in nx.all_simple_edge_paths(graph, spec.initial, final)
    ]
    taken = {id(t) for path in paths for t in path}
    for transition in spec.transitions:
        for source in transition.sources:
            if id(transition) not in taken:
                paths.append(_through(spec, graph, source, transition))
                taken.add(id(transition))
    return paths


def _transitions(spec: MachineSpec, edges: list[Edge]) -> list[Transition]:
    return [_edge_transition(spec, source, dest, trigger) for source, dest, trigger in edges]


def _edge_transition(spec: MachineSpec, source: str, dest: str, trigger: str) -> Transition:
    for transition in spec.transitions_from(source):
        if transition.trigger == trigger and transition.dest == dest:
            return transition
    raise KeyError((source, trigger, dest))


def _through(
    spec: MachineSpec, graph: nx.MultiDiGraph, source: str, transition: Transition
) -> list[Transition]:
    before = _shortest_edges(graph, spec.initial, source)
    finals = [f for f in sorted(spec.finals) if nx.has_path(graph, transition.dest, f)]
    after = min((_shortest_edges(graph, transition.dest, f) for f in finals), key=len)
    return [*_transitions(spec, before), transition, *_transitions(spec, after)]


def _shortest_edges(graph: nx.MultiDiGraph, start: str, end: str) -> list[Edge]:
    nodes = nx.shortest_path(graph, start, end)
    return [(u, v, next(iter(graph[u][v]))) for u, v in itertools.pairwise(nodes)]

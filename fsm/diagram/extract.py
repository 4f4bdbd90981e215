"""
Spec → diagram IR, through the spec's networkx graph (:func:`fsm.graph.spec_graph`).

The graph gives the states with their initial/final flags and one edge per (transition, source) with
its trigger, emissions, doc and whether it is guarded. The spec adds what the graph does not hold: the
declaration order (so every render lists edges the same way) and the guards' names.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from fsm.diagram.model import DiagramGraph, DiagramState, DiagramTransition
from fsm.errors import FsmError
from fsm.graph import spec_graph
from fsm.spec import Guard, MachineSpec, Transition

__all__ = ["Edge", "UnknownTransition", "extract", "guard_name"]

#: One step of a path: (source, trigger, destination).
Edge = tuple[str, str, str]

# Factories that forget to rename their inner function leave this name, which says nothing.
_UNINFORMATIVE_NAMES = frozenset({"guard", "<lambda>"})


class UnknownTransition(FsmError, ValueError):
    """
    A highlighted step is not an edge of the machine.

    Args:
        machine: the machine's name.
        edges: the unknown (source, trigger, destination) steps.
    """

    code = "unknown_transition"

    def __init__(self, machine: str, edges: Sequence[Edge]) -> None:
        super().__init__(f"not edges of the {machine} machine: {list(edges)}")
        self.machine = machine
        self.edges = tuple(edges)


def extract(spec: MachineSpec, highlight: Sequence[Edge] | None = None) -> DiagramGraph:
    """
    Build the diagram IR of ``spec``, optionally marking a path.

    Args:
        spec: the machine.
        highlight: the (source, trigger, destination) steps of a path, in order; a step may repeat.

    Returns:
        States in spec order and edges in transition order, with the path's states and steps marked.

    Raises:
        UnknownTransition: a highlighted step is not an edge of the machine.
    """
    declared = _declared_edges(spec)
    path = tuple(highlight or ())
    unknown = [edge for edge in path if edge not in declared]
    if unknown:
        raise UnknownTransition(spec.name, unknown)
    graph = spec_graph(spec)
    visited = {state for source, _, dest in path for state in (source, dest)}
    states = tuple(_state(name, attrs, name in visited) for name, attrs in graph.nodes(data=True))
    order = {edge: index for index, edge in enumerate(declared)}
    edges = sorted(graph.edges(data=True), key=lambda e: order[_edge_of(e)])
    transitions = tuple(_transition(e, declared[_edge_of(e)].popleft(), path) for e in edges)
    return DiagramGraph(spec.name, states, transitions)


def _declared_edges(spec: MachineSpec) -> dict[Edge, deque[Transition]]:
    """Every edge in declaration order, with the transitions declaring it (guarded branches may share one)."""
    declared: dict[Edge, deque[Transition]] = {}
    for transition in spec.transitions:
        for source in transition.sources:
            declared.setdefault((source, transition.trigger, transition.dest), deque()).append(transition)
    return declared


def _edge_of(edge: tuple[Any, Any, dict[str, Any]]) -> Edge:
    source, dest, attrs = edge
    return (str(source), str(attrs["trigger"]), str(dest))


def _state(name: Any, attrs: dict[str, Any], visited: bool) -> DiagramState:
    return DiagramState(str(name), bool(attrs["initial"]), bool(attrs["final"]), visited)


def _transition(
    edge: tuple[Any, Any, dict[str, Any]], transition: Transition, path: tuple[Edge, ...]
) -> DiagramTransition:
    source, trigger, dest = key = _edge_of(edge)
    attrs = edge[2]
    return DiagramTransition(
        source=source,
        dest=dest,
        trigger=trigger,
        guarded=bool(attrs["guarded"]),
        guard_name=guard_name(transition.guard),
        emits=tuple(str(kind) for kind in attrs["emits"]),
        doc=str(attrs["doc"]),
        steps=tuple(index for index, step in enumerate(path, 1) if step == key),
    )


def guard_name(guard: Guard | None) -> str:
    """
    The name to show for ``guard``: its ``__name__`` when that is a meaningful identifier, else empty.

    Args:
        guard: a transition's guard, or None.

    Returns:
        The name, or ``""`` for no guard, lambdas, callables without a name and unrenamed factory products.
    """
    name = getattr(guard, "__name__", "")
    if not isinstance(name, str) or not name.isidentifier() or name in _UNINFORMATIVE_NAMES:
        return ""
    return name

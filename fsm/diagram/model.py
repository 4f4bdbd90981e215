"""
The intermediate representation every diagram renderer reads: a machine's states and edges, flattened.

A renderer never looks at a spec or a graph: :mod:`fsm.diagram.extract` builds one
:class:`DiagramGraph` and each format draws it, so all formats agree on order, labels and highlights.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DiagramGraph", "DiagramState", "DiagramTransition"]


@dataclass(frozen=True)
class DiagramState:
    """
    One state to draw.

    Args:
        name: the state's name in the spec.
        initial: where new instances start.
        final: a state with no way out.
        visited: on the highlighted path.
    """

    name: str
    initial: bool = False
    final: bool = False
    visited: bool = False


@dataclass(frozen=True)
class DiagramTransition:
    """
    One edge to draw: a transition from one of its sources.

    Args:
        source: the state it fires from.
        dest: the state it leads to.
        trigger: the event name.
        guarded: whether a guard decides if it fires.
        guard_name: the guard's name when it has a meaningful one, else empty.
        emits: the emission kinds it may produce.
        doc: one line saying what it means.
        steps: its 1-based positions on the highlighted path (several when a loop is taken again).
    """

    source: str
    dest: str
    trigger: str
    guarded: bool = False
    guard_name: str = ""
    emits: tuple[str, ...] = ()
    doc: str = ""
    steps: tuple[int, ...] = ()

    @property
    def guard_label(self) -> str:
        """The guard as shown in labels and tables: its name, ``guarded`` if unnamed, empty if none."""
        if not self.guarded:
            return ""
        return self.guard_name or "guarded"

    @property
    def highlighted(self) -> bool:
        """Whether the highlighted path takes this edge."""
        return bool(self.steps)


@dataclass(frozen=True)
class DiagramGraph:
    """
    A whole machine to draw: states in spec order, edges in transition order.

    Args:
        name: the machine's name.
        states: every state.
        transitions: every (transition, source) edge.
    """

    name: str
    states: tuple[DiagramState, ...]
    transitions: tuple[DiagramTransition, ...]

    @property
    def initial(self) -> DiagramState:
        """The initial state (a checked spec has exactly one)."""
        return next(state for state in self.states if state.initial)

    @property
    def highlighted(self) -> bool:
        """Whether a path is highlighted."""
        return any(transition.highlighted for transition in self.transitions)

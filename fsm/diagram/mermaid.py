"""
Mermaid ``stateDiagram-v2`` from the diagram IR.

Mermaid's state diagrams take no ``linkStyle`` (mermaid-js/mermaid#1352; a flowchart-only statement
there is a parse error), so a highlighted edge is marked in its label with its step numbers, and
visited states get a ``classDef`` class.
"""

from __future__ import annotations

import re

from fsm.diagram.model import DiagramGraph, DiagramState, DiagramTransition

__all__ = ["render_mermaid"]

_INDENT = "    "
_VISITED_STYLE = "fill:#fde0dc,stroke:#d62728,stroke-width:3px"


def render_mermaid(graph: DiagramGraph) -> str:
    """
    Render ``graph`` as a Mermaid state diagram.

    Args:
        graph: the IR.

    Returns:
        ``[*] --> Initial``, one ``Src --> Dst: trigger [guard]`` line per edge in transition order,
        ``Final --> [*]`` per final state, then the visited-state class when a path is highlighted.
    """
    lines = ["stateDiagram-v2"]
    lines += [f'state "{_quoted(s.name)}" as {_id(s.name)}' for s in graph.states if _id(s.name) != s.name]
    lines.append(f"[*] --> {_id(graph.initial.name)}")
    lines += [f"{_id(t.source)} --> {_id(t.dest)}: {_label(t)}" for t in graph.transitions]
    lines += [f"{_id(s.name)} --> [*]" for s in graph.states if s.final]
    lines += _visited_lines(graph.states)
    return "\n".join([lines[0], *(_INDENT + line for line in lines[1:])]) + "\n"


def _label(transition: DiagramTransition) -> str:
    label = _word(transition.trigger)
    if transition.guarded:
        label += f" [{_word(transition.guard_label)}]"
    if transition.steps:
        noun = "step" if len(transition.steps) == 1 else "steps"
        label += f" ({noun} {', '.join(map(str, transition.steps))})"
    return label


def _visited_lines(states: tuple[DiagramState, ...]) -> list[str]:
    visited = [_id(state.name) for state in states if state.visited]
    if not visited:
        return []
    return [f"classDef visited {_VISITED_STYLE}", f"class {','.join(visited)} visited"]


def _id(name: str) -> str:
    """A state id Mermaid accepts: word characters only."""
    return re.sub(r"\W", "_", name)


def _word(text: str) -> str:
    # A colon would start a new label, and ``#``, ``;``, brackets or quotes break the parse.
    return re.sub(r"[^\w.-]+", "_", text)


def _quoted(name: str) -> str:
    return name.replace('"', "'")

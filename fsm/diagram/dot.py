"""
Graphviz DOT from the diagram IR: a point node marks the initial state, finals are double circles.

Highlighted edges and visited states are drawn bold and red. The SVG in ``diagrams/`` is rendered from
this text (:mod:`fsm.diagram.svg`).
"""

from __future__ import annotations

from fsm.diagram.model import DiagramGraph, DiagramState, DiagramTransition

__all__ = ["START_NODE", "render_dot"]

#: The name of the point node that marks the initial state.
START_NODE = "__start__"

_HIGHLIGHT = 'color="#d62728", fontcolor="#d62728", penwidth=3'
_INDENT = "    "


def render_dot(graph: DiagramGraph) -> str:
    """
    Render ``graph`` as a DOT ``digraph``.

    Args:
        graph: the IR.

    Returns:
        One node per state in spec order, the start marker, and one edge per IR edge labelled with its
        trigger (its doc as tooltip), in transition order.
    """
    start = _start_name(graph)
    lines = [
        f"digraph {_quote(graph.name)} {{",
        "rankdir=LR;",
        'node [shape=ellipse, fontname="Helvetica"];',
        'edge [fontname="Helvetica", fontsize=10];',
        f"{_quote(start)} [shape=point, width=0.15];",
        *(_node(state) for state in graph.states),
        f"{_quote(start)} -> {_quote(graph.initial.name)};",
        *(_edge(transition) for transition in graph.transitions),
    ]
    return "\n".join([lines[0], *(_INDENT + line for line in lines[1:]), "}"]) + "\n"


def _start_name(graph: DiagramGraph) -> str:
    names = {state.name for state in graph.states}
    start = START_NODE
    while start in names:
        start = f"_{start}_"
    return start


def _node(state: DiagramState) -> str:
    attrs = ["shape=doublecircle"] if state.final else []
    if state.visited:
        attrs.append(_HIGHLIGHT)
    return f"{_quote(state.name)}{_attributes(attrs)};"


def _edge(transition: DiagramTransition) -> str:
    attrs = [f"label={_quote(transition.trigger)}"]
    if transition.doc:
        attrs.append(f"tooltip={_quote(transition.doc)}")
    if transition.highlighted:
        attrs.append(_HIGHLIGHT)
    return f"{_quote(transition.source)} -> {_quote(transition.dest)}{_attributes(attrs)};"


def _attributes(attrs: list[str]) -> str:
    return f" [{', '.join(attrs)}]" if attrs else ""


def _quote(text: str) -> str:
    # Backslashes start escapes (\n, \N, \G) in DOT strings; a raw newline would end up in the output.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{escaped}"'

"""
SVG from DOT text through pygraphviz, whose wheel bundles Graphviz (no system ``dot`` needed).

pygraphviz is an optional dependency (the ``diagrams`` extra), imported only when an SVG is asked for.
"""

from __future__ import annotations

from fsm.errors import FsmError

__all__ = ["GraphvizUnavailable", "render_svg"]


class GraphvizUnavailable(FsmError):
    """SVG rendering needs pygraphviz, which is not installed: install the ``diagrams`` extra."""

    code = "graphviz_unavailable"


def render_svg(dot: str) -> str:
    """
    Lay out ``dot`` with Graphviz's ``dot`` and return the SVG.

    Args:
        dot: a DOT graph (:func:`fsm.diagram.dot.render_dot`).

    Returns:
        The SVG document. It names the Graphviz version in a comment, so it is not compared for drift.

    Raises:
        GraphvizUnavailable: pygraphviz cannot be imported.
    """
    try:
        import pygraphviz
    except ImportError as exc:
        raise GraphvizUnavailable(
            "SVG diagrams need pygraphviz: pip install 'failover-transfer[diagrams]'"
        ) from exc
    svg = pygraphviz.AGraph(string=dot).draw(format="svg", prog="dot")
    return bytes(svg).decode("utf-8")

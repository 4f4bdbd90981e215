"""
Render a machine spec in one of the diagram formats, and keep a directory of rendered diagrams fresh.

Text formats (Mermaid, DOT, Markdown) are deterministic and checked for drift; SVG embeds the Graphviz
version, so it is written but never compared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from fsm.diagram.dot import render_dot
from fsm.diagram.extract import Edge, extract
from fsm.diagram.mermaid import render_mermaid
from fsm.diagram.model import DiagramGraph
from fsm.diagram.svg import render_svg
from fsm.diagram.table import render_markdown
from fsm.spec import MachineSpec

__all__ = ["FORMATS", "SUFFIXES", "TEXT_FORMATS", "render", "stale_diagrams", "write_diagrams"]

#: The file suffix of each format, in the order files are written.
SUFFIXES = {"mermaid": ".mmd", "dot": ".dot", "md": ".md", "svg": ".svg"}
#: Every format :func:`render` accepts.
FORMATS = tuple(SUFFIXES)
#: The formats whose output is deterministic, hence compared by :func:`stale_diagrams`.
TEXT_FORMATS = ("mermaid", "dot", "md")

_RENDERERS: dict[str, Callable[[DiagramGraph], str]] = {
    "mermaid": render_mermaid,
    "dot": render_dot,
    "md": render_markdown,
    "svg": lambda graph: render_svg(render_dot(graph)),
}


def render(spec: MachineSpec, fmt: str, *, highlight: Sequence[Edge] | None = None) -> str:
    """
    Render ``spec`` as ``fmt``.

    Args:
        spec: the machine.
        fmt: one of :data:`FORMATS` (``mermaid``, ``dot``, ``md``, ``svg``).
        highlight: (source, trigger, destination) steps of a path to emphasise, in order.

    Returns:
        The diagram text.

    Raises:
        ValueError: ``fmt`` is not a known format.
        UnknownTransition: a highlighted step is not an edge of the machine.
        GraphvizUnavailable: ``fmt`` is ``svg`` and pygraphviz is not installed.

    Example:
        >>> from fsm.spec import MachineSpec, Transition
        >>> close = Transition("close", ("Open",), "Shut")
        >>> door = MachineSpec("door", ("Open", "Shut"), "Open", frozenset({"Shut"}), (close,))
        >>> print(render(door, "mermaid", highlight=[("Open", "close", "Shut")]), end="")
        stateDiagram-v2
            [*] --> Open
            Open --> Shut: close (step 1)
            Shut --> [*]
            classDef visited fill:#fde0dc,stroke:#d62728,stroke-width:3px
            class Open,Shut visited
    """
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown diagram format {fmt!r}; expected one of {list(FORMATS)}")
    return renderer(extract(spec, highlight))


def write_diagrams(specs: Mapping[str, MachineSpec], directory: Path) -> list[Path]:
    """
    Write every format of every spec into ``directory`` (created if missing).

    Args:
        specs: machines by diagram name; files are named ``<name><suffix>``.
        directory: where to write.

    Returns:
        The written paths, by format (:data:`FORMATS` order) then spec.

    Raises:
        GraphvizUnavailable: pygraphviz is not installed (the text files are written first).
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    # SVG comes last, so that without pygraphviz the text diagrams are still written.
    for fmt in FORMATS:
        for name, spec in specs.items():
            path = directory / f"{name}{SUFFIXES[fmt]}"
            path.write_text(render(spec, fmt), encoding="utf-8", newline="\n")
            written.append(path)
    return written


def stale_diagrams(specs: Mapping[str, MachineSpec], directory: Path) -> list[Path]:
    """
    The text diagrams in ``directory`` that are missing or differ from a fresh render.

    Args:
        specs: machines by diagram name.
        directory: where the committed diagrams are.

    Returns:
        The stale or missing paths, by spec then format; empty when everything is fresh.
    """
    stale = []
    for name, spec in specs.items():
        for fmt in TEXT_FORMATS:
            path = directory / f"{name}{SUFFIXES[fmt]}"
            if not path.is_file() or path.read_text(encoding="utf-8") != render(spec, fmt):
                stale.append(path)
    return stale

"""
Diagrams of machine specs: Mermaid, DOT, a Markdown page with a transition table, and SVG.

A spec is extracted once into a small IR (:mod:`fsm.diagram.model`, :mod:`fsm.diagram.extract`), then
each format has its own renderer. :func:`render` is the entry point; :func:`write_diagrams` and
:func:`stale_diagrams` keep a directory of rendered diagrams in step with the live machines.
"""

from __future__ import annotations

from fsm.diagram.dot import render_dot
from fsm.diagram.extract import Edge, UnknownTransition, extract, guard_name
from fsm.diagram.mermaid import render_mermaid
from fsm.diagram.model import DiagramGraph, DiagramState, DiagramTransition
from fsm.diagram.render import FORMATS, SUFFIXES, TEXT_FORMATS, render, stale_diagrams, write_diagrams
from fsm.diagram.svg import GraphvizUnavailable, render_svg
from fsm.diagram.table import render_markdown, render_table

__all__ = [
    "DiagramGraph",
    "DiagramState",
    "DiagramTransition",
    "Edge",
    "FORMATS",
    "GraphvizUnavailable",
    "SUFFIXES",
    "TEXT_FORMATS",
    "UnknownTransition",
    "extract",
    "guard_name",
    "render",
    "render_dot",
    "render_markdown",
    "render_mermaid",
    "render_svg",
    "render_table",
    "stale_diagrams",
    "write_diagrams",
]

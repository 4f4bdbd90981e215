"""``failover diagram``: regenerate the diagrams of every machine (:func:`fsm.diagram.write_diagrams`)."""

from __future__ import annotations

from pathlib import Path

import click

from failover.cli.app import stderr, stdout
from fsm.diagram import GraphvizUnavailable, stale_diagrams, write_diagrams
from states import MACHINES

__all__ = ["diagram"]


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("diagrams"),
    show_default=True,
    help="Where the diagrams are.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a diagram is stale or missing.")
def diagram(directory: Path, check: bool) -> None:
    """
    Regenerate diagrams/: Mermaid, DOT, a Markdown table and SVG for each machine.

    The machines are the upload lifecycle and the request, operation and file lifecycles. SVG needs
    pygraphviz (the `diagrams` extra); without it the text diagrams are still written.

    \b
    Example:
        failover diagram
        failover diagram --check
    """
    if check:
        stale = stale_diagrams(MACHINES, directory)
        for path in stale:
            stderr().print(f"stale: {path}")
        if stale:
            raise click.exceptions.Exit(1)
        stdout().print(f"{directory}: up to date")
        return
    try:
        for path in write_diagrams(MACHINES, directory):
            stdout().print(str(path))
    except GraphvizUnavailable as err:
        # write_diagrams writes every text format before the first SVG.
        stderr().print(f"text diagrams written to {directory}; SVG skipped: {err}")

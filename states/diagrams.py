"""
Regenerate the committed diagrams of every machine: ``python -m states.diagrams [DIR] [--check]``.

Writes ``<name>.mmd``, ``.dot``, ``.md`` and ``.svg`` for each machine of :data:`states.MACHINES` into
DIR (default: the repository's ``diagrams/``). With ``--check`` nothing is written: the stale text
diagrams are listed and the exit status is 1 if there are any.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from fsm.diagram import stale_diagrams, write_diagrams
from states import MACHINES

__all__ = ["DEFAULT_DIRECTORY", "main"]

#: ``diagrams/`` next to the ``states`` package, at the root of the repository.
DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "diagrams"


def main(argv: Sequence[str] | None = None) -> int:
    """
    Write (or with ``--check``, verify) the diagrams of every machine.

    Args:
        argv: the command-line arguments without the program name; None reads ``sys.argv``.

    Returns:
        The exit status: 0, or 1 when ``--check`` finds stale diagrams.
    """
    parser = argparse.ArgumentParser(
        prog="python -m states.diagrams", description="Regenerate the diagrams of every machine."
    )
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--check", action="store_true", help="list stale diagrams instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_diagrams(MACHINES, args.directory)
        for path in stale:
            print(f"stale: {path}")
        return 1 if stale else 0
    for path in write_diagrams(MACHINES, args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""
The ``failover`` command line: thin wrappers over the library, one module per group of commands.

``main`` is the console script (``failover = "failover.cli:main"``); ``cli`` is the click group, for
tests (``click.testing.CliRunner``) and for documentation generated from it.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

from failover.cli.app import cli

__all__ = ["cli", "main"]

# In the order a user meets them; `failover --help` lists them so. Each module is imported when its
# command runs (or is listed), not at every start.
for _name, _path in (
    ("upload", "failover.cli.upload:upload"),
    ("status", "failover.cli.status:status"),
    ("history", "failover.cli.status:history"),
    ("explain", "failover.cli.status:explain"),
    ("requests", "failover.cli.requests:requests"),
    ("executor", "failover.cli.executor:executor"),
    ("resume", "failover.cli.executor:resume"),
    ("retry", "failover.cli.executor:retry"),
    ("cancel", "failover.cli.executor:cancel"),
    ("fsck", "failover.cli.fsck:fsck"),
    ("prune", "failover.cli.prune:prune"),
    ("diagram", "failover.cli.diagram:diagram"),
    ("demo", "failover.cli.demo:demo"),
):
    cli.add_lazy_command(_name, _path)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``failover`` command (``argv`` without the program name; None reads ``sys.argv``)."""
    # What is imported by now lives as long as the command: the collector need not walk it again (each
    # full collection did, and the one at exit: about 0.1 s of a run), and workers forked later share
    # those pages without the collector writing to them.
    gc.freeze()
    cli.main(args=list(argv) if argv is not None else None, prog_name="failover")

"""
A sandbox: a workspace directory with its database, master catalog and storage elements, wrapped by a
fault injector.

The crash matrix opens one per process (the crashed run, each restart) on the same directory, and the
pytest plugin gives one to each test. Everything lives under one directory, so a sandbox can be copied
to branch a run (the double-crash test does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from failover.environment import Environment
from failover.testing import FaultInjector
from failover.workspace import DEFAULT_CATALOG, open_workspace
from persistence.db import Durability

__all__ = ["CATALOG", "SANDBOX_SES", "Sandbox", "open_sandbox"]

#: Storage elements of a sandbox: two destinations and two failover SEs.
SANDBOX_SES = ("SE-A", "SE-B", "FAIL-1", "FAIL-2")
#: The sandbox's master catalog.
CATALOG = DEFAULT_CATALOG


@dataclass
class Sandbox:
    """
    One process's view of a sandbox directory.

    Attributes:
        home: the directory holding everything.
        raw: the environment without faults (for snapshots and fsck).
        env: the same environment with every SE and catalog call going through ``faults``.
        faults: scripts the faults of ``env``.
    """

    home: Path
    raw: Environment
    env: Environment
    faults: FaultInjector

    def close(self) -> None:
        """Close the database and catalog connections."""
        self.raw.close()


def open_sandbox(home: str | Path, *, faults: FaultInjector | None = None) -> Sandbox:
    """
    Open (creating if needed) a sandbox in ``home``.

    The database commits with ``synchronous=NORMAL``: a process killed at a crash point loses nothing
    that way (only a power cut could), and the matrix runs several times faster.

    Args:
        home: the sandbox directory.
        faults: the injector to wrap the environment with (default: a new one).
    """
    root = Path(home)
    raw = open_workspace(root, ses=SANDBOX_SES, durability=Durability.NORMAL)
    injector = faults or FaultInjector()
    return Sandbox(root, raw, injector.wrap(raw), injector)

"""
The embedded default: a workspace directory that needs no configuration file.

``$FAILOVER_HOME`` (default ``./.failover``) holds the failover database, an embedded SQLite master
catalog and two local storage elements, so ``FailoverTransfer()`` works out of the box.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from failover.catalog import CatalogSet, SQLiteCatalog
from failover.environment import Environment
from failover.storage import StorageElement
from failover.storage.paths import local_url
from persistence.db import Durability, open_store

__all__ = ["DEFAULT_CATALOG", "DEFAULT_SES", "open_workspace", "workspace_home"]

#: Storage elements of the embedded default, each a directory under ``<home>/se/``.
DEFAULT_SES = ("LOCAL-DISK", "FAILOVER-DISK")
#: The embedded master catalog.
DEFAULT_CATALOG = "LocalCatalog"


def workspace_home() -> Path:
    """The workspace directory: ``$FAILOVER_HOME``, else ``./.failover``."""
    return Path(os.environ.get("FAILOVER_HOME") or ".failover").absolute()


def open_workspace(
    home: str | Path | None = None,
    *,
    ses: Sequence[str] = DEFAULT_SES,
    durability: Durability = Durability.FULL,
) -> Environment:
    """
    Open (creating if needed) a workspace and return its environment.

    Args:
        home: the workspace directory (default: :func:`workspace_home`).
        ses: names of the local storage elements to provide.
        durability: the commit profile of the database and catalog.
    """
    root = (Path(home) if home is not None else workspace_home()).absolute()
    root.mkdir(parents=True, exist_ok=True)
    store = open_store(root / "failover.db", durability=durability)
    storage = {name: StorageElement(name, local_url(root / "se" / name)) for name in ses}
    catalog = SQLiteCatalog(DEFAULT_CATALOG, root / "catalog.db", master=True, durability=durability)
    return Environment(store=store, storage=storage, catalogs=CatalogSet([catalog]))

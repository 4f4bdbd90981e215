"""
File catalogs: where an uploaded file is registered (LFN → size, checksum, GUID and replicas).

:class:`FileCatalog` is the interface, :class:`SQLiteCatalog` the embedded implementation, and
:class:`CatalogSet` the configured catalogs from which an upload selects its own.
"""

from __future__ import annotations

from failover.catalog.base import CatalogSet, FileCatalog, FileEntry, Replica, conflicting_field
from failover.catalog.errors import map_catalog_errors
from failover.catalog.sqlite import SQLiteCatalog

__all__ = [
    "CatalogSet",
    "FileCatalog",
    "FileEntry",
    "Replica",
    "SQLiteCatalog",
    "conflicting_field",
    "map_catalog_errors",
]

"""
Errors raised by the persistence layer.

::

    StoreError            root: the store cannot do what was asked
    ├── SchemaTooNew      the database was written by a newer failover: upgrade, do not touch it
    ├── ConcurrentUpdate  another writer changed the row first (compare-and-swap lost)
    ├── NotFound          no such row
    └── AlreadyExists     a row with that key exists already
"""

from __future__ import annotations

__all__ = ["AlreadyExists", "ConcurrentUpdate", "NotFound", "SchemaTooNew", "StoreError"]


class StoreError(Exception):
    """Root of the persistence errors."""

    code = "store_error"


class SchemaTooNew(StoreError):
    """The database holds migrations this version does not know: it was written by a newer failover."""

    code = "schema_too_new"


class ConcurrentUpdate(StoreError):
    """Another writer updated the row first; nothing of this write was stored."""

    code = "concurrent_update"


class NotFound(StoreError):
    """The row asked for does not exist."""

    code = "not_found"


class AlreadyExists(StoreError):
    """A row with that key exists already."""

    code = "already_exists"

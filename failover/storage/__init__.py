"""
Storage elements: named fsspec roots where the replicas of LFNs are put, verified, read, copied and removed.

Errors from the storage layer come out as :mod:`failover.errors` classes, mapped in one place by
:func:`map_storage_errors`.
"""

from __future__ import annotations

from failover.storage.backends import FsspecBackend, LocalBackend
from failover.storage.element import StorageElement
from failover.storage.errors import map_storage_errors
from failover.storage.paths import check_lfn
from failover.storage.results import ObjectInfo, PutResult
from failover.storage.staged import PutItem

__all__ = [
    "FsspecBackend",
    "LocalBackend",
    "ObjectInfo",
    "PutItem",
    "PutResult",
    "StorageElement",
    "check_lfn",
    "map_storage_errors",
]

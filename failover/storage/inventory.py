"""
What a storage element holds: its objects as LFNs, and the temporary leftovers of crashed puts.

Dark-data checks compare :meth:`Inventory.list_lfns` with the catalog; recovery calls
:meth:`Inventory.remove_temporary` so that no orphan temporary object survives a crash (SPEC.md §6).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from typing import Any

from failover.storage.errors import map_storage_errors
from failover.storage.paths import is_temporary, lfn_from_path, relative_path

__all__ = ["Inventory"]


class Inventory:
    """
    Listing and cleanup over a storage element's root (a base of :class:`~failover.storage.StorageElement`).

    Only regular files count: directories and symbolic links are never listed nor removed.

    Attributes:
        name: the SE's name.
        fs: the fsspec filesystem holding the root.
        root: the root path, in the filesystem's own form.
    """

    name: str
    fs: Any
    root: str

    def list_lfns(self) -> Iterator[str]:
        """
        List the LFN of every visible object under the root (for dark-data checks).

        Temporary objects and symbolic links are left out.

        Returns:
            An iterator of LFNs, sorted.

        Raises:
            PermissionDenied: the SE refuses the listing.
            StorageUnavailable: the SE cannot be reached.
        """
        return (lfn_from_path(self.root, path) for path in self._list_files() if not is_temporary(path))

    def list_temporary(self) -> Iterator[str]:
        """
        List the temporary objects left behind by puts that crashed midway.

        Returns:
            An iterator of paths relative to the root (no leading ``/``), sorted.

        Raises:
            PermissionDenied: the SE refuses the listing.
            StorageUnavailable: the SE cannot be reached.
        """
        return (relative_path(self.root, path) for path in self._list_files() if is_temporary(path))

    def remove_temporary(self) -> int:
        """
        Remove the temporary objects left behind by crashed puts.

        A put in progress on this SE also has a temporary object, so call this only when no put is running
        against the SE (at recovery, before uploads and the executor start).

        Returns:
            How many temporary objects were removed.

        Raises:
            PermissionDenied: the SE refuses the removal.
            StorageUnavailable: the SE cannot be reached.
        """
        removed = 0
        for relative in list(self.list_temporary()):
            with map_storage_errors(self.name), suppress(FileNotFoundError):
                self.fs.rm_file(f"{self.root.rstrip('/')}/{relative}")
                removed += 1
        return removed

    def _check_root(self) -> None:
        """Raise when the root cannot be used now (the storage element says when: see ``create_root``)."""

    def _list_files(self) -> list[str]:
        self._check_root()
        with map_storage_errors(self.name):
            found = self.fs.find(self.root, detail=True)
        return sorted(path for path, info in found.items() if info.get("type") == "file")

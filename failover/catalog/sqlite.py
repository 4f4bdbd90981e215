"""
The embedded catalog: a :class:`~failover.catalog.base.FileCatalog` in its own SQLite database.

Several :class:`SQLiteCatalog` objects, in one process or several, may share one database file: each
method runs in one transaction (writes in ``BEGIN IMMEDIATE``), so they see each other's committed
writes and never interleave a check with another writer's change.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from failover.catalog.base import FileEntry, Replica, conflicting_field
from failover.catalog.errors import map_catalog_errors
from failover.errors import InvalidInput, RegistrationRefused
from failover.validation.namespace import lfn_directories
from fsm.clock import Clock, format_time, utc_now
from persistence.catalog import (
    CATALOG_SCHEMA,
    CatalogFileRow,
    CatalogReplicaRow,
    delete_catalog_file,
    delete_catalog_replica,
    find_catalog_guid,
    find_file_above_or_below,
    insert_new_catalog_file,
    insert_new_catalog_replica,
    load_catalog_file,
    load_catalog_replica,
    load_catalog_replicas,
    page_catalog_files,
)
from persistence.db import DEFAULT_BUSY_TIMEOUT_MS, Durability, Store, open_store

__all__ = ["SQLiteCatalog"]

#: How many files :meth:`SQLiteCatalog.iter_files` reads per query.
PAGE_SIZE = 500


def _entry(row: CatalogFileRow) -> FileEntry:
    return FileEntry(row.lfn, row.size, row.checksum, row.checksum_type, row.guid)


def _replica(row: CatalogReplicaRow) -> Replica:
    return Replica(row.lfn, row.se, row.pfn)


def _path_conflict(conn: sqlite3.Connection, lfn: str) -> str | None:
    """
    Why ``lfn`` cannot be a file in the namespace, or ``None``: like a file system's, the catalog's
    names are files or directories, never both.
    """
    above = lfn_directories(lfn)
    found = find_file_above_or_below(conn, lfn, above)
    if found is None:
        return None
    if found in above:
        return f"{found} is a file, not a directory"
    return f"it is a directory (it holds {found})"


class SQLiteCatalog:
    """
    A file catalog stored in a SQLite database.

    The database is opened lazily, on the first call, and reopened on the next call after a failed
    open: a catalog that is down when the configuration is read must not stop uploads (they defer
    their registration), and must work again once it is back. One object is used by one thread.

    Args:
        name: the catalog's configured name, carried by every error it raises.
        path: the database file (its directory must exist), or ``":memory:"`` for a private one.
        master: whether this is a master catalog.
        durability: the commit profile of the database.
        busy_timeout_ms: how long to wait for another writer before the catalog counts as unavailable.
        clock: gives the registration time stored with each file.

    Every method raises :class:`~failover.errors.CatalogUnavailable` (catalog set) when the database
    cannot be opened or used right now, and :class:`~failover.errors.PermanentError` when it is damaged
    or was written by a newer failover.
    """

    def __init__(
        self,
        name: str,
        path: str | Path,
        *,
        master: bool = False,
        durability: Durability = Durability.FULL,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        clock: Clock = utc_now,
    ) -> None:
        self.name = name
        self.master = master
        self.path = path
        self.durability = durability
        self.busy_timeout_ms = busy_timeout_ms
        self.clock = clock
        self._store: Store | None = None

    def __repr__(self) -> str:
        return f"SQLiteCatalog({self.name!r}, {str(self.path)!r}, master={self.master})"

    def close(self) -> None:
        """Close the database connection; the next call opens it again."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def _open(self) -> Store:
        if self._store is None:
            self._store = open_store(
                self.path,
                durability=self.durability,
                busy_timeout_ms=self.busy_timeout_ms,
                schema=CATALOG_SCHEMA,
            )
        return self._store

    # Every call maps its errors (map_catalog_errors) around opening the database and using it; the
    # context managers are entered inline, without a generator-based wrapper around them: the executor
    # makes several catalog calls per file.

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """
        Group the writes of the block into one transaction (one commit, one fsync).

        Each write inside still succeeds or fails alone (it runs as a savepoint); the block's successful
        writes are committed together when it ends. Used to register many files at once.
        """
        with map_catalog_errors(self.name), self._open().transaction():
            yield

    def _refuse(self, lfn: str, reason: str) -> RegistrationRefused:
        return RegistrationRefused(
            f"catalog {self.name!r} refuses {lfn}: {reason}", catalog=self.name, lfn=lfn
        )

    def get_file(self, lfn: str) -> FileEntry | None:
        """Return what is registered for ``lfn``, or ``None``."""
        with map_catalog_errors(self.name, lfn):
            row = load_catalog_file(self._open().conn, lfn)
        return None if row is None else _entry(row)

    def get_replicas(self, lfn: str) -> list[Replica]:
        """Return the replicas of ``lfn``, ordered by SE (empty when none or not registered)."""
        with map_catalog_errors(self.name, lfn):
            return [_replica(row) for row in load_catalog_replicas(self._open().conn, lfn)]

    def find_guid(self, guid: str) -> str | None:
        """Return the LFN registered with ``guid`` (case-insensitive), or ``None``."""
        with map_catalog_errors(self.name):
            return find_catalog_guid(self._open().conn, guid.strip())

    def path_conflict(self, lfn: str) -> str | None:
        """Say why ``lfn`` cannot be a file here (a file above it, or files below it), or ``None``."""
        with map_catalog_errors(self.name, lfn):
            return _path_conflict(self._open().conn, lfn)

    def register_file(self, entry: FileEntry, replica: Replica) -> bool:
        """
        Register a file and one replica of it in one transaction.

        Registering an identical entry again (checksums compared tolerantly, GUIDs case-insensitively)
        is a success that writes nothing, which is what makes a retried registration safe.

        Returns:
            ``True`` if the file or the replica was written; ``False`` if both were there already.

        Raises:
            RegistrationRefused: the LFN is registered with another size, checksum type, checksum or
                GUID; the GUID belongs to another LFN; the SE holds another PFN for the LFN; or the LFN
                clashes with the namespace (see :meth:`path_conflict`).
            InvalidInput: the checksum type or checksum is invalid, or the replica is of another LFN.
            CatalogUnavailable: the catalog cannot be reached.
        """
        wanted = entry.normalized()
        if replica.lfn != entry.lfn:
            raise InvalidInput(f"replica of {replica.lfn} given for {entry.lfn}", lfn=entry.lfn)
        with map_catalog_errors(self.name, entry.lfn), self._open().transaction() as conn:
            added = self._add_file(conn, wanted)
            return self._add_replica(conn, replica) or added

    def _add_file(self, conn: sqlite3.Connection, wanted: FileEntry) -> bool:
        at = format_time(self.clock())
        row = CatalogFileRow(wanted.lfn, wanted.size, wanted.checksum, wanted.checksum_type, wanted.guid, at)
        # The usual case, a new file, is one insert and the namespace's two lookups; a refusal rolls the
        # insert back with the transaction (or the batch's savepoint).
        if insert_new_catalog_file(conn, row):
            conflict = _path_conflict(conn, wanted.lfn)
            if conflict is not None:
                raise self._refuse(wanted.lfn, conflict)
            return True
        registered = load_catalog_file(conn, wanted.lfn)
        if registered is None:
            holder = find_catalog_guid(conn, wanted.guid)
            raise self._refuse(wanted.lfn, f"guid {wanted.guid!r} is already used by {holder}")
        field = conflicting_field(_entry(registered), wanted)
        if field is not None:
            old, new = getattr(registered, field), getattr(wanted, field)
            raise self._refuse(wanted.lfn, f"registered with {field} {old!r}, not {new!r}")
        return False

    def _add_replica(self, conn: sqlite3.Connection, replica: Replica) -> bool:
        if insert_new_catalog_replica(conn, CatalogReplicaRow(replica.lfn, replica.se, replica.pfn)):
            return True
        row = load_catalog_replica(conn, replica.lfn, replica.se)
        if row is not None and row.pfn != replica.pfn:
            reason = f"replica at {replica.se} registered with pfn {row.pfn!r}, not {replica.pfn!r}"
            raise self._refuse(replica.lfn, reason)
        return False

    def register_replica(self, replica: Replica) -> bool:
        """
        Add a replica of a registered file.

        Returns:
            ``True`` if added; ``False`` if the same replica (same SE and PFN) was there already.

        Raises:
            RegistrationRefused: the file is not registered, or the SE holds another PFN for it.
            CatalogUnavailable: the catalog cannot be reached.
        """
        with map_catalog_errors(self.name, replica.lfn), self._open().transaction() as conn:
            if load_catalog_file(conn, replica.lfn) is None:
                raise self._refuse(replica.lfn, "file not registered")
            return self._add_replica(conn, replica)

    def remove_replica(self, lfn: str, se: str) -> bool:
        """
        Remove the replica of ``lfn`` at ``se``. The file entry stays, even without replicas.

        Returns:
            ``True`` if removed; ``False`` if it was absent.

        Raises:
            CatalogUnavailable: the catalog cannot be reached.
        """
        with map_catalog_errors(self.name, lfn), self._open().transaction() as conn:
            return delete_catalog_replica(conn, lfn, se)

    def remove_file(self, lfn: str) -> bool:
        """
        Remove the entry of ``lfn`` and all its replicas.

        Returns:
            ``True`` if removed; ``False`` if it was absent.

        Raises:
            CatalogUnavailable: the catalog cannot be reached.
        """
        with map_catalog_errors(self.name, lfn), self._open().transaction() as conn:
            return delete_catalog_file(conn, lfn)

    def iter_files(self) -> Iterator[tuple[FileEntry, list[Replica]]]:
        """
        Yield every registered file with its replicas, in LFN order.

        Files are read :data:`PAGE_SIZE` at a time, each page in one statement (a consistent snapshot),
        and no cursor stays open between pages, so the caller may write to the catalog while iterating.
        A file changed during the iteration may be seen before or after the change.

        Raises:
            CatalogUnavailable: the catalog cannot be reached.
        """
        after: str | None = None
        while True:
            with map_catalog_errors(self.name):
                page = page_catalog_files(self._open().conn, after, PAGE_SIZE)
            for row, replicas in page:
                yield _entry(row), [_replica(replica) for replica in replicas]
            if len(page) < PAGE_SIZE:
                return
            after = page[-1][0].lfn

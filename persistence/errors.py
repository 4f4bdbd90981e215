"""
Errors raised by the persistence layer.

::

    StoreError               root: the store cannot do what was asked
    ├── SchemaTooNew         the database was written by a newer failover: upgrade, do not touch it
    ├── NetworkFilesystem    the database is on a network filesystem, where SQLite corrupts it
    ├── ConcurrentUpdate     another writer changed the row first (compare-and-swap lost)
    ├── NotFound             no such row
    ├── AlreadyExists        a row with that key exists already
    ├── ConstraintViolation  a write broke a constraint (a duplicate key, a missing parent row)
    └── StoreUnavailable     the database cannot be opened or used now (locked, I/O error, full)

:func:`map_sqlite_errors` is the one place ``sqlite3`` errors become these.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

__all__ = [
    "AlreadyExists",
    "ConcurrentUpdate",
    "ConstraintViolation",
    "NetworkFilesystem",
    "NotFound",
    "SchemaTooNew",
    "StoreError",
    "StoreUnavailable",
    "TransactionAborted",
    "map_sqlite_errors",
    "store_error",
]


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


class ConstraintViolation(StoreError):
    """A write broke one of the database's constraints; nothing of the transaction was stored."""

    code = "constraint_violation"


class TransactionAborted(StoreError):
    """A block inside a savepoint-less transaction failed, so the transaction committed nothing."""

    code = "transaction_aborted"


class NetworkFilesystem(StoreError):
    """The database is on a network filesystem (NFS, SMB, AFS...), where SQLite's locks and WAL fail."""

    code = "network_filesystem"


class StoreUnavailable(StoreError):
    """The database cannot be opened or used right now (locked past the timeout, I/O error, disk full)."""

    code = "store_unavailable"


@contextlib.contextmanager
def map_sqlite_errors(path: str) -> Iterator[None]:
    """Turn ``sqlite3`` errors raised in the block into store errors naming the database."""
    try:
        yield
    except sqlite3.Error as exc:
        raise store_error(path, exc) from exc


def store_error(path: str, exc: sqlite3.Error) -> StoreError:
    """The store error a ``sqlite3`` error on the database at ``path`` stands for."""
    if isinstance(exc, sqlite3.IntegrityError):
        return ConstraintViolation(f"{path}: {exc}")
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"{path}: {exc}")
    return StoreError(f"{path}: {exc}")

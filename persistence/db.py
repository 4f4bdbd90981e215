"""
Opening a failover database and running transactions on it.

A :class:`Store` owns one ``sqlite3`` connection in autocommit mode (``isolation_level=None``) so
that transactions are exactly the ones we open: :meth:`Store.transaction` issues ``BEGIN IMMEDIATE``
(sqlite-utils' ``atomic()`` issues a deferred ``BEGIN``, which makes concurrent writers fail with
"database is locked" instead of waiting) and nests as savepoints.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import sqlite_utils
from sqlite_utils import Migrations

from persistence.errors import map_sqlite_errors
from persistence.migrations import MIGRATIONS, apply_migrations

__all__ = ["DEFAULT_BUSY_TIMEOUT_MS", "Durability", "Store", "open_store"]

#: How long a writer waits for another writer's lock before giving up.
DEFAULT_BUSY_TIMEOUT_MS = 30_000


class Durability(StrEnum):
    """
    How hard a commit works to survive a power cut.

    ``FULL`` (the default) fsyncs the WAL on every commit: an acknowledged transition survives a power
    cut. ``NORMAL`` fsyncs only at checkpoints: still safe against a process crash (the guarantee the
    crash tests check), but the last commits may be lost if the machine loses power. Several times
    faster for many small files.
    """

    FULL = "FULL"
    NORMAL = "NORMAL"


class Store:
    """
    A failover database: connection, sqlite-utils view of it, and transactions.

    Args:
        path: the database file; ``":memory:"`` for a private in-memory database.
        durability: the commit profile (see :class:`Durability`).
        busy_timeout_ms: how long to wait for another writer.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        durability: Durability = Durability.FULL,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = str(path)
        self.durability = Durability(durability)
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {self.durability.value}")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.db = sqlite_utils.Database(self.conn)
        # Savepoint names only need to differ from the enclosing ones on this connection.
        self._savepoints = itertools.count()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """
        Run the block in one write transaction (``BEGIN IMMEDIATE``), or a savepoint when nested.

        The block's writes are committed together when it ends, or all rolled back if it raises; the
        original exception propagates (``sqlite3`` errors as :class:`StoreError` subclasses).
        """
        with map_sqlite_errors(self.path), self._transaction() as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        if conn.in_transaction:
            name = f"sp_{next(self._savepoints)}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield conn
            except BaseException:
                # An error may already have destroyed the whole transaction, savepoint included.
                if conn.in_transaction:
                    conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            conn.execute(f"RELEASE SAVEPOINT {name}")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def integrity_check(self) -> list[str]:
        """Run SQLite's integrity and foreign-key checks; return the problems found (empty when sound)."""
        problems = [row[0] for row in self.conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
        for table, rowid, parent, _ in self.conn.execute("PRAGMA foreign_key_check"):
            # WITHOUT ROWID tables (the journal) have no row number to name.
            where = f"row {rowid}" if rowid is not None else "a row"
            problems.append(f"{table} {where} refers to a missing {parent} row")
        return problems


def open_store(
    path: str | Path,
    *,
    durability: Durability = Durability.FULL,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    migrations: Migrations = MIGRATIONS,
) -> Store:
    """
    Open (creating if needed) a failover database and bring its schema up to date.

    Args:
        path: the database file (its directory must exist), or ``":memory:"``.
        durability: the commit profile.
        busy_timeout_ms: how long to wait for another writer.
        migrations: the migration set that defines this database's schema (the engine's by default;
            the embedded catalog has its own).

    Returns:
        The open store.

    Raises:
        SchemaTooNew: the database was written by a newer version of failover.
    """
    with map_sqlite_errors(str(path)):
        store = Store(path, durability=durability, busy_timeout_ms=busy_timeout_ms)
    try:
        with store.transaction():
            apply_migrations(store.db, migrations)
    except BaseException:
        store.close()
        raise
    return store

"""
Opening a failover database and running transactions on it.

A :class:`Store` owns one ``sqlite3`` connection in autocommit mode (``isolation_level=None``) so
that transactions are exactly the ones we open: :meth:`Store.transaction` issues ``BEGIN IMMEDIATE``
(sqlite-utils' ``atomic()`` issues a deferred ``BEGIN``, which makes concurrent writers fail with
"database is locked" instead of waiting) and nests as savepoints.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from persistence.errors import TransactionAborted, map_sqlite_errors, store_error
from persistence.filesystems import refuse_network_filesystem
from persistence.migrations import SCHEMA
from persistence.schema import Schema, sqlite_utils_view

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["DEFAULT_BUSY_TIMEOUT_MS", "Durability", "Store", "Transaction", "open_store"]

#: How long a writer waits for another writer's lock before giving up.
DEFAULT_BUSY_TIMEOUT_MS = 30_000


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """
    Put the database in WAL mode (a no-op when it is already).

    Several processes opening a new database at once race to switch it: SQLite then answers "database
    is locked" at once, without waiting through the busy timeout (it cannot wait there without risking
    a deadlock). The switch is tried again, with growing pauses, until the busy timeout has passed.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


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
            _switch_to_wal(self.conn, busy_timeout_ms)
        self.conn.execute(f"PRAGMA synchronous = {self.durability.value}")
        self.conn.execute("PRAGMA foreign_keys = ON")
        # Set while a transaction opened with savepoints=False runs: whether a block inside it failed.
        self._unit_failed: bool | None = None
        # Set while a snapshot is open: a write inside it would be rolled back with it.
        self._reading = False

    @cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils' view of the connection (imported on first use: the hot paths need none of it)."""
        return sqlite_utils_view(self.conn)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self, *, savepoints: bool = True) -> Transaction:
        """
        Run the block in one write transaction (``BEGIN IMMEDIATE``), or a savepoint when nested.

        The block's writes are committed together when it ends, or all rolled back if it raises; the
        original exception propagates (``sqlite3`` errors as :class:`StoreError` subclasses).

        With ``savepoints=False`` (outermost block only) the blocks nested in this one take no savepoint
        each: the whole is one unit. A nested block that raises marks it failed, and it then commits
        nothing even if the error was caught inside: it rolls back and raises
        :class:`~persistence.errors.TransactionAborted`. For a caller that lets any error end the whole
        transaction anyway, and would pay two statements per nested block for nothing.
        """
        return Transaction(self, savepoints)

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """
        Run the block's reads on one view of the database: a read transaction (a deferred ``BEGIN``), in
        which what other connections commit meanwhile is not seen (the write-ahead log keeps the view).
        For a check that reads many rows and needs them to agree with each other (fsck). Keep it short:
        the log cannot be reset while it is open.

        Raises:
            TransactionAborted: a transaction is open already, or one is started inside the block (its
                writes would be rolled back with the snapshot).
        """
        if self.conn.in_transaction:
            raise TransactionAborted(f"{self.path}: a snapshot cannot be taken inside a transaction")
        self.conn.execute("BEGIN")
        self._reading = True
        try:
            yield self.conn
        finally:
            self._reading = False
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def integrity_check(self) -> list[str]:
        """Run SQLite's integrity and foreign-key checks; return the problems found (empty when sound)."""
        problems = [row[0] for row in self.conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
        for table, rowid, parent, _ in self.conn.execute("PRAGMA foreign_key_check"):
            # WITHOUT ROWID tables (the journal) have no row number to name.
            where = f"row {rowid}" if rowid is not None else "a row"
            problems.append(f"{table} {where} refers to a missing {parent} row")
        return problems


class Transaction(AbstractContextManager[sqlite3.Connection]):
    """
    What :meth:`Store.transaction` returns: entered, it opens a transaction or a savepoint (nothing
    inside a transaction opened with ``savepoints=False``); left, it commits (releases) or rolls back.

    A class rather than a generator: the executor and uploads enter several per file, and a
    generator-based context manager costs several times as much to enter and leave.
    """

    __slots__ = ("_conn", "_mode", "_savepoints", "_store")

    def __init__(self, store: Store, savepoints: bool = True) -> None:
        self._store = store
        self._conn = store.conn
        self._savepoints = savepoints
        self._mode = ""

    def __enter__(self) -> sqlite3.Connection:
        if self._store._reading:
            raise TransactionAborted(f"{self._store.path}: nothing may be written inside a snapshot")
        if not self._conn.in_transaction:
            self._mode = "outer"
            self._run("BEGIN IMMEDIATE")
            self._store._unit_failed = None if self._savepoints else False
        elif self._store._unit_failed is not None:
            self._mode = "in-unit"
        else:
            self._mode = "savepoint"
            # One savepoint name for all: savepoints nest strictly, and RELEASE / ROLLBACK TO act on
            # the innermost of that name. A fixed text also keeps the statement in sqlite3's cache.
            self._run("SAVEPOINT sp")
        return self._conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._mode == "in-unit":
            if exc is not None:
                self._store._unit_failed = True
        elif self._mode == "savepoint":
            self._leave_savepoint(exc)
        else:
            failed = self._store._unit_failed
            self._store._unit_failed = None
            if exc is None and failed:
                self._run("ROLLBACK")
                message = f"{self._store.path}: a block inside the transaction failed; nothing committed"
                raise TransactionAborted(message)
            if exc is None:
                self._commit()
            elif self._conn.in_transaction:  # an error may already have ended the transaction
                self._run("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise store_error(self._store.path, exc) from exc

    def _leave_savepoint(self, exc: BaseException | None) -> None:
        if exc is None:
            self._run("RELEASE SAVEPOINT sp")
        elif self._conn.in_transaction:  # an error may already have destroyed the savepoint
            self._run("ROLLBACK TO SAVEPOINT sp")
            self._run("RELEASE SAVEPOINT sp")

    def _commit(self) -> None:
        try:
            self._run("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._run("ROLLBACK")
            raise

    def _run(self, statement: str) -> None:
        try:
            self._conn.execute(statement)
        except sqlite3.Error as exc:
            raise store_error(self._store.path, exc) from exc


def open_store(
    path: str | Path,
    *,
    durability: Durability = Durability.FULL,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    schema: Schema = SCHEMA,
) -> Store:
    """
    Open (creating if needed) a failover database and bring its schema up to date.

    Args:
        path: the database file (its directory must exist), or ``":memory:"``.
        durability: the commit profile.
        busy_timeout_ms: how long to wait for another writer.
        schema: the migration set that defines this database's schema (the engine's by default;
            the embedded catalog has its own).

    Returns:
        The open store.

    Raises:
        SchemaTooNew: the database was written by a newer version of failover.
        NetworkFilesystem: the database is on a network filesystem (see :mod:`persistence.filesystems`).
    """
    if str(path) != ":memory:":
        refuse_network_filesystem(path)
    with map_sqlite_errors(str(path)):
        store = Store(path, durability=durability, busy_timeout_ms=busy_timeout_ms)
    try:
        # Read first, outside any write lock: a database already up to date needs neither the lock
        # nor sqlite-utils.
        with map_sqlite_errors(str(path)):
            current = schema.is_current(store.conn)
        if not current:
            with store.transaction():
                schema.apply(store.conn)
    except BaseException:
        store.close()
        raise
    return store

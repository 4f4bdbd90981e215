"""
SQLite persistence for failover.

One :class:`Store` wraps one database file: WAL mode, a busy timeout, ``synchronous=FULL`` unless the
faster :attr:`Durability.NORMAL` profile is chosen, and ordered migrations (:mod:`persistence.schema`).
Writers go through :meth:`Store.transaction`, which issues ``BEGIN IMMEDIATE``. Every query is plain
SQL on the connection; sqlite-utils runs the migrations, and is imported only when one is pending.
"""

from __future__ import annotations

from persistence.db import Durability, Store, open_store
from persistence.errors import AlreadyExists, ConcurrentUpdate, NotFound, SchemaTooNew, StoreError
from persistence.rows import EmittedRow, JournalRow, MachineRow

__all__ = [
    "AlreadyExists",
    "ConcurrentUpdate",
    "Durability",
    "EmittedRow",
    "JournalRow",
    "MachineRow",
    "NotFound",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "open_store",
]

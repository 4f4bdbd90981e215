"""
The engine's schema, as the ordered migrations of the ``failover`` migration set.

Migrations are append-only: a released migration is never edited, a change is a new migration added
to :data:`SCHEMA`. A database that records a migration this version does not know was written by a
newer failover, and is refused rather than guessed at (:meth:`~persistence.schema.Schema.apply`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from persistence.schema import Schema

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["SCHEMA"]


def m001_machines_journal_emitted(db: sqlite_utils.Database) -> None:
    """State-machine instances, their journal and what their transitions emitted."""
    db.execute(
        """
        CREATE TABLE machines (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            version INTEGER NOT NULL,
            data TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX machines_kind_state ON machines (kind, state)")
    db.execute(
        """
        CREATE TABLE journal (
            machine_id TEXT NOT NULL REFERENCES machines (id),
            seq INTEGER NOT NULL,
            at TEXT NOT NULL,
            trigger TEXT NOT NULL,
            src TEXT,
            dst TEXT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (machine_id, seq)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE emitted (
            id INTEGER PRIMARY KEY,
            idem_key TEXT NOT NULL UNIQUE,
            machine_id TEXT NOT NULL REFERENCES machines (id),
            seq INTEGER NOT NULL,
            position INTEGER NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX emitted_machine ON emitted (machine_id, seq)")


def m002_request_store(db: sqlite_utils.Database) -> None:
    """The request store: requests, their operations and the operations' files (SPEC.md §4)."""
    db.execute(
        """
        CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            client_key TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            owner TEXT NOT NULL,
            owner_group TEXT NOT NULL,
            source_component TEXT NOT NULL,
            job_id INTEGER NOT NULL,
            status TEXT NOT NULL,
            error TEXT NOT NULL,
            creation_time TEXT NOT NULL,
            submit_time TEXT,
            last_update TEXT NOT NULL,
            not_before TEXT,
            committed_at TEXT,
            lease_owner TEXT,
            lease_expires TEXT
        )
        """
    )
    db.execute("CREATE INDEX requests_due ON requests (status, not_before) WHERE committed_at IS NOT NULL")
    db.execute(
        """
        CREATE TABLE operations (
            id INTEGER PRIMARY KEY,
            request_id INTEGER NOT NULL REFERENCES requests (id),
            idem_key TEXT UNIQUE,
            machine_id TEXT REFERENCES machines (id),
            order_no INTEGER NOT NULL,
            type TEXT NOT NULL,
            status TEXT NOT NULL,
            target_se TEXT NOT NULL,
            source_se TEXT NOT NULL,
            catalog TEXT NOT NULL,
            arguments TEXT NOT NULL,
            error TEXT NOT NULL,
            creation_time TEXT NOT NULL,
            last_update TEXT NOT NULL,
            UNIQUE (request_id, order_no)
        )
        """
    )
    db.execute("CREATE INDEX operations_machine ON operations (machine_id)")
    db.execute(
        """
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            operation_id INTEGER NOT NULL REFERENCES operations (id),
            lfn TEXT NOT NULL,
            pfn TEXT NOT NULL,
            checksum TEXT NOT NULL,
            checksum_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            guid TEXT NOT NULL,
            status TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            error TEXT NOT NULL,
            errors TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX files_operation ON files (operation_id)")
    db.execute("CREATE INDEX files_lfn ON files (lfn)")


#: The engine database's schema.
SCHEMA = Schema("failover", (m001_machines_journal_emitted, m002_request_store))

"""
The embedded file catalog's schema and plain-SQL access to it.

The catalog lives in its own database with its own migration set, ``failover-catalog``, so that one
catalog file can be shared by several engines (or stand alone) without carrying the engine's tables.

Two tables: ``catalog_files`` (one row per LFN: size, canonical checksum and its type, GUID, creation
time) and ``catalog_replicas`` (one row per LFN and SE: the PFN). These functions neither validate nor
compare metadata and let ``sqlite3`` errors through: deciding what is a conflict, and mapping errors,
is the catalog client's job (``failover.catalog``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from persistence.schema import Schema

if TYPE_CHECKING:
    import sqlite_utils

__all__ = [
    "CATALOG_SCHEMA",
    "CatalogFileRow",
    "CatalogReplicaRow",
    "delete_catalog_file",
    "delete_catalog_replica",
    "find_catalog_guid",
    "find_file_above_or_below",
    "insert_new_catalog_file",
    "insert_new_catalog_replica",
    "load_catalog_file",
    "load_catalog_replica",
    "load_catalog_replicas",
    "page_catalog_files",
]

_FILE_COLUMNS = "lfn, size, checksum, checksum_type, guid, created_at"


def m001_catalog_files_replicas(db: sqlite_utils.Database) -> None:
    """Registered files and their replicas."""
    # NOCASE makes the UNIQUE constraint and GUID lookups case-insensitive, as GUIDs are.
    db.execute(
        """
        CREATE TABLE catalog_files (
            lfn TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            checksum TEXT NOT NULL,
            checksum_type TEXT NOT NULL,
            guid TEXT NOT NULL UNIQUE COLLATE NOCASE,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE catalog_replicas (
            lfn TEXT NOT NULL REFERENCES catalog_files (lfn),
            se TEXT NOT NULL,
            pfn TEXT NOT NULL,
            PRIMARY KEY (lfn, se)
        ) WITHOUT ROWID
        """
    )


#: The catalog database's schema.
CATALOG_SCHEMA = Schema("failover-catalog", (m001_catalog_files_replicas,))


@dataclass(frozen=True)
class CatalogFileRow:
    """One registered file, as stored (checksum canonical, GUID as registered)."""

    lfn: str
    size: int
    checksum: str
    checksum_type: str
    guid: str
    created_at: str


@dataclass(frozen=True)
class CatalogReplicaRow:
    """One replica of a registered file."""

    lfn: str
    se: str
    pfn: str


def _file_row(values: tuple[Any, ...]) -> CatalogFileRow:
    return CatalogFileRow(*values)


def load_catalog_file(conn: sqlite3.Connection, lfn: str) -> CatalogFileRow | None:
    """Return the file registered under ``lfn``, or ``None``."""
    values = conn.execute(f"SELECT {_FILE_COLUMNS} FROM catalog_files WHERE lfn = ?", (lfn,)).fetchone()
    return None if values is None else _file_row(values)


def find_catalog_guid(conn: sqlite3.Connection, guid: str) -> str | None:
    """Return the LFN registered with ``guid`` (compared case-insensitively), or ``None``."""
    values = conn.execute("SELECT lfn FROM catalog_files WHERE guid = ?", (guid,)).fetchone()
    return None if values is None else str(values[0])


def find_file_above_or_below(conn: sqlite3.Connection, lfn: str, above: list[str]) -> str | None:
    """
    Return a registered file among ``above`` (the directories above ``lfn``) or below ``lfn`` (``/vo/a/x``
    for ``/vo/a``), or ``None``: one statement, two lookups of the primary key.
    """
    # Every LFN below "/vo/a" sorts between "/vo/a/" and "/vo/a0" ("0" follows "/"): one range of the key.
    marks = ", ".join("?" * len(above))
    values = conn.execute(
        f"SELECT lfn FROM catalog_files WHERE lfn IN ({marks}) OR (lfn > ? AND lfn < ?) LIMIT 1",
        (*above, lfn + "/", lfn + "0"),
    ).fetchone()
    return None if values is None else str(values[0])


def insert_new_catalog_file(conn: sqlite3.Connection, row: CatalogFileRow) -> bool:
    """
    Insert a file unless its LFN or GUID is registered already; return whether it was inserted.

    A duplicate is skipped, not raised (``ON CONFLICT DO NOTHING`` covers the uniqueness constraints
    only: a missing value still raises), so the usual case, a new file, costs one statement.
    """
    cursor = conn.execute(
        f"INSERT INTO catalog_files ({_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (row.lfn, row.size, row.checksum, row.checksum_type, row.guid, row.created_at),
    )
    return cursor.rowcount == 1


def delete_catalog_file(conn: sqlite3.Connection, lfn: str) -> bool:
    """Delete a file and all its replicas; return whether the file was there."""
    conn.execute("DELETE FROM catalog_replicas WHERE lfn = ?", (lfn,))
    return conn.execute("DELETE FROM catalog_files WHERE lfn = ?", (lfn,)).rowcount == 1


def load_catalog_replicas(conn: sqlite3.Connection, lfn: str) -> list[CatalogReplicaRow]:
    """Return a file's replicas, ordered by SE."""
    rows = conn.execute("SELECT lfn, se, pfn FROM catalog_replicas WHERE lfn = ? ORDER BY se", (lfn,))
    return [CatalogReplicaRow(*values) for values in rows]


def load_catalog_replica(conn: sqlite3.Connection, lfn: str, se: str) -> CatalogReplicaRow | None:
    """Return the replica of ``lfn`` at ``se``, or ``None``."""
    values = conn.execute(
        "SELECT lfn, se, pfn FROM catalog_replicas WHERE lfn = ? AND se = ?", (lfn, se)
    ).fetchone()
    return None if values is None else CatalogReplicaRow(*values)


def insert_new_catalog_replica(conn: sqlite3.Connection, row: CatalogReplicaRow) -> bool:
    """
    Insert a replica unless the file has one at that SE already; return whether it was inserted.

    The file must be registered (the foreign key still raises).
    """
    cursor = conn.execute(
        "INSERT INTO catalog_replicas (lfn, se, pfn) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (row.lfn, row.se, row.pfn),
    )
    return cursor.rowcount == 1


def delete_catalog_replica(conn: sqlite3.Connection, lfn: str, se: str) -> bool:
    """Delete the replica of ``lfn`` at ``se``; return whether it was there. The file row stays."""
    cursor = conn.execute("DELETE FROM catalog_replicas WHERE lfn = ? AND se = ?", (lfn, se))
    return cursor.rowcount == 1


def page_catalog_files(
    conn: sqlite3.Connection, after: str | None, limit: int
) -> list[tuple[CatalogFileRow, list[CatalogReplicaRow]]]:
    """
    Return up to ``limit`` files with LFN greater than ``after`` (all when ``None``), in LFN order.

    One statement reads the files and their replicas together, so a page is one consistent snapshot.
    """
    rows = conn.execute(
        "SELECT f.lfn, f.size, f.checksum, f.checksum_type, f.guid, f.created_at, r.se, r.pfn "
        "FROM (SELECT * FROM catalog_files WHERE lfn > ? ORDER BY lfn LIMIT ?) AS f "
        "LEFT JOIN catalog_replicas AS r ON r.lfn = f.lfn ORDER BY f.lfn, r.se",
        ("" if after is None else after, limit),
    ).fetchall()
    page: list[tuple[CatalogFileRow, list[CatalogReplicaRow]]] = []
    for values in rows:
        if not page or page[-1][0].lfn != values[0]:
            page.append((_file_row(values[:6]), []))
        if values[6] is not None:
            page[-1][1].append(CatalogReplicaRow(values[0], values[6], values[7]))
    return page

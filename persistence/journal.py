"""Plain-SQL access to the ``journal`` table: one row per committed transition."""

from __future__ import annotations

import sqlite3

from persistence.codec import dumps, loads
from persistence.rows import JournalRow

__all__ = ["append_journal", "read_journal"]


def append_journal(conn: sqlite3.Connection, row: JournalRow, *, payload_text: str | None = None) -> None:
    """
    Append one journal row; the (machine, seq) key makes a duplicate impossible.

    ``payload_text``, when given, is ``row.payload`` already encoded by :func:`~persistence.codec.dumps`
    (stored as is).
    """
    payload = dumps(row.payload) if payload_text is None else payload_text
    conn.execute(
        "INSERT INTO journal (machine_id, seq, at, trigger, src, dst, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (row.machine_id, row.seq, row.at, row.trigger, row.src, row.dst, payload),
    )


def read_journal(conn: sqlite3.Connection, machine_id: str) -> list[JournalRow]:
    """Return an instance's journal in order."""
    rows = conn.execute(
        "SELECT machine_id, seq, at, trigger, src, dst, payload FROM journal "
        "WHERE machine_id = ? ORDER BY seq",
        (machine_id,),
    )
    return [
        JournalRow(m, seq, at, trig, src, dst, loads(payload)) for m, seq, at, trig, src, dst, payload in rows
    ]

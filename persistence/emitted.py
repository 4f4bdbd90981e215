"""Plain-SQL access to the ``emitted`` table: what transitions emitted, keyed for idempotency."""

from __future__ import annotations

import sqlite3
from typing import Any

from persistence.codec import dumps, loads
from persistence.rows import EmittedRow

__all__ = ["insert_emitted", "read_emitted"]


def insert_emitted(
    conn: sqlite3.Connection,
    *,
    idem_key: str,
    machine_id: str,
    seq: int,
    position: int,
    kind: str,
    payload: dict[str, Any],
    at: str,
) -> None:
    """Insert one emitted item; its ``idem_key`` is unique, so the same emission cannot be stored twice."""
    conn.execute(
        "INSERT INTO emitted (idem_key, machine_id, seq, position, kind, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (idem_key, machine_id, seq, position, kind, dumps(payload), at),
    )


def read_emitted(conn: sqlite3.Connection, machine_id: str | None = None) -> list[EmittedRow]:
    """Return emitted items (of one instance, or all) in emission order."""
    where, params = ("WHERE machine_id = ?", (machine_id,)) if machine_id is not None else ("", ())
    rows = conn.execute(
        "SELECT id, idem_key, machine_id, seq, position, kind, payload, created_at FROM emitted "
        f"{where} ORDER BY id",
        params,
    )
    return [EmittedRow(i, k, m, s, p, kind, loads(pl), at) for i, k, m, s, p, kind, pl, at in rows]

"""Plain-SQL access to the ``machines`` table (hot path: used inside every transition)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from typing import Any

from persistence.codec import dumps, loads
from persistence.errors import AlreadyExists, ConcurrentUpdate, NotFound
from persistence.rows import MachineRow

__all__ = [
    "count_by_state",
    "insert_machine",
    "iter_machines",
    "load_machine",
    "load_machines",
    "load_versions",
    "update_machine",
]

_COLUMNS = "id, kind, state, version, data, created_at, updated_at"
_INSERT = f"INSERT INTO machines ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_LOAD = f"SELECT {_COLUMNS} FROM machines WHERE id = ?"
#: Ids per ``IN (...)`` list: well below SQLite's limit on bound parameters.
_IDS_PER_QUERY = 500
_UPDATE = (
    "UPDATE machines SET state = ?, data = ?, version = version + 1, updated_at = ? "
    "WHERE id = ? AND version = ?"
)


def _row(values: tuple[Any, ...]) -> MachineRow:
    mid, kind, state, version, data, created_at, updated_at = values
    return MachineRow(mid, kind, state, version, loads(data), created_at, updated_at)


def insert_machine(conn: sqlite3.Connection, row: MachineRow) -> str:
    """
    Insert a new instance; return its data as stored (JSON text).

    Raises:
        AlreadyExists: an instance with that id exists.
    """
    data = dumps(row.data)
    try:
        values = (row.id, row.kind, row.state, row.version, data, row.created_at, row.updated_at)
        conn.execute(_INSERT, values)
    except sqlite3.IntegrityError as exc:
        raise AlreadyExists(f"machine {row.id!r} exists already") from exc
    return data


def load_machine(conn: sqlite3.Connection, machine_id: str) -> MachineRow:
    """
    Load one instance.

    Raises:
        NotFound: no instance has that id.
    """
    values = conn.execute(_LOAD, (machine_id,)).fetchone()
    if values is None:
        raise NotFound(f"no machine {machine_id!r}")
    return _row(values)


def load_machines(conn: sqlite3.Connection, machine_ids: Collection[str]) -> dict[str, MachineRow]:
    """Load the instances that exist among ``machine_ids``, by id (one query per 500 ids)."""
    return {row.id: row for row in map(_row, _select_by_ids(conn, _COLUMNS, machine_ids))}


def load_versions(conn: sqlite3.Connection, machine_ids: Collection[str]) -> dict[str, int]:
    """The stored version of each instance that exists among ``machine_ids``, by id (no data decoded)."""
    return dict(_select_by_ids(conn, "id, version", machine_ids))


def _select_by_ids(conn: sqlite3.Connection, columns: str, machine_ids: Collection[str]) -> Iterator[Any]:
    """``columns`` of the instances among ``machine_ids``: one query per 500 distinct ids."""
    ids = list(dict.fromkeys(machine_ids))
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start : start + _IDS_PER_QUERY]
        yield from conn.execute(
            f"SELECT {columns} FROM machines WHERE id IN ({', '.join('?' * len(chunk))})", chunk
        )


def update_machine(
    conn: sqlite3.Connection,
    machine_id: str,
    expected_version: int,
    state: str,
    data: dict[str, Any],
    at: str,
) -> None:
    """
    Compare-and-swap: store the new state and data only if the row still has ``expected_version``.

    Raises:
        ConcurrentUpdate: the row's version moved on (or the row is gone).
    """
    cursor = conn.execute(_UPDATE, (state, dumps(data), at, machine_id, expected_version))
    if cursor.rowcount != 1:
        raise ConcurrentUpdate(f"machine {machine_id!r} changed since version {expected_version}")


def iter_machines(
    conn: sqlite3.Connection, kind: str | None = None, states: list[str] | None = None
) -> Iterator[MachineRow]:
    """Yield instances, optionally of one kind and in some states, in id order."""
    clauses, params = [], []
    if kind is not None:
        clauses.append("kind = ?")
        params.append(kind)
    if states is not None:
        clauses.append(f"state IN ({', '.join('?' * len(states))})")
        params.extend(states)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    for values in conn.execute(f"SELECT {_COLUMNS} FROM machines{where} ORDER BY id", params):
        yield _row(values)


def count_by_state(conn: sqlite3.Connection, kind: str) -> dict[str, int]:
    """Return how many instances of ``kind`` are in each state."""
    rows = conn.execute("SELECT state, COUNT(*) FROM machines WHERE kind = ? GROUP BY state", (kind,))
    return {state: count for state, count in rows}

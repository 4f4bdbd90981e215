"""
Forgetting finished work: the machines and requests that ended before a cutoff, with all stored of them.

A service that runs for months keeps every upload's machine, journal and emitted rows, and every
request's operations and files: a few kilobytes per file, without end. :func:`find_prunable` finds
what may go and :func:`delete_pruned` deletes it. A machine may go once in a final state, a request
once in a final status, both last changed before the cutoff; and only together with every request or
machine they share an operation with, so that nothing left points at what is gone (a request of two
uploads stays while one of them is still in flight, and so does the other upload).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

__all__ = ["delete_pruned", "find_prunable"]

#: Rows deleted per statement (SQLite's default limit on bound parameters is 32,766).
_CHUNK = 500


def _marks(values: Collection[object]) -> str:
    return ", ".join("?" * len(values))


def find_prunable(
    conn: sqlite3.Connection,
    *,
    before: str,
    machine_kind: str,
    final_states: Collection[str],
    final_statuses: Collection[str],
) -> tuple[list[str], list[int]]:
    """
    The machines and requests that may be deleted together.

    Args:
        conn: the engine database.
        before: the cutoff, a stored timestamp: what changed at or after it stays.
        machine_kind: the kind of machines to consider (uploads).
        final_states: the machines' final states.
        final_statuses: the requests' final statuses.

    Returns:
        The machine ids and the request ids, each sorted.
    """
    states, statuses = list(final_states), list(final_statuses)
    machines = {
        str(row[0])
        for row in conn.execute(
            f"SELECT id FROM machines WHERE kind = ? AND state IN ({_marks(states)}) AND updated_at < ?",
            (machine_kind, *states, before),
        )
    }
    requests = {
        int(row[0])
        for row in conn.execute(
            f"SELECT id FROM requests WHERE status IN ({_marks(statuses)}) AND last_update < ?",
            (*statuses, before),
        )
    }
    links = conn.execute(
        "SELECT DISTINCT request_id, machine_id FROM operations WHERE machine_id IS NOT NULL"
    ).fetchall()
    # A link with one end kept keeps the other end too; repeat until no link is cut.
    changed = True
    while changed:
        changed = False
        for request_id, machine_id in links:
            if (request_id in requests) != (machine_id in machines):
                requests.discard(request_id)
                machines.discard(machine_id)
                changed = True
    return sorted(machines), sorted(requests)


def delete_pruned(conn: sqlite3.Connection, machine_ids: Sequence[str], request_ids: Sequence[int]) -> None:
    """
    Delete requests with their operations and files, and machines with their journal and emitted rows,
    in the caller's transaction. The two sets must be closed under shared operations
    (:func:`find_prunable`).
    """
    for start in range(0, len(request_ids), _CHUNK):
        requests = list(request_ids[start : start + _CHUNK])
        marks = _marks(requests)
        operations = f"SELECT id FROM operations WHERE request_id IN ({marks})"
        conn.execute(f"DELETE FROM files WHERE operation_id IN ({operations})", requests)
        conn.execute(f"DELETE FROM operations WHERE request_id IN ({marks})", requests)
        conn.execute(f"DELETE FROM requests WHERE id IN ({marks})", requests)
    for start in range(0, len(machine_ids), _CHUNK):
        machines = list(machine_ids[start : start + _CHUNK])
        marks = _marks(machines)
        conn.execute(f"DELETE FROM journal WHERE machine_id IN ({marks})", machines)
        conn.execute(f"DELETE FROM emitted WHERE machine_id IN ({marks})", machines)
        conn.execute(f"DELETE FROM machines WHERE id IN ({marks})", machines)
